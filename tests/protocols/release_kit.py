"""Shared helpers of test_release, for it and other tests (a test module imports no other test module)."""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path
import coincurve
from node.assets import address_for
from node.ledger.devnet import DevLedger
from node.protocols.base import (
    LedgerCall, Notify, RequestReceived, Respond, ResponseReceived, SendRequest, SetTimer, Started,
)
from node.protocols.base import TimerFired
from node.protocols.offers import AttestationCache, default_attestation_verifier
from node.protocols.claims import sweep_claimer
from node.protocols.release import DONE, FAILED, WITHHELD, ReleaseProtocol
from node.protocols.schedule import Chunk, Schedule, contract_id, swap_schedule
from node.stores.contracts import ContractStore
from node.protocols.interpret import LedgerAdapters, UnknownCommand, run_ledger_call
from node.tee.client import InProcessEnclave
from node.attest.policy import AttestationPolicy


NET = "dev"
NOW = 1_800_000_000.0
ASSET = {"A": "BTC-REG", "B": "LTC", "C": "BTC-REG"}
AMOUNT = 1_000_000
POLICY = AttestationPolicy.dev()


class Crash(BaseException):
    """Raised at a chosen step to kill a side mid-call (the process dies; only disk survives). A BaseException,
    so no handler in the code under test can swallow it, as none could swallow a SIGKILL."""


class CrashPlan:
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


class StepEnclave:
    """Delegates to an enclave, counting the calls that change its sealed state."""

    STEPS = ("contract_release", "contract_resend", "contract_accept", "contract_step", "export_to_owner")

    def __init__(self, inner, plan: CrashPlan) -> None:
        self.inner, self.plan = inner, plan

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name in self.STEPS:
            return lambda *a: self.plan.step(name, attr, *a)
        return attr


class Side:
    def __init__(self, name: str, root: Path, ledger: DevLedger, n_chunks: int = 3, plan: CrashPlan | None = None,
                 claim_policy: str = "sweep", enclave_factory=None) -> None:
        self.name, self.peer_id, self.dir, self.ledger = name, f"12D3Koo{name}", root / name, ledger
        self.plan = plan or CrashPlan()
        self.factory = enclave_factory or (lambda d: InProcessEnclave(d))
        self.raw = self.factory(self.dir)
        self.chunks = []
        for pub in self.raw.generate_keys(n_chunks):
            addr = address_for(ASSET[name], pub)
            ledger.faucet(ASSET[name], addr, AMOUNT)
            self.chunks.append(Chunk(ASSET[name], addr, pub, AMOUNT))
        self.binding = self.raw.binding_for(NET, self.peer_id)
        self.quote = self.raw.quote(self.binding, now=NOW)
        self.claim_policy = claim_policy
        self.gen = 0
        self.notes: list[Notify] = []
        self.expected: list[tuple[str, Schedule]] = []
        self.proto = self._make()

    def owner_address(self, chunk: Chunk) -> str:
        k = coincurve.PrivateKey(hashlib.sha256(b"owner" + self.name.encode() + chunk.pubkey).digest())
        return address_for(chunk.asset, k.public_key.format())

    def _make(self) -> ReleaseProtocol:
        self.enc = StepEnclave(self.raw, self.plan)
        claim = sweep_claimer(lambda: self.enc, self.ledger, self.owner_address)
        proto = ReleaseProtocol(
            net=NET, enclave=self.enc, binding=self.binding, quote=self.quote,
            attestations=AttestationCache(default_attestation_verifier(POLICY)),
            check_funds=lambda asset, addr: self.ledger.balance(asset, addr),
            claim=lambda chunk: self.plan.step("claim", claim, chunk),
            store=ContractStore(self.dir / "contracts", durable=False), claim_policy=self.claim_policy,
            round_timeout=30.0, retry_interval=2.0,
        )
        for peer, sched in self.expected:
            proto.expect(peer, sched)
        return proto

    def expect(self, peer: str, sched: Schedule) -> None:
        self.expected.append((peer, sched))
        self.proto.expect(peer, sched)

    def restart(self) -> None:
        """What a restart looks like: the same data directory, a new enclave object and protocol object."""
        self.raw.close()
        self.raw = self.factory(self.dir)
        self.gen += 1
        self.proto = self._make()

    def journal_releases(self) -> list[bytes]:
        core = getattr(self.raw, "_core", None)
        if core is None:  # a separate enclave process: its key states are what its journal produced
            return [k.pubkey for k in self.raw.list_keys() if k.state == "released"]
        return [e.pub for e in core.journal() if e.op == "release"]


class Pair:
    """Sides wired in memory (ConnectionPair-style) with a virtual clock, timers, crashes and message filters.
    A side has ``peer_id``, ``gen``, ``notes``, ``proto`` and ``restart()``; any stream protocol."""

    def __init__(self, *sides: Side) -> None:
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

    def call(self, side: Side, fn, *args) -> None:
        try:
            self.carry(side, fn(*args, self.now))
        except Crash:
            self.crash(side)

    def crash(self, side: Side) -> None:
        self.crashes += 1
        side.restart()
        for key in [k for k in self.timers if k[0] == side.peer_id]:
            del self.timers[key]
        self.queue.append((side.peer_id, side.gen, Started(side.peer_id)))

    def carry(self, side: Side, cmds) -> None:
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


def setup_swap(tmp_path, n=3, plans=(None, None), policy="sweep", factory=None):
    ledger = DevLedger(None, automine=True)
    a = Side("A", tmp_path, ledger, n, plans[0], policy, factory)
    b = Side("B", tmp_path, ledger, n, plans[1], policy)
    sched = swap_schedule(a.chunks, b.chunks)
    b.expect(a.peer_id, sched)
    pair = Pair(a, b)
    pair.run(until=0)  # deliver Started
    pair.call(a, a.proto.propose, b.peer_id, sched)
    cid = contract_id(sched, [a.binding, b.binding])
    return ledger, a, b, sched, cid, pair


def both_stopped(a, b, cid):
    return lambda: all(s.proto.state(cid) in (DONE, WITHHELD, FAILED) for s in (a, b))
