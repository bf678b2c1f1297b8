"""Protocol factories for functional tests of offer gossip.

``forger``: a node running the real offer stack whose own publications are
turned, in turn, into: its honest first sheet; the next sheet with a wrong
signature; the next with a forged quote (validly signed by its enclave);
a replay of the first sheet (a stale sequence). Honest nodes must REJECT the
first two kinds, IGNORE the replay, and never forward any of them.
"""

from __future__ import annotations

from node import wire
from node.daemon import offers_factory
from node.protocols.base import Publish
from node.protocols.offers import SheetBody, SignedSheet, build_sheet


def forger(ctx):
    proto = offers_factory(ctx)
    real_handle = proto.handle
    state = {"n": 0, "first": b""}

    def corrupt(data: bytes) -> bytes:
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = data
            return data
        k = state["n"] % 3
        signed = wire.decode(data, SignedSheet)
        if k == 2:  # wrong signature
            return wire.encode(SignedSheet(signed.body, bytes(len(signed.sig))))
        if k == 0:  # forged quote, signed by the enclave
            b = wire.decode(signed.body, SheetBody)
            return build_sheet(net=b.net, origin=b.origin, seq=b.seq, now=b.issued_at, offers=b.offers,
                               retracted=b.retracted, quote=b"KSSIMQ" + bytes(200), binding=b.binding,
                               sign=proto.own.sign)
        return state["first"]  # replayed old sequence

    def handle(event, now):
        return [Publish(c.topic, corrupt(c.data)) if isinstance(c, Publish) and c.topic == proto.topic else c
                for c in real_handle(event, now)]

    proto.handle = handle
    return proto
