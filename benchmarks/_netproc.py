"""Process mode of benchmarks.network: one OS process per node.

The protocol below runs inside each ``python -m node.runtime`` process. It
follows a wall-clock schedule given at launch (``--opt start=<unix time>``),
so no control channel is needed: raw one-shot rounds, a raw burst, sheet
one-shot rounds, a sheet burst. Every node records when it published and
when each message reached it (raw: delivered by gossipsub; sheets: in the
book after validation) and exposes it in ``status()``, which the harness
reads from the node's status file at the end.
"""

from __future__ import annotations

import random
import struct

import coincurve

from benchmarks.network import RAW, SHEETS, Sheet, make_sheet, validate_sheet
from node import wire
from node.crypto import sha256
from node.protocols.base import GossipReceived, Publish, SetTimer, Started, TimerFired, Validation

def round_gap(n: int) -> float:
    """Seconds between scheduled rounds: rounds must not overlap, and on a
    2-core machine a round of N sheets takes ~N/2 s to settle at N=20."""
    return max(3.0, 0.6 * n)


def schedule(rounds: int, raw_burst: int, sheet_burst: int, n: int) -> list[tuple[float, str, int, int]]:
    """(offset s, kind, first seq, count) for every publishing step."""
    gap = round_gap(n)
    out, t = [], 0.0
    for r in range(rounds):
        out.append((t, "raw", 1 + r, 1))
        t += gap
    out.append((t, "raw", 1000, raw_burst))
    t += gap * 3
    for r in range(rounds):
        out.append((t, "sheet", 1 + r, 1))
        t += gap
    out.append((t, "sheet", 100, sheet_burst))
    return out


def end_offset(rounds: int, raw_burst: int, sheet_burst: int, n: int) -> float:
    return schedule(rounds, raw_burst, sheet_burst, n)[-1][0] + round_gap(n) * 4


class BenchNode:
    def __init__(self, *, index: int, n: int, start: float, rounds: int, offers: int, raw_burst: int,
                 sheet_burst: int) -> None:
        self.topics = (RAW, SHEETS)
        self.stream_protocols = ()
        self.index, self.start, self.offers = index, start, offers
        self.plan = schedule(rounds, raw_burst, sheet_burst, n)
        self.key = coincurve.PrivateKey(sha256(b"bench key %d" % index))
        self.rng = random.Random(index)
        self.me = ""
        self.published: dict[str, float] = {}  # "kind:origin:seq" -> wall time
        self.arrived: dict[str, float] = {}
        self.latest: dict[str, int] = {}
        self.book = 0

    def validate(self, topic, data, from_peer, now):
        if topic == RAW:
            return Validation.accept()
        return validate_sheet(data, self.latest)

    def handle(self, event, now):
        if isinstance(event, Started):
            self.me = event.local_peer
            return [SetTimer(f"step{i}", self.start + off) for i, (off, *_rest) in enumerate(self.plan)]
        if isinstance(event, TimerFired) and event.name.startswith("step"):
            _, kind, first, count = self.plan[int(event.name[4:])]
            out = []
            for seq in range(first, first + count):
                self.published[f"{kind}:{self.me}:{seq}"] = now
                if kind == "raw":
                    out.append(Publish(RAW, struct.pack(">I", seq) + self.me.encode() + bytes(16)))
                else:
                    out.append(Publish(SHEETS, make_sheet(self.key, self.me, seq, self.offers, self.rng)))
            return out
        if isinstance(event, GossipReceived):
            if event.topic == RAW:
                seq = struct.unpack(">I", event.data[:4])[0]
                origin = event.data[4:-16].decode()
                self.arrived[f"raw:{origin}:{seq}"] = now
            else:
                s = wire.decode(event.data, Sheet, max_size=1 << 20)
                self.latest[s.origin] = s.seq
                self.book += len(s.offers)
                self.arrived[f"sheet:{s.origin}:{s.seq}"] = now
        return []

    def status(self) -> dict:
        return {"published": self.published, "arrived": self.arrived, "book_offers": self.book}


def make(ctx) -> BenchNode:
    o = ctx.options
    return BenchNode(index=int(o["index"]), n=int(o["n"]), start=float(o["start"]), rounds=int(o["rounds"]),
                     offers=int(o["offers"]), raw_burst=int(o["raw_burst"]), sheet_burst=int(o["sheet_burst"]))
