"""The virtual engine's parts: a simulated node, the transport the interpreter runs commands on, the
counting offer book, the shared signature memo and the run's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from node.protocols.base import Notify, Publish, Respond, SendRequest, SetTimer

#: gossip latency histogram bins (s): 5 ms up to 2 s, then 100 ms up to 30 s
LATENCY_BINS = np.concatenate([np.arange(0, 2.0, 0.005), np.arange(2.0, 30.0, 0.1), [np.inf]])


@dataclass
class SimNode:
    idx: int
    peer_id: str
    kind: str  # bootstrap | relay | full | sybil | spammer
    full: bool = False  # runs its own protocols on every delivery
    alive: bool = True
    offers: Any = None  # OffersProtocol (full nodes and publishers)
    rfp: Any = None  # RfpProtocol (full nodes)
    outcomes: Any = None  # OutcomesProtocol (full nodes, when a scenario needs outcome reports)
    revocations: Any = None  # RevocationProtocol (full nodes, when a scenario revokes a class)
    runner: object = None  # ContractRun (publishers, when contracts are real: simulations.contracts)
    engine: Any = None  # RiskEngine (full nodes)
    book: Any = None
    enclave: Any = None
    deposits: list = field(default_factory=list)
    device_id: bytes = b""
    device_class: str = ""
    timers: dict = field(default_factory=dict)
    refresh_at: float | None = None  # when the daemon's refresher next renews this publisher's offers
    rejects_from: dict = field(default_factory=dict)  # peer idx -> REJECTs received

    def protocols(self) -> list:
        return [p for p in (self.offers, self.rfp, self.outcomes, self.revocations, self.runner) if p is not None]


class SimTransport:
    """The simulator's side of the interpreter: virtual network and clock (``src`` is (node, protocol))."""

    def __init__(self, sim) -> None:
        self.sim = sim

    def set_timer(self, src, cmd: SetTimer) -> None:
        node = src[0]
        node.timers[cmd.name] = cmd.at
        self.sim.push(max(cmd.at, self.sim.now), "timer", (node.idx, cmd.name, cmd.at))

    def publish(self, src, cmd: Publish) -> None:
        if src[0].alive:
            self.sim._gossip(src[0].idx, cmd.topic, cmd.data)

    def send_request(self, src, cmd: SendRequest) -> None:
        self.sim._send_request(src[0], cmd)

    def respond(self, src, cmd: Respond) -> None:
        sim = self.sim
        call = sim.calls.pop(cmd.request_id, None)
        if call is not None:
            s, req = call
            at = sim.now + float(sim._lat(1)[0])
            if at - sim.now > req.timeout:
                sim.push(sim.now + req.timeout, "resp_in", (s, req, b"", "timeout"))
            else:
                sim.push(at, "resp_in", (s, req, cmd.data, ""))

    def notify(self, src, cmd: Notify) -> None:
        self.sim._notify(src[0], cmd)

    def run_job(self, src, job) -> None:  # at once (virtual time), in order; back to the issuing protocol
        node, proto = src
        if proto is None:
            raise RuntimeError("a LedgerCall from an unknown protocol: run_cmds needs proto=")
        self.sim.run_cmds(node, proto.handle(job(), self.sim.now), proto)


def counting_book(device_class):
    """An in-memory ``OfferBook`` that also counts changes to its offer rows (``version``), so that the node's
    ``RiskEngine`` reuses its candidate table until the book changes; answers are those of ``OfferBook``."""
    from node.stores.offerbook import OfferBook

    class CountingBook(OfferBook):
        version = 0

        def apply_sheet(self, body, *, now: float, ids: list[bytes] | None = None) -> int:
            before = self.db.total_changes
            n = super().apply_sheet(body, now=now, ids=ids)
            if self.db.total_changes - before != 1:  # more than the sheet's own row: offers came or went
                self.version += 1
            return n

        def drop_device(self, device_id: bytes) -> int:
            n = super().drop_device(device_id)
            self.version += 1
            return n

        def purge_expired(self, now: float) -> int:
            n = super().purge_expired(now)
            self.version += 1
            return n

    return CountingBook(None, device_class=device_class)


def memoised_sheet_signatures() -> Callable[[bytes, bytes, bytes], bool]:
    """Every full node checks the enclave signature of the same sheet: a memo (bounded) of ``node.tee.
    client.verify_offer_sheet_sig`` (a pure function of its three arguments) that one engine's nodes share
    (``OffersProtocol(verify_sig=...)``), so each sheet's signature is verified once per run. Same answers."""
    from node.tee.client import verify_offer_sheet_sig as real

    memo: dict[tuple[bytes, bytes, bytes], bool] = {}

    def verify_offer_sheet_sig(sign_pub: bytes, sheet_bytes: bytes, sig: bytes) -> bool:
        key = (sign_pub, sig, sheet_bytes)
        ok = memo.get(key)
        if ok is None:
            if len(memo) >= 20_000:
                memo.clear()
            ok = memo[key] = real(sign_pub, sheet_bytes, sig)
        return ok

    return verify_offer_sheet_sig


class Metrics:
    def __init__(self) -> None:
        self.gossip_hist = np.zeros(len(LATENCY_BINS) - 1, dtype=np.int64)  # publish -> every node reached
        self.book_latency: list[float] = []  # publish -> a full node's book (ACCEPT), seconds
        self.sheets_published = 0
        self.coverage: list[float] = []  # share of online nodes each honest sheet reached
        self.requests_sent = 0
        self.requests_not_sent = 0
        self.decided: list[dict] = []  # per decided request
        self.validations = {"accept": 0, "reject": 0, "ignore": 0}
        self.sheets_changed = 0  # sheets published because the offers changed (first, renewed, re-priced)
        self.sheets_reannounced = 0  # re-announcements of an unchanged sheet (OffersProtocol's back-off)
        self.relay_pull_answers = 0  # pulls answered by a relay (from the reference validator's sheets)
        self.verdict_mismatch = 0
        self.spam = {"published": 0, "receivers": 0, "forwarded": 0, "accepted": 0, "pruned_links": 0,
                     "dropped_no_mesh": 0}
        self.exposure_now: dict[bytes, int] = {}  # device -> cents held across all clients
        self.exposure_peak: dict[bytes, int] = {}
        self.exposure_peak_per_client: dict[bytes, int] = {}  # device -> max cents one client held on it
        self.spam_receivers: set[tuple[int, int]] = set()  # (spammer, receiver) pairs, for tests
        self.cap_violations = 0  # a client holding more on a device than its cap allows right after a choice
        self.reputation_over_time: list[tuple[float, float | None, float | None]] = []
        self.proposals_sent = 0
        self.stream_errors = 0
        self.churn_events = 0
        self.events = 0
        self.revoked_ignored = 0  # sheets a full node IGNOREd as revoked (relays still forward them)
        self.forger = {"published": 0, "receivers": 0, "accepted_by_reference": 0, "forwarded": 0,
                       "accepted_at_full_nodes": 0, "rejected_at_full_nodes": 0}
        self.slander = {"published": 0}
        self.withheld = {"contracts": 0, "reports": 0}
        # fees and insurance against honest clients' losses: (t, fees collected, pool, losses) samples
        self.fees = {"collected_cents": 0, "pool_cents": 0, "honest_losses_cents": 0, "contracts": 0}
        self.fees_over_time: list[tuple[float, int, int, int]] = []
        self.double_spends: list[dict] = []  # broken TEE spends: t, device, address, txid, cents
        self.cheater_at: dict[tuple[bytes, int], float] = {}  # (device, full node) -> when it isolated it
        self.revocation_at: dict[int, float] = {}  # full node -> when it applied the class notice
        self.revocation_left: list[int] = []  # offers of the class left in a book right after applying
        self.revoked_class_chosen_after = 0  # chunks of the revoked class chosen by a node that had applied it
        self.chosen_cents: dict[str, list[int]] = {}  # device kind -> [cents chosen in 1st half, 2nd half]
        self.class_exposure: list[tuple[float, int]] = []  # (t, cents held on the revoked class)
