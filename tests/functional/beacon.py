"""A tiny sans-IO protocol that exercises every part of the driver.

Each node publishes a *beacon* every ``interval`` seconds on
``/keyswitch/<net>/beacon/1``: ``(version, origin, seq, payload, tag)`` where
``tag`` is an HMAC under a network-wide test key (standing in for a
signature) and ``seq`` is the publish time in milliseconds (so it keeps
growing across restarts). Validation, in the consensus-spec style:

* [REJECT] undecodable / wrong version / over size;
* [REJECT] bad tag (a forgery);
* [IGNORE] ``seq`` not above the last accepted from that origin (replay, stale).

On every new connection it sends a request on ``/keyswitch/test/echo/1`` and
counts correct answers (the peer answers with the reversed bytes).

Options (``--opt``): ``interval`` (seconds, default 1), ``evil=1`` (publish
forged beacons and replays of an old one instead of good ones), ``payload``
(bytes per beacon, default 16).
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from node import wire
from node.protocols.base import (
    GossipReceived,
    PeerConnected,
    Publish,
    RequestReceived,
    Respond,
    ResponseReceived,
    SendRequest,
    SetTimer,
    Started,
    TimerFired,
    Validation,
    topic,
)

KEY = b"keyswitch functional-test beacon key"
ECHO = "/keyswitch/test/echo/1"
#: an echo is asked of every peer on connection; one that timed out is asked again at the next beacon, up to
#: ``ECHO_ATTEMPTS`` in all (on a starved CPU, 8 daemons and 4 busy loops on 2 cores, a connection's first
#: request took 1.1-1.6 s, and some over 5 s: the one-shot echo then failed for every peer of a node)
ECHO_TIMEOUT = 5.0
ECHO_ATTEMPTS = 3
MAX_BEACON = 64 * 1024


class Beacon(msgspec.Struct, array_like=True, frozen=True):
    version: int
    origin: str
    seq: int
    payload: bytes
    tag: bytes


def tag_of(origin: str, seq: int, payload: bytes) -> bytes:
    return hmac.new(KEY, wire.encode([origin, seq, payload]), hashlib.sha256).digest()


class BeaconProtocol:
    def __init__(self, net: str, *, interval: float = 1.0, evil: bool = False, payload: int = 16) -> None:
        self.topic = topic(net, "beacon", 1)
        self.topics = (self.topic,)
        self.stream_protocols = (ECHO,)
        self.interval, self.evil, self.payload = interval, evil, payload
        self.me = ""
        self.seen: dict[str, int] = {}  # origin -> highest accepted seq
        self.received: dict[str, float] = {}  # origin -> local time of last accepted
        self.published = 0
        self.echo_ok = 0
        self.echo_failed = 0
        self.echo_errors: dict[str, int] = {}  # why an echo failed (the reason, its peer id cut out) -> count
        self.rejects: dict[str, int] = {}
        self.ignores: dict[str, int] = {}
        self._req = 0
        self._sent: dict[int, tuple[str, float, int]] = {}  # request id -> (peer, sent at, attempt)
        self._again: list[tuple[str, int]] = []  # (peer, attempt) echoes to send again at the next beacon
        self.echo_ms: list[int] = []  # the round trip of every echo answered
        self._first_bad: bytes | None = None

    # ---------------------------------------------------------------- validate
    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        v = self._validate(data)
        book = self.rejects if v.result.value == "reject" else self.ignores if v.result.value == "ignore" else None
        if book is not None:
            book[v.reason] = book.get(v.reason, 0) + 1
        return v

    def _validate(self, data: bytes) -> Validation:
        try:
            b = wire.decode(data, Beacon, max_size=MAX_BEACON)
        except wire.WireError as exc:
            return Validation.reject(f"malformed: {exc.reason}")
        if b.version != 1:
            return Validation.reject("unsupported version")
        if not hmac.compare_digest(b.tag, tag_of(b.origin, b.seq, b.payload)):
            return Validation.reject("bad tag")
        if b.seq <= self.seen.get(b.origin, -1):
            return Validation.ignore("stale seq")
        return Validation.accept()

    # ------------------------------------------------------------------ handle
    def handle(self, event, now: float):
        if isinstance(event, Started):
            self.me = event.local_peer
            return [SetTimer("beacon", now + self.interval * 0.5)]
        if isinstance(event, TimerFired) and event.name == "beacon":
            again, self._again = self._again, []
            return [self._beacon(now), SetTimer("beacon", now + self.interval),
                    *(self._echo(peer, now, attempt) for peer, attempt in again)]
        if isinstance(event, GossipReceived):
            b = wire.decode(event.data, Beacon, max_size=MAX_BEACON)
            if b.seq > self.seen.get(b.origin, -1):
                self.seen[b.origin] = b.seq
                self.received[b.origin] = now
            return []
        if isinstance(event, PeerConnected):
            return [self._echo(event.peer, now, 1)]
        if isinstance(event, RequestReceived):
            return [Respond(event.request_id, event.data[::-1])]
        if isinstance(event, ResponseReceived):
            peer, sent, attempt = self._sent.pop(event.request_id, (event.peer, now, ECHO_ATTEMPTS))
            if not event.error and event.data == (b"ping:" + self.me.encode())[::-1]:
                self.echo_ok += 1
                self.echo_ms.append(int((now - sent) * 1000))
            else:
                self.echo_failed += 1
                why = (event.error or "wrong answer").replace(event.peer, "<peer>")
                self.echo_errors[why] = self.echo_errors.get(why, 0) + 1
                if "timeout" in why and attempt < ECHO_ATTEMPTS:  # (a peer that does not speak echo: not again)
                    self._again.append((peer, attempt + 1))
            return []
        return []

    def _echo(self, peer: str, now: float, attempt: int) -> SendRequest:
        self._req += 1
        self._sent[self._req] = (peer, now, attempt)
        return SendRequest(ECHO, peer, self._req, b"ping:" + self.me.encode(), timeout=ECHO_TIMEOUT)

    def _beacon(self, now: float) -> Publish:
        seq = int(now * 1000)
        payload = bytes(self.payload)
        self.published += 1
        if not self.evil:
            b = Beacon(1, self.me, seq, payload, tag_of(self.me, seq, payload))
            self.seen[self.me] = seq
            return Publish(self.topic, wire.encode(b))
        if self._first_bad is None:
            # a forgery: a good-looking beacon for *another* origin with a wrong tag
            self._first_bad = wire.encode(Beacon(1, self.me, seq, payload, b"\x00" * 32))
        if self.published % 2:
            return Publish(self.topic, self._first_bad)  # replayed forgery
        return Publish(self.topic, wire.encode(Beacon(1, self.me, seq, payload, bytes(32))))

    def status(self) -> dict:
        return {"seen": dict(self.seen), "published": self.published, "echo_ok": self.echo_ok,
                "echo_failed": self.echo_failed, "echo_errors": dict(self.echo_errors), "echo_ms": sorted(self.echo_ms),
                "rejects": dict(self.rejects), "ignores": dict(self.ignores)}


def make(ctx) -> BeaconProtocol:
    """``--protocol tests.functional.beacon:make``"""
    o = ctx.options
    return BeaconProtocol(ctx.net, interval=float(o.get("interval", 1.0)), evil=o.get("evil") == "1",
                          payload=int(o.get("payload", 16)))
