"""Shared helpers of the contract-run tests (test_contract_run, test_contract_swap, ...), for them and other tests (a
test module imports no other test module): sides running ``ContractRun`` over real in-process enclaves and a
``DevLedger``, wired in memory (``Pair``/``Net``) with a virtual clock, timers, crashes and message filters."""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path
import coincurve
from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, make_spec, spec_id
from node.ledger.devnet import FEES, DevLedger
from node.protocols.base import (
    LedgerCall, Notify, RequestReceived, Respond, ResponseReceived, SendRequest, SetTimer, Started, TimerFired,
)
from node.contracts.protocol.run import (
    DONE, FAILED, AgreedRecord, ContractRun, RunRecord,
)
from node.protocols.offers import AttestationCache, default_attestation_verifier
from node.contracts.protocol.claims import sweep_claimer
from node.stores.contracts import ContractStore
from node.protocols.interpret import LedgerAdapters, UnknownCommand, run_ledger_call
from node.tee.client import InProcessEnclave
from node.attest.policy import AttestationPolicy


NET = "dev"
NOW = 1_800_000_000.0
AMOUNT = 1_000_000
FEE = FEES["utxo"]
POLICY = AttestationPolicy.dev()


def prices_for(usd: int):
    """Our own price feed in these tests: ``AMOUNT`` smallest units of any asset are worth ``usd`` cents (the
    value the sides commit their chunks at), so declared values agree with the receiver's own price."""
    from decimal import Decimal

    from node.assets import get_asset
    from node.assets.prices import Price

    def price_of(asset: str) -> Price:
        return Price(asset, Decimal(usd) / 100 / (Decimal(AMOUNT) / get_asset(asset).unit), NOW, "test")

    return price_of


class Crash(BaseException):
    """Raised at a chosen step to kill a side mid-call (the process dies; only disk survives). A BaseException,
    so no handler in the code under test can swallow it, as none could swallow a SIGKILL."""


class Plan:
    """Counts the steps (enclave calls and claims) of one side; raises Crash at step ``at`` (before or after)."""

    def __init__(self, at: int | None = None, phase: str = "after", on_crash=None) -> None:
        self.at, self.phase, self.n, self.fired, self.log = at, phase, 0, False, []
        self.on_crash = on_crash or (lambda: None)

    def step(self, what: str, fn, *args):
        self.n += 1
        self.log.append(what)
        hit = not self.fired and self.n == self.at
        if hit and self.phase == "before":
            self.fired = True
            raise Crash(f"before {what}")
        out = fn(*args)
        if hit:
            self.fired = True
            self.on_crash()
            raise Crash(f"after {what}")
        return out


class _Steps:
    """Delegates to an enclave, counting the calls that change its sealed state."""

    def __init__(self, inner, plan: Plan) -> None:
        self.inner, self.plan = inner, plan

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name in self.STEPS:
            return lambda *a: self.plan.step(name, attr, *a)
        return attr


class StepEnclave(_Steps):
    """Counts (and crashes at) the enclave calls that change its sealed state."""

    STEPS = ("contract_release", "contract_accept", "contract_step", "contract_refund", "export_to_owner",
             "contract_approve")


class Side:
    def __init__(self, name: str, root: Path, ledger: DevLedger, asset: str | None, n: int, plan: Plan | None = None,
                 usd: int = 5_000, claim_policy: str = "sweep", enclave_factory=None) -> None:
        self.name, self.peer_id, self.dir, self.ledger = name, f"12D3Koo{name}", root / name, ledger
        self.plan = plan or Plan()
        self.usd, self.claim_policy = usd, claim_policy
        self.factory = enclave_factory or InProcessEnclave
        self.raw = self.factory(self.dir)
        self.commits: list[Commit] = []
        if asset:
            for pub in self.raw.generate_keys(n):
                addr = address_for(asset, pub)
                ledger.faucet(asset, addr, AMOUNT)
                self.commits.append(Commit(pub, asset, addr, AMOUNT, usd))
        self.binding = self.raw.binding_for(NET, self.peer_id)
        self.quote = self.raw.quote(self.binding, now=NOW)
        self.gen = 0
        self.notes: list[Notify] = []
        self.specs: list = []
        self.proto = self._make()

    def party(self, runner: bool = True) -> PartySpec:
        return PartySpec(self.binding, list(self.commits), runner)

    def owner_address(self, chunk) -> str:
        k = coincurve.PrivateKey(hashlib.sha256(b"owner" + self.name.encode() + chunk.pubkey).digest())
        return address_for(chunk.asset, k.public_key.format())

    def _make(self) -> ContractRun:
        self.enc = StepEnclave(self.raw, self.plan)
        claim = sweep_claimer(lambda: self.enc, self.ledger, self.owner_address)
        proto = ContractRun(
            net=NET, enclave=self.enc, quote=self.quote, binding=self.binding,
            attestations=AttestationCache(default_attestation_verifier(POLICY)),
            check_funds=lambda asset, addr: self.ledger.balance(asset, addr),
            claim=lambda chunk: self.plan.step("claim", claim, chunk),
            store=ContractStore(self.dir / "runs", durable=False, record_type=RunRecord), claim_policy=self.claim_policy,
            agreed=ContractStore(self.dir / "agreed", durable=False, record_type=AgreedRecord),
            round_timeout=30.0, retry_interval=2.0)
        proto.price_of = prices_for(self.usd)  # our own price feed
        return proto  # (the specs it expects survive a restart in ``agreed``)

    def restart(self) -> None:
        self.raw.close()
        self.raw = self.factory(self.dir)
        self.gen += 1
        self.proto = self._make()

    def journal_releases(self) -> list[bytes]:
        core = getattr(self.raw, "_core", None)
        if core is None:  # a separate enclave process: its key states are what its journal produced
            return [k.pubkey for k in self.raw.list_keys() if k.state == "released"]
        return [e.pub for e in core.journal() if e.op == "release"]

    def balance(self, chunk) -> int:
        return self.ledger.balance(chunk.asset, self.owner_address(chunk)).unconfirmed


class Pair:
    """Sides wired in memory (ConnectionPair-style) with a virtual clock, timers, crashes and message filters.
    A side has ``peer_id``, ``gen``, ``notes``, ``proto`` and ``restart()``; any stream protocol."""

    def __init__(self, *sides) -> None:
        self.sides = {s.peer_id: s for s in sides}
        self.now = NOW
        self.queue: deque = deque()
        self.timers: dict[tuple[str, str], float] = {}
        self.calls: dict[int, tuple[str, int, int]] = {}
        self.call_ids = 0
        self.sent: list[tuple[str, SendRequest]] = []
        self.drop = lambda src, cmd: False  # filter: True drops an outgoing request
        self.drop_response = lambda src, cmd: False  # filter: True drops an outgoing response
        self.on_send = lambda src, cmd: None
        self.crashes = 0
        self.in_task = False  # True while a LedgerCall runs (ledger calls belong there, not in handle)
        for s in sides:
            self.queue.append((s.peer_id, s.gen, Started(s.peer_id)))

    def call(self, side, fn, *args) -> None:
        try:
            self.carry(side, fn(*args, self.now))
        except Crash:
            self.crash(side)

    def crash(self, side) -> None:
        self.crashes += 1
        side.restart()
        for key in [k for k in self.timers if k[0] == side.peer_id]:
            del self.timers[key]
        self.queue.append((side.peer_id, side.gen, Started(side.peer_id)))

    def carry(self, side, cmds) -> None:
        for cmd in cmds:
            if isinstance(cmd, SetTimer):
                self.timers[(side.peer_id, cmd.name)] = cmd.at
            elif isinstance(cmd, Notify):
                side.notes.append(cmd)
            elif isinstance(cmd, SendRequest):
                self.sent.append((side.peer_id, cmd))
                self.on_send(side, cmd)
                if self.drop(side, cmd) or cmd.peer not in self.sides:
                    continue
                self.call_ids += 1
                self.calls[self.call_ids] = (side.peer_id, side.gen, cmd.request_id, cmd.protocol)
                target = self.sides[cmd.peer]
                ev = RequestReceived(cmd.protocol, side.peer_id, self.call_ids, cmd.data)
                self.queue.append((cmd.peer, target.gen, ev))
            elif isinstance(cmd, LedgerCall):  # a ledger call: runs when its turn in the queue comes
                self.queue.append((side.peer_id, side.gen, cmd))
            elif isinstance(cmd, Respond):
                call = self.calls.pop(cmd.request_id, None)
                if call is not None and not self.drop_response(side, cmd):
                    peer, gen, rid, protocol = call
                    self.queue.append((peer, gen, ResponseReceived(protocol, side.peer_id, rid, cmd.data)))
            else:
                raise UnknownCommand(f"the test pair does not know {cmd!r}")

    def step(self) -> bool:
        if self.queue:
            peer, gen, ev = self.queue.popleft()
            side = self.sides[peer]
            if gen != side.gen:
                return True  # addressed to a process that died
            try:
                if isinstance(ev, LedgerCall):  # the one interpreter's ledger ops, with the side's adapters
                    self.in_task = True
                    try:
                        ev = run_ledger_call(ev, LedgerAdapters.of(side.proto))
                    finally:
                        self.in_task = False
                self.carry(side, side.proto.handle(ev, self.now))
            except Crash:
                self.crash(side)
            return True
        if not self.timers:
            return False
        (peer, name), at = min(self.timers.items(), key=lambda kv: kv[1])
        del self.timers[(peer, name)]
        self.now = max(self.now, at)
        self.queue.append((peer, self.sides[peer].gen, TimerFired(name)))
        return True

    def run(self, until: float = 300.0, done=None) -> None:
        while self.now < NOW + until and self.step():
            if done is not None and done():
                return

    def chaos(self, rng) -> None:
        """From now on a lossy, duplicating, reordering network: a request is lost one time in four, and what
        a side sends is sometimes delivered twice, in any order (``rng``: a seeded ``random.Random``)."""
        self.drop = lambda src, cmd: rng.random() < 0.25
        original = self.carry

        def chaotic(side, cmds):
            before = len(self.queue)
            original(side, cmds)
            new = [self.queue.pop() for _ in range(len(self.queue) - before)]
            for item in new:
                for _ in range(2 if rng.random() < 0.2 else 1):  # sometimes delivered twice
                    self.queue.insert(rng.randint(0, len(self.queue)), item)  # in any order

        self.carry = chaotic


def exposed(side) -> int:
    """Chunks a side's enclave released beyond the keys it received: what a cheating peer could keep."""
    keys = side.raw.list_keys()
    return sum(k.state == "released" for k in keys) - sum(k.origin == "received" for k in keys)


class Net(Pair):
    """The in-memory pair, with ``Started`` delivered and ledger heights."""

    def __init__(self, *sides: Side) -> None:
        super().__init__(*sides)
        while self.queue:  # deliver Started
            self.step()

    def height(self, asset: str, h: int, *sides: Side) -> None:
        for s in sides or self.sides.values():
            self.call(s, s.proto.observe_height, asset, h)


def start(net: Net, spec, *sides: Side) -> bytes:
    for s in sides:
        s.specs.append(spec)
        s.proto.expect(spec)
    for s in sides:
        net.call(s, s.proto.start, spec)
    return spec_id(spec)


def running(spec, *sides: Side) -> tuple[bytes, Net]:
    """Sides wired together at height 100 of BTC-REG, every one of them running ``spec``."""
    net = Net(*sides)
    net.height("BTC-REG", 100)
    return start(net, spec, *sides), net


def stopped(cid, *sides):
    return lambda: all(s.proto.state(cid) in (DONE, FAILED) for s in sides)


def escrow_setup(tmp_path, plans=(None, None)):
    ledger = DevLedger(None, automine=True)
    payer = Side("P", tmp_path, ledger, "BTC-REG", 2, plans[0])
    payee = Side("Q", tmp_path, ledger, None, 0, plans[1])
    arb = Side("R", tmp_path, ledger, None, 0)
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 200},
                     [payer.party(), payee.party(), arb.party(runner=False)])
    net = Net(payer, payee, arb)
    net.height("BTC-REG", 100, payer, payee)
    cid = start(net, spec, payer, payee)
    return ledger, payer, payee, arb, spec, cid, net


def swap_setup(tmp_path, n=3, plans=(None, None)):
    ledger = DevLedger(None, automine=True)
    a = Side("A", tmp_path, ledger, "BTC-REG", n, plans[0])
    b = Side("B", tmp_path, ledger, "LTC", n, plans[1])
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 5_000 * n,
                                                  "deadline": 300}, [a.party(), b.party()])
    return (ledger, a, b, spec) + running(spec, a, b)


def ring_net(tmp_path, chunks: int):
    """C gives BTC-REG to D, D LTC to E, E BTC-REG to C, ``chunks`` each, wired at height 100 (not started)."""
    ledger = DevLedger(None, automine=True)
    sides = [Side(n, tmp_path, ledger, asset, chunks, usd=2_000)
             for n, asset in (("C", "BTC-REG"), ("D", "LTC"), ("E", "BTC-REG"))]
    spec = make_spec(NET, stdlib.source("ring"), {"usd": 2_000 * chunks, "height_asset": "BTC-REG", "deadline": 300},
                     [s.party() for s in sides])
    net = Net(*sides)
    net.height("BTC-REG", 100)
    return sides, spec, net


def every_second(net: Net, seconds: int, before) -> None:
    """``seconds`` of virtual time, a new BTC-REG height each second (as the daemon feeds a fast ledger's), every
    message and due timer handled; ``before(t)`` runs at the start of second ``t``."""
    for t in range(1, seconds + 1):
        before(t)
        net.now = NOW + t
        net.height("BTC-REG", 100 + t)
        for _ in range(10_000):
            if not (net.queue or any(at <= net.now for at in net.timers.values())):
                break
            net.step()
        else:
            raise AssertionError(f"second {t}: messages without end (sides answering each other in a loop)")
