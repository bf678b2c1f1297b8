"""The protocol every benchmark node runs (``benchmarks.network``).

``BenchNode`` wraps the real ``OffersProtocol`` made by the daemon's
``node.dev.factory:offers_factory`` (enclave keys, deposits on a dev ledger, a
real SQLite ``OfferBook``, full sheet validation) and adds a raw topic for the
py-libp2p anchor. It follows a wall-clock schedule given at launch
(``--opt start=<unix time>``), so no control channel is needed: one-shot
rounds in raw/sheet pairs, a raw burst, a sheet burst. Every node records
when it published and when each message reached it (raw: delivered by
gossipsub; sheets: validated *and* written to the offer book) and exposes it
in ``status()``. In process mode the harness reads it from each node's status
file at the end; in one-process mode it calls ``status()`` directly.
"""

from __future__ import annotations

import struct
import time

from node.protocols.base import GossipReceived, Notify, Publish, SetTimer, Started, TimerFired, Validation
from node.protocols.base import topic as topic_name

NET = "bench"
RAW = topic_name(NET, "raw", 1)


def round_gap(n: int) -> float:
    """Seconds between scheduled rounds: rounds must not overlap, and on a
    2-core machine a round of N first-sight sheets took ~8 s to settle at N=20
    (the summary flags a round that outlasts the gap)."""
    return max(3.0, 0.8 * n)


def schedule(rounds: int, raw_burst: int, sheet_burst: int, n: int) -> list[tuple[float, str, int, int]]:
    """(offset s, kind, first label, count) for every publishing step.

    The one-shot rounds come in pairs, raw and sheet interleaved (raw first in odd pairs, sheet first in
    even ones), so that whatever drifts over a run (the mesh settling after start, peers still
    exchanged, other load on the machine) weighs on both kinds alike and each pair compares like with
    like; then a raw burst, then a sheet burst."""
    gap = round_gap(n)
    out, t = [], 0.0
    for r in range(rounds):
        for kind in (("raw", "sheet") if r % 2 == 0 else ("sheet", "raw")):
            out.append((t, kind, 1 + r, 1))
            t += gap
    out.append((t, "raw", 1000, raw_burst))
    t += gap * 3
    out.append((t, "sheet", 100, sheet_burst))
    return out


def end_offset(rounds: int, raw_burst: int, sheet_burst: int, n: int) -> float:
    return schedule(rounds, raw_burst, sheet_burst, n)[-1][0] + round_gap(n) * 4


class BenchNode:
    """Raw gossip on ``RAW``; real offer sheets through the wrapped ``OffersProtocol``.

    Sheets are published with ``OffersProtocol.announce`` (built by
    ``build_sheet``, signed by the node's enclave); their sequence numbers are
    the protocol's own (milliseconds), so each publish is recorded under its
    real seq with a ``labels`` entry mapping it to the schedule's round label.
    """

    def __init__(self, offers, *, n: int, start: float, rounds: int, raw_burst: int, sheet_burst: int,
                 profile: str = "") -> None:
        self.offers = offers
        # the sheet to publish in the rounds, held back until the first: set on the protocol, it would be
        # published at ``Started`` (and pulled by peers), and round 1 would no longer be a first sight
        self.own, offers.own = offers.own, None
        self.topics = (RAW, offers.topic)
        self.stream_protocols = tuple(offers.stream_protocols)  # the pull on connect, answered as a daemon does
        self.start = start
        self.plan = schedule(rounds, raw_burst, sheet_burst, n)
        self.me = ""
        self.published: dict[str, float] = {}  # "kind:origin:seq" -> wall time of the publish call
        self.labels: dict[str, int] = {}  # "origin:seq" -> round label (sheets)
        self.arrived: dict[str, float] = {}  # raw: delivered; sheet: in the offer book
        self.sheet_bytes = 0
        self.validate_s = 0.0  # CPU time spent validating sheets (accepted or not)
        self.validated = 0
        self.book_s = 0.0  # CPU time spent in OffersProtocol.handle for sheets (decode, write to the OfferBook)
        self.marks: list[dict] = []  # at every scheduled step: this process's CPU time and the two clocks above
        # ``profile=PATH``: cProfile this whole process (py-libp2p included) over the one-shot rounds
        self.profile_path = profile
        self.profiler = None
        self.profilers: dict[str, object] = {}
        self.rounds = rounds

    def validate(self, topic, data, from_peer, now) -> Validation:
        if topic == RAW:
            return Validation.accept()
        t0 = time.process_time()  # CPU time: other node processes preempting this one do not count
        v = self.offers.validate(topic, data, from_peer, now)
        self.validate_s += time.process_time() - t0
        self.validated += 1
        return v

    def handle(self, event, now):
        if isinstance(event, Started):
            self.me = event.local_peer
            cmds = list(self.offers.handle(event, now))
            return cmds + [SetTimer(f"bench.step{i}", self.start + off) for i, (off, *_rest) in enumerate(self.plan)]
        if isinstance(event, TimerFired) and event.name.startswith("bench.step"):
            step = int(event.name[len("bench.step"):])
            _, kind, first, count = self.plan[step]
            self.marks.append({"step": step, "cpu": time.process_time(), "validate_s": self.validate_s,
                               "book_s": self.book_s})
            self._profile_step(step)
            out = []
            for label in range(first, first + count):
                t = time.time()
                if kind == "raw":
                    self.published[f"raw:{self.me}:{label}"] = t
                    out.append(Publish(RAW, struct.pack(">I", label) + self.me.encode() + bytes(16)))
                else:
                    self.offers.own = self.own
                    cmds = self.offers.announce(t)  # re-signed, new seq: published every round, unchanged or not
                    self.published[f"sheet:{self.me}:{self.offers.seq}"] = t
                    self.labels[f"{self.me}:{self.offers.seq}"] = label
                    self.sheet_bytes = max([len(c.data) for c in cmds if isinstance(c, Publish)] + [self.sheet_bytes])
                    out += cmds
            return out
        if isinstance(event, GossipReceived) and event.topic == RAW:
            label = struct.unpack(">I", event.data[:4])[0]
            origin = event.data[4:-16].decode()
            self.arrived[f"raw:{origin}:{label}"] = time.time()
            return []
        t0 = time.process_time()
        cmds = self.offers.handle(event, now)
        if isinstance(event, GossipReceived):
            self.book_s += time.process_time() - t0
        for c in cmds:
            if isinstance(c, Notify) and c.kind == "offers.sheet":
                self.arrived[f"sheet:{c.detail['origin']}:{c.detail['seq']}"] = time.time()
        return cmds

    def _profile_step(self, step: int) -> None:
        """Profile the one-shot rounds, each step's window (up to the next step) into ``<path>.raw`` or
        ``<path>`` by the kind of its round (the same number of windows of the same length, to compare)."""
        if not self.profile_path:
            return
        import cProfile

        if self.profiler is not None:
            self.profiler.disable()
        if step < 2 * self.rounds:
            kind = self.plan[step][1]
            self.profiler = self.profilers.setdefault(kind, cProfile.Profile())
            self.profiler.enable()
        elif step == 2 * self.rounds:  # the raw burst: the one-shot rounds are over
            for kind, prof in self.profilers.items():
                prof.dump_stats(self.profile_path + (".raw" if kind == "raw" else ""))
            self.profiler = None

    def status(self) -> dict:
        st = self.offers.status() if hasattr(self.offers, "status") else {}
        return {"published": self.published, "labels": self.labels, "arrived": self.arrived,
                "book_offers": self.offers.book.count(now=time.time()), "own_offers": len(self.own.offers),
                "sheet_bytes": self.sheet_bytes, "validate_s": self.validate_s, "validated": self.validated,
                "book_s": self.book_s, "marks": self.marks,
                "attestation_verifications": self.offers.attestations.verifications,
                "accept": st.get("accept"), "reject": st.get("reject"), "ignore": st.get("ignore"),
                "reasons": st.get("reasons", {})}


def options(*, n: int, start: float, rounds: int, offers: int, raw_burst: int, sheet_burst: int) -> dict[str, str]:
    """``--opt`` values for ``make`` (and the daemon's ``offers_factory``)."""
    return {"start": f"{start:.3f}", "n": str(n), "rounds": str(rounds), "keys": str(offers),
            "raw_burst": str(raw_burst), "sheet_burst": str(sheet_burst), "enclave": "in-process",
            "republish": "1e9", "asset": "BTC-REG"}


def make(ctx) -> BenchNode:
    """``--protocol benchmarks._netproc:make``: the daemon's offers stack wrapped for the schedule."""
    from node.dev.factory import offers_factory

    o = ctx.options
    proto = offers_factory(ctx)  # enclave keys, funded deposits, OfferBook, AttestationCache
    return BenchNode(proto, n=int(o["n"]), start=float(o["start"]), rounds=int(o["rounds"]),
                     raw_burst=int(o["raw_burst"]), sheet_burst=int(o["sheet_burst"]), profile=o.get("profile", ""))

