"""The pull on connect: ``/keyswitch/<net>/sheets/1`` wire, the sheet store and the rate limits."""

from __future__ import annotations

import itertools
from typing import Annotated

import msgspec

from node import wire
from node.wire import U16
from node.protocols.offers.sheet import MAX_ORIGINS_PER_DEVICE, MAX_SHEET_SIZE, _Net


# the pull on connect (OffersProtocol, SheetsAsk/SheetsAnswer below)
SHEETS_VERSION = 1
PULL_MAX_SHEETS = 256  # sheets in one answer
PULL_MAX_BYTES = 960 * 1024  # sheet bytes in one answer (a stream frame is at most 1 MiB: node.runtime.streams)
MAX_ASK_SIZE = 256
MAX_ANSWER_SIZE = PULL_MAX_BYTES + 16 * 1024  # the sheets plus their framing
PULL_TIMEOUT = 10.0
PULL_AGAIN = 300.0  # seconds before the same peer is asked again (a flapping link asks once per 5 min)
PULL_ANSWERS_PER_MINUTE = 4  # answers one peer gets in a minute
PULL_ANSWERS_PER_MINUTE_TOTAL = 120  # answers all peers together get in a minute (~120 MiB at the most)
MAX_TRACKED_PEERS = 4096


def sheets_protocol(net: str) -> str:
    """The pull's stream protocol id: ``/keyswitch/<net>/sheets/1``."""
    return f"/keyswitch/{net}/sheets/{SHEETS_VERSION}"


class SheetsAsk(msgspec.Struct, array_like=True, frozen=True):
    """``/keyswitch/<net>/sheets/1`` request: "send me the latest sheets you hold", within these bounds.
    Ranges: version 0..65535, net <= 64 chars, max_sheets and max_bytes 0..2^31 (decode fails outside)."""

    version: U16
    net: _Net
    max_sheets: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)]
    max_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)]


class SheetsAnswer(msgspec.Struct, array_like=True, frozen=True):
    """The answer: signed sheets exactly as they were gossiped (each checked by the asker as gossip is),
    or ``error`` (a refusal: rate limited, malformed request) and no sheets. Ranges: version 0..65535,
    net <= 64 chars, error <= 512 chars, at most PULL_MAX_SHEETS sheets of at most MAX_SHEET_SIZE bytes."""

    version: U16
    net: _Net
    error: Annotated[str, msgspec.Meta(max_length=512)]
    sheets: Annotated[list[Annotated[bytes, msgspec.Meta(max_length=MAX_SHEET_SIZE)]],
                      msgspec.Meta(max_length=PULL_MAX_SHEETS)]


class SheetStore:
    """The latest accepted sheet of each origin, as raw bytes, for peers that pull. Bounded by origins, by
    bytes and by origins per device: a device's sheets are stored under at most ``max_per_device`` origins
    (a new origin of a device over that replaces that device's oldest one), and when the store is full the
    sheet that goes is the oldest of the device holding the most origins, so one device's origins never push
    another device's sheets out while it holds more than they do. ``device=None``: the origin is its own
    device (the simulator's relays, which keep no devices)."""

    def __init__(self, max_origins: int = 4096, max_bytes: int = 32 << 20,
                 max_per_device: int = MAX_ORIGINS_PER_DEVICE) -> None:
        self.max_origins = max_origins
        self.max_bytes = max_bytes
        self.max_per_device = max_per_device
        self._by_origin: dict[str, tuple[int, bytes, object]] = {}  # origin -> (seq, data, device)
        self._by_device: dict[object, dict[str, None]] = {}  # device -> its origins, oldest stored first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_origin)

    def _drop(self, origin: str) -> None:
        _seq, data, device = self._by_origin.pop(origin)
        self._bytes -= len(data)
        mine = self._by_device[device]
        del mine[origin]
        if not mine:
            del self._by_device[device]

    def put(self, origin: str, seq: int, data: bytes, device: object = None) -> None:
        device = ("origin", origin) if device is None else device
        old = self._by_origin.get(origin)
        if old is not None:
            if old[0] >= seq:
                return
            self._drop(origin)
        mine = self._by_device.setdefault(device, {})
        while len(mine) >= self.max_per_device:  # the device's own oldest origin makes room
            self._drop(next(iter(mine)))
            mine = self._by_device.setdefault(device, {})
        self._by_origin[origin] = (seq, data, device)
        mine[origin] = None
        self._bytes += len(data)
        while self._by_origin and (len(self._by_origin) > self.max_origins or self._bytes > self.max_bytes):
            # the device holding the most origins loses its oldest (ties: the oldest stored of those)
            most = max(len(o) for o in self._by_device.values())
            victim = next(o for o in self._by_origin if len(self._by_device[self._by_origin[o][2]]) == most)
            self._drop(victim)

    def newest_first(self):
        for _seq, data, _device in reversed(self._by_origin.values()):
            yield data


def answer_pull(ask: bytes, *, net: str, own: bytes | None, store: SheetStore) -> bytes:
    """The encoded ``SheetsAnswer`` to an encoded ``SheetsAsk``: our own sheet first, then the latest of
    each origin, newest first, within the smaller of the asker's and our bounds (a malformed or foreign
    ask gets an answer naming why, and no sheets)."""

    def refuse(why: str) -> bytes:
        return wire.encode(SheetsAnswer(SHEETS_VERSION, net, why[:500], []))

    try:
        a = wire.decode(ask, SheetsAsk, max_size=MAX_ASK_SIZE)
    except wire.WireError as exc:
        return refuse(f"malformed request: {exc.reason}")
    if a.version != SHEETS_VERSION:
        return refuse(f"unsupported request version {a.version}")
    if a.net != net:
        return refuse(f"wrong network {a.net!r}")
    max_sheets = max(0, min(a.max_sheets, PULL_MAX_SHEETS))
    budget = max(0, min(a.max_bytes, PULL_MAX_BYTES))
    out: list[bytes] = []
    # (the store never holds our own sheet: ``_deliver`` stores only accepted sheets, ``validate`` ignores ours)
    for data in itertools.chain([own] if own else [], store.newest_first()):
        if len(out) >= max_sheets:
            break
        if len(data) <= budget:
            out.append(data)
            budget -= len(data)
    return wire.encode(SheetsAnswer(SHEETS_VERSION, net, "", out))


def read_answer(data: bytes, *, net: str) -> tuple[str, list[bytes]]:
    """``(reason, [])`` for a malformed answer or a refusal, else ``("", sheets)`` (each still to be
    validated). A malformed answer's reason starts with "malformed"."""
    try:
        a = wire.decode(data, SheetsAnswer, max_size=MAX_ANSWER_SIZE)
    except wire.WireError as exc:
        return f"malformed answer: {exc.reason}", []
    if a.version != SHEETS_VERSION:
        return f"malformed answer: unsupported version {a.version}", []
    if a.net != net:
        return f"malformed answer: wrong network {a.net!r}", []
    if a.error:
        return f"refused: {a.error[:200]}", []
    if len(a.sheets) > PULL_MAX_SHEETS:
        return f"malformed answer: {len(a.sheets)} sheets > {PULL_MAX_SHEETS}", []
    if sum(len(s) for s in a.sheets) > PULL_MAX_BYTES:
        return f"malformed answer: over {PULL_MAX_BYTES} bytes of sheets", []
    return "", a.sheets


class RateLimit:
    """At most ``per_peer`` events per peer and ``total`` in all per sliding minute; ``take`` says why not."""

    WINDOW = 60.0

    def __init__(self, per_peer: int, total: int) -> None:
        self.per_peer, self.total = per_peer, total
        self._peer: dict[str, list[float]] = {}
        self._all: list[float] = []

    def take(self, peer: str, now: float) -> str:
        cut = now - self.WINDOW
        self._all = [t for t in self._all if t > cut]
        if len(self._peer) >= MAX_TRACKED_PEERS:
            self._peer = {p: ts for p, ts in self._peer.items() if ts and ts[-1] > cut}
        mine = [t for t in self._peer.get(peer, ()) if t > cut]
        if len(mine) >= self.per_peer:
            return f"rate limited: {self.per_peer} answers a minute per peer"
        if len(self._all) >= self.total:
            return f"rate limited: {self.total} answers a minute in all"
        mine.append(now)
        self._peer[peer] = mine
        self._all.append(now)
        return ""
