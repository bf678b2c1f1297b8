"""The contract between sans-IO protocols and whatever drives them.

A driver (``node.runtime`` over py-libp2p, or the virtual simulator) turns
network happenings into *events*, calls ``protocol.handle(event, now)``, and
carries out the *commands* it gets back. Gossip validation is separate and
pure: ``protocol.validate(topic, data, from_peer, now) -> Validation``, called
before a message is delivered or forwarded (mapped onto py-libp2p's topic
validator; REJECT also lowers the sender's gossipsub score, IGNORE does not).

Events and commands are frozen dataclasses, as in h11 and wsproto. Peer ids
are the base58 strings py-libp2p prints (``QmFoo...`` / ``12D3Koo...``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol as _Protocol
from typing import Callable, Sequence


# ---------------------------------------------------------------- events in
@dataclass(frozen=True)
class Started:
    """The driver is up; ``local_peer`` is this node's peer id."""

    local_peer: str


@dataclass(frozen=True)
class GossipReceived:
    """A message that passed ``validate`` with ACCEPT on ``topic``."""

    topic: str
    data: bytes
    from_peer: str  # the peer that forwarded it to us
    msg_id: bytes = b""


@dataclass(frozen=True)
class PeerConnected:
    peer: str


@dataclass(frozen=True)
class PeerDisconnected:
    peer: str


@dataclass(frozen=True)
class TimerFired:
    name: str


@dataclass(frozen=True)
class RequestReceived:
    """A request on a stream protocol; answer with ``Respond(request_id, ...)``."""

    protocol: str
    peer: str
    request_id: int
    data: bytes


@dataclass(frozen=True)
class ResponseReceived:
    """The answer to an earlier ``SendRequest``; ``error`` is set on failure/timeout."""

    protocol: str
    peer: str
    request_id: int
    data: bytes = b""
    error: str = ""


@dataclass(frozen=True)
class TaskDone:
    """The outcome of an earlier ``LedgerCall`` of the same name, delivered to the protocol that issued it
    (and to no other): ``result`` is what the call returned, ``error`` the exception it raised (None when
    it returned). Every driver makes it the same way (``node.protocols.interpret``)."""

    name: str
    result: object = None
    error: BaseException | None = None


Event = (Started | GossipReceived | PeerConnected | PeerDisconnected | TimerFired | RequestReceived | ResponseReceived
         | TaskDone)


# ------------------------------------------------------------- commands out
@dataclass(frozen=True)
class Publish:
    topic: str
    data: bytes


@dataclass(frozen=True)
class SetTimer:
    """Fire ``TimerFired(name)`` at absolute time ``at`` (replaces a timer of the same name)."""

    name: str
    at: float


@dataclass(frozen=True)
class SendRequest:
    protocol: str
    peer: str
    request_id: int
    data: bytes
    timeout: float = 10.0


@dataclass(frozen=True)
class Respond:
    request_id: int
    data: bytes


@dataclass(frozen=True)
class Notify:
    """Something the node's operator or the application layer should know."""

    kind: str
    detail: dict


@dataclass(frozen=True)
class LedgerCall:
    """Blocking ledger work the protocol must not do itself (a funds check, a sweep), as plain data: ``op``
    names one of ``node.protocols.interpret.LEDGER_OPS``, ``args`` are its arguments (frozen values: chunks,
    ints, strings, tuples of them). The interpreter runs it with the ledger adapters the composition root gave
    (``check_funds``, ``claim``, ``price_of``) off the event loop, and its outcome comes back as
    ``TaskDone(name, ...)`` to the issuing protocol only. No callable travels in a command."""

    name: str
    op: str
    args: tuple = ()


Command = Publish | SetTimer | SendRequest | Respond | Notify | LedgerCall


# ---------------------------------------------------------------- validation
class Result(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # invalid: drop, and penalise the forwarding peer
    IGNORE = "ignore"  # not useful (duplicate, stale): drop without penalty


@dataclass(frozen=True)
class Validation:
    result: Result
    reason: str = ""

    @classmethod
    def accept(cls) -> "Validation":
        return cls(Result.ACCEPT)

    @classmethod
    def reject(cls, reason: str) -> "Validation":
        return cls(Result.REJECT, reason)

    @classmethod
    def ignore(cls, reason: str) -> "Validation":
        return cls(Result.IGNORE, reason)


class SansIOProtocol(_Protocol):
    #: gossip topics this protocol publishes/validates (may be empty)
    topics: Sequence[str]
    #: stream protocol ids this protocol serves (may be empty)
    stream_protocols: Sequence[str]

    def validate(self, topic: str, data: bytes, from_peer: str, now: float) -> Validation: ...

    def handle(self, event: Event, now: float) -> list[Command]: ...


class Listeners:
    """Callables the application registers to be woken when a protocol records something under a key (an
    answer, a decision, a peer's binding): how it awaits instead of polling. ``fire(key)`` runs and forgets
    the key's callables. They run where the protocol runs (perhaps a worker thread), so they must be
    thread-safe: the daemon's are ``trio_token.run_sync_soon(event.set)``. Register in a call submitted to the
    protocol (``driver.call`` or ``driver.submit``), so the registration and the firing never race."""

    def __init__(self) -> None:
        self._by_key: dict[object, list[Callable[[], None]]] = {}

    def add(self, key: object, fn: Callable[[], None]) -> None:
        self._by_key.setdefault(key, []).append(fn)

    def discard(self, key: object) -> None:
        self._by_key.pop(key, None)

    def fire(self, key: object) -> None:
        for fn in self._by_key.pop(key, ()):
            fn()

    def __len__(self) -> int:
        return len(self._by_key)


def topic(net: str, name: str, version: int = 1) -> str:
    """Standard topic names: ``/keyswitch/<net>/<name>/<version>``."""
    return f"/keyswitch/{net}/{name}/{version}"
