"""Shared helpers of test_contract_run, for it and other tests (a test module imports no other test module)."""

from __future__ import annotations

import hashlib
from pathlib import Path
import coincurve
from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, make_spec, spec_id
from node.ledger.devnet import FEES, DevLedger
from node.protocols.base import Notify
from node.protocols.contract_run import (
    DONE, FAILED, AgreedRecord, ContractRun, RunRecord,
)
from node.protocols.offers import AttestationCache, default_attestation_verifier
from node.protocols.claims import sweep_claimer
from node.stores.contracts import ContractStore
from node.tee.client import InProcessEnclave
from node.attest.policy import AttestationPolicy
from tests.protocols import release_kit
from tests.protocols.release_kit import Pair
from tests.protocols.release_kit import CrashPlan as Plan


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


class StepEnclave(release_kit.StepEnclave):
    """Counts (and crashes at) the enclave calls that change its sealed state."""

    STEPS = ("contract_release", "contract_accept", "contract_refund", "export_to_owner", "contract_approve")


class Side:
    def __init__(self, name: str, root: Path, ledger: DevLedger, asset: str | None, n: int, plan: Plan | None = None,
                 usd: int = 5_000) -> None:
        self.name, self.peer_id, self.dir, self.ledger = name, f"12D3Koo{name}", root / name, ledger
        self.plan = plan or Plan()
        self.usd = usd
        self.raw = InProcessEnclave(self.dir)
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
            store=ContractStore(self.dir / "runs", durable=False, record_type=RunRecord),
            agreed=ContractStore(self.dir / "agreed", durable=False, record_type=AgreedRecord),
            round_timeout=30.0, retry_interval=2.0)
        proto.price_of = prices_for(self.usd)  # our own price feed
        return proto  # (the specs it expects survive a restart in ``agreed``)

    def restart(self) -> None:
        self.raw.close()
        self.raw = InProcessEnclave(self.dir)
        self.gen += 1
        self.proto = self._make()

    def journal_releases(self) -> list[bytes]:
        return [e.pub for e in self.raw._core.journal() if e.op == "release"]

    def balance(self, chunk) -> int:
        return self.ledger.balance(chunk.asset, self.owner_address(chunk)).unconfirmed


class Net(Pair):
    """The release tests' in-memory pair, grown to any number of sides, with ledger heights."""

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
