"""Peer exchange: a tiny request/response stream protocol, ``/keyswitch/pex/1.0.0``.

A node asks a connected peer (a bootstrap node above all) for peers it has
seen recently, and tells it how to reach itself (its announce addresses; the
remote end of an inbound TCP connection is an ephemeral port, useless to
others). The answerer records the asker in its ``PeerTable`` and answers with
a random sample of recent peers, never the asker itself.

Wire: one varint-length-prefixed msgspec message each way (``node.wire``),
versioned, network-scoped, size-capped. Everything here but ``serve``/``ask``
is pure and tested without sockets.

A request may also name up to ``MAX_FIND`` peers to **find** (version 2): the
answer then leads with the addresses the answerer knows for them. A node uses
it when it must reach a peer it has no address for, for example the origin of
an offer its book kept across a restart (``PeerManager.lookup``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

from node import wire

PEX_PROTOCOL = "/keyswitch/pex/1.0.0"
PEX_VERSION = 2  # 2: requests name peers to find
MAX_PEX_MESSAGE = 16 * 1024
MAX_ADDRS_PER_PEER = 4
MAX_WANT = 32
MAX_ADDR_LEN = 200
MAX_FIND = 4
MAX_PEER_ID_LEN = 64  # base58 of a 38-byte identity multihash is ~52
UNSPECIFIED = ("0.0.0.0", "::")


class PexRequest(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    addrs: list[str]  # how to reach the asker (multiaddrs; /p2p/<asker> optional)
    want: int  # 0..MAX_WANT random recent peers
    find: list[str] = []  # 0..MAX_FIND peer ids whose addresses the asker needs


class PexResponse(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    peers: list[str]  # multiaddrs ending in /p2p/<peer id>
    error: str = ""


def _check_header(version: int, net: str, expect_net: str) -> None:
    if version != PEX_VERSION:
        raise wire.WireError(f"unsupported pex version {version}")
    if net != expect_net:
        raise wire.WireError(f"wrong network {net[:32]!r} (this is {expect_net!r})")


def clean_addrs(addrs: list[str], peer_id: str) -> list[str]:
    """Keep valid TCP multiaddrs for ``peer_id`` (``/p2p/`` appended if absent).

    Raises WireError for an address claiming to be another peer."""
    import multiaddr

    out: list[str] = []
    for a in addrs[: MAX_ADDRS_PER_PEER * 2]:
        if not isinstance(a, str) or len(a) > MAX_ADDR_LEN or not a.startswith("/"):
            continue
        try:
            m = multiaddr.Multiaddr(a)
            protos = [p.name for p in m.protocols()]
        except Exception:
            continue
        if "tcp" not in protos:
            continue
        if any(m.value_for_protocol(p) in UNSPECIFIED for p in ("ip4", "ip6") if p in protos):
            continue  # 0.0.0.0 / :: is a listen address, not a dialable one
        if "p2p" in protos:
            if m.value_for_protocol("p2p") != peer_id:
                raise wire.WireError("an address names another peer id")
            full = a
        else:
            full = f"{a}/p2p/{peer_id}"
        if full not in out:
            out.append(full)
        if len(out) >= MAX_ADDRS_PER_PEER:
            break
    return out


def decode_request(data: bytes, net: str) -> PexRequest:
    req = wire.decode(data, PexRequest, max_size=MAX_PEX_MESSAGE)
    _check_header(req.version, req.net, net)
    if not 0 <= req.want <= MAX_WANT:
        raise wire.WireError(f"want {req.want} outside 0..{MAX_WANT}")
    if len(req.addrs) > MAX_ADDRS_PER_PEER * 2:
        raise wire.WireError("too many addresses")
    if len(req.find) > MAX_FIND or any(not 0 < len(p) <= MAX_PEER_ID_LEN for p in req.find):
        raise wire.WireError(f"find names 0..{MAX_FIND} peer ids of 1..{MAX_PEER_ID_LEN} characters")
    return req


def decode_response(data: bytes, net: str) -> PexResponse:
    resp = wire.decode(data, PexResponse, max_size=MAX_PEX_MESSAGE)
    _check_header(resp.version, resp.net, net)
    if len(resp.peers) > MAX_WANT * MAX_ADDRS_PER_PEER:
        raise wire.WireError("too many peers")
    return resp


def peer_of(addr: str) -> str | None:
    """The ``/p2p/`` peer id at the end of a multiaddr string, if any."""
    i = addr.rfind("/p2p/")
    return addr[i + 5:] if i >= 0 else None


@dataclass
class _Entry:
    addrs: tuple[str, ...]
    last_seen: float


class PeerTable:
    """Recently seen peers and how to reach them (bounded, expiring)."""

    def __init__(self, *, ttl: float = 600.0, capacity: int = 2000, seed: int | None = None) -> None:
        self.ttl, self.capacity = ttl, capacity
        self._peers: dict[str, _Entry] = {}
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: str) -> bool:
        return peer in self._peers

    def note(self, peer: str, addrs: list[str] | tuple[str, ...], now: float) -> None:
        if not addrs:
            old = self._peers.get(peer)
            if old is None:
                return
            addrs = old.addrs
        self._peers[peer] = _Entry(tuple(addrs)[:MAX_ADDRS_PER_PEER], now)
        if len(self._peers) > self.capacity:
            oldest = min(self._peers, key=lambda p: self._peers[p].last_seen)
            del self._peers[oldest]

    def touch(self, peer: str, now: float) -> None:
        e = self._peers.get(peer)
        if e is not None:
            e.last_seen = now

    def forget(self, peer: str) -> None:
        self._peers.pop(peer, None)

    def addrs(self, peer: str, *, now: float | None = None) -> tuple[str, ...]:
        """How to reach ``peer``; with ``now``, only if it was seen within the ttl."""
        e = self._peers.get(peer)
        if e is None or now is not None and now - e.last_seen > self.ttl:
            return ()
        return e.addrs

    def expire(self, now: float) -> None:
        for p in [p for p, e in self._peers.items() if now - e.last_seen > self.ttl]:
            del self._peers[p]

    def recent(self, now: float) -> list[str]:
        return [p for p, e in self._peers.items() if now - e.last_seen <= self.ttl]

    def sample(self, n: int, *, exclude: set[str], now: float) -> list[str]:
        """Up to ``n`` random recent peers' addresses (all of each peer's)."""
        live = sorted(p for p in self.recent(now) if p not in exclude)
        picked = self._rng.sample(live, min(n, len(live)))
        out: list[str] = []
        for p in picked:
            out.extend(self._peers[p].addrs)
        return out


def answer(table: PeerTable, data: bytes, asker: str, *, net: str, now: float) -> bytes:
    """Serve one request (pure): record the asker, return the encoded response."""
    try:
        req = decode_request(data, net)
        addrs = clean_addrs(req.addrs, asker)
    except wire.WireError as exc:
        return wire.encode(PexResponse(PEX_VERSION, net, [], exc.reason))
    table.note(asker, addrs, now)
    found = [a for p in dict.fromkeys(req.find) if p != asker for a in table.addrs(p, now=now)]
    sample = table.sample(req.want, exclude={asker, *req.find}, now=now)
    return wire.encode(PexResponse(PEX_VERSION, net, (found + sample)[: MAX_WANT * MAX_ADDRS_PER_PEER]))


def request_bytes(net: str, my_addrs: list[str], want: int = MAX_WANT, find: list[str] = ()) -> bytes:
    return wire.encode(PexRequest(PEX_VERSION, net, list(my_addrs)[:MAX_ADDRS_PER_PEER], min(want, MAX_WANT),
                                  list(find)[:MAX_FIND]))


def parse_answer(data: bytes, *, net: str, me: str) -> dict[str, list[str]]:
    """Peer id -> addresses from a response; our own and unnamed entries dropped."""
    resp = decode_response(data, net)
    if resp.error:
        raise wire.WireError(f"peer refused: {resp.error}")
    out: dict[str, list[str]] = {}
    for a in resp.peers:
        p = peer_of(a) if isinstance(a, str) else None
        if not p or p == me:
            continue
        try:
            good = clean_addrs([a], p)
        except wire.WireError:
            continue
        if good:
            out.setdefault(p, [])
            if len(out[p]) < MAX_ADDRS_PER_PEER:
                out[p].extend(good)
    return out
