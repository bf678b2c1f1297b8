"""An attacker for the offers functional test: ``--protocol tests.functional.forger:make``.

It runs a real enclave and a real OffersProtocol, but what it publishes
cycles through three bad sheets: one with a bad signature, one carrying
another device's quote (the quote does not commit to its binding), and a
replay of its own first (valid) sheet with an old sequence number.
"""

from __future__ import annotations

import msgspec

from node import wire
from node.dev.factory import offers_factory
from node.protocols.base import Publish, SetTimer, TimerFired
from node.protocols.offers import SignedSheet, decode_sheet, encode_body
from node.tee.client import InProcessEnclave


class Forger:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.topics = inner.topics
        self.stream_protocols = []
        self.n = 0
        self.first: bytes | None = None
        self.other = InProcessEnclave(seed=b"f" * 32)
        self.other.generate_keys(1)
        self.sent = {"bad-signature": 0, "foreign-quote": 0, "replay": 0, "valid": 0}

    def validate(self, topic, data, from_peer, now):
        return self.inner.validate(topic, data, from_peer, now)

    def handle(self, event, now):
        if isinstance(event, TimerFired) and event.name == "offers.republish":
            return [self._bad(now), SetTimer("offers.republish", now + 0.5)]
        return [c for c in self.inner.handle(event, now) if not isinstance(c, Publish)]

    def _bad(self, now):
        good = self.inner._publish(now)[0].data
        if self.first is None:
            self.first = good
            self.sent["valid"] += 1
            return Publish(self.inner.topic, good)
        self.n += 1
        signed, body = decode_sheet(good)
        if self.n % 3 == 1:
            self.sent["bad-signature"] += 1
            return Publish(self.inner.topic, wire.encode(SignedSheet(signed.body, bytes(64))))
        if self.n % 3 == 2:
            self.sent["foreign-quote"] += 1
            other = self.other.quote(self.other.binding_for(body.net, body.origin), now=now)
            b = encode_body(msgspec.structs.replace(body, quote=other))
            sig = self.inner.own.sign(b, [o.pubkey for o in body.offers])
            return Publish(self.inner.topic, wire.encode(SignedSheet(b, sig)))
        self.sent["replay"] += 1
        return Publish(self.inner.topic, self.first)

    def status(self):
        return {**self.inner.status(), "sent": dict(self.sent)}


def make(ctx):
    return Forger(offers_factory(ctx))
