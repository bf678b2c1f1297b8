"""What an operator sees of each connected peer (``keyswitch peers``, ``GET /v1/peers``): the connection's
remote address and direction, the round-trip time of a libp2p ping, the agent version the peer gave in identify.

``PeerProbe.run`` is a service of the node (``Node._serve`` starts it): when a peer connects it asks it for
identify (py-libp2p's host keeps the protocols and addresses of the reply, not the agent version) and pings it
(``/ipfs/ping/1.0.0``), then pings every connected peer again every ``interval`` seconds. A peer that does not
answer within ``TIMEOUT`` keeps its last figures (none, for a new one); a peer that disconnects is forgotten.
Everything it learns comes from the peer itself and is shown as such, never trusted: the agent string is cut to
``MAX_AGENT`` printable characters.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

import trio
from libp2p.peer.id import ID

log = logging.getLogger("keyswitch.runtime.peerinfo")

PING_ID = "/ipfs/ping/1.0.0"
IDENTIFY_ID = "/ipfs/id/1.0.0"
INTERVAL = 30.0  # s between pings of a connected peer
TIMEOUT = 5.0  # s one identify or ping may take
MAX_AGENT = 64  # characters of a peer's agent version kept


def agent_version() -> str:
    """What this node says it runs, in identify: ``keyswitch/<version> (py-libp2p/<version>)``."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return f"keyswitch/{v('keyswitch')} (py-libp2p/{v('libp2p')})"


def announce_agent() -> None:
    """Make identify say ``agent_version()`` instead of py-libp2p's own string (a process-wide setting of
    py-libp2p's identify module: every node of this process is a Keyswitch node)."""
    from libp2p.identity.identify import identify

    identify.AGENT_VERSION = agent_version()


def _printable(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= MAX_AGENT else clean[:MAX_AGENT - 1] + "…"


def _tcp_multiaddr(endpoint) -> str:
    try:
        host, port = endpoint
    except (TypeError, ValueError):
        return ""
    return f"/ip6/{host}/tcp/{port}" if ":" in str(host) else f"/ip4/{host}/tcp/{port}"


class PeerProbe:
    """Per connected peer: latency (ms, the last ping), agent version (identify); see the module docstring."""

    def __init__(self, host, *, interval: float = INTERVAL, timeout: float = TIMEOUT,
                 identified: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.host, self.interval, self.timeout = host, interval, timeout
        self.identified = identified
        self.latency_ms: dict[str, float] = {}
        self.agent: dict[str, str] = {}
        self._new: set[str] = set()
        self._first: set[str] = set()  # peers whose first probe (after identify) has not finished
        self._scopes: dict[str, set[trio.CancelScope]] = {}  # probes in flight, cancelled when the peer leaves
        self._wake = trio.Event()

    # ------------------------------------------------------------- facts
    def connection(self, peer: str) -> dict[str, Any]:
        """The remote address and direction (``in``: the peer dialled us; ``out``: we dialled it) of the peer's
        first open connection, and how many connections to the peer are open (``connections``: more than one
        when both sides dialled each other at once)."""
        conns = self.host.get_network().get_connections(ID.from_base58(peer))
        if not conns:
            return {}
        muxed = conns[0].muxed_conn
        get_remote = getattr(muxed, "get_remote_address", None)
        return {"address": _tcp_multiaddr(get_remote()) if get_remote else "",
                "direction": "out" if getattr(muxed, "is_initiator", False) else "in", "connections": len(conns)}

    def describe(self, peer: str) -> dict[str, Any]:
        """The row fields for one connected peer: address, direction, latency_ms (None before its first pong),
        agent ("" before identify)."""
        return {**self.connection(peer), "latency_ms": self.latency_ms.get(peer), "agent": self.agent.get(peer, "")}

    # ------------------------------------------------------------- events
    def on_peer(self, peer: str, up: bool) -> None:
        """``Node.on_peer`` listener: probe a new peer at once, forget one that left."""
        if up:
            self._new.add(peer)
            self._wake.set()
        else:
            self._new.discard(peer)
            self.latency_ms.pop(peer, None)
            self.agent.pop(peer, None)
            for cs in self._scopes.pop(peer, ()):  # (a stream being opened would dial the peer again)
                cs.cancel()

    # ------------------------------------------------------------- probes
    async def ping(self, peer: str) -> float | None:
        """One ping round trip to ``peer`` in ms (None: no answer within ``timeout``, or refused)."""
        from libp2p.host.ping import perform_ping_roundtrip

        if peer not in self._connected():  # (host.new_stream would dial it: a probe never connects anyone)
            return None
        with trio.move_on_after(self.timeout):
            try:
                stream = await self.host.new_stream(ID.from_base58(peer), [PING_ID])
            except Exception as exc:  # noqa: BLE001 (a peer that went away, a refused protocol)
                log.debug("ping %s: %s", peer, exc)
                return None
            try:
                start = time.perf_counter()
                await perform_ping_roundtrip(stream)
                rtt = (time.perf_counter() - start) * 1e3
            except Exception as exc:  # noqa: BLE001 (a wrong pong, a reset)
                log.debug("ping %s: %s", peer, exc)
                return None
            finally:
                with trio.move_on_after(1) as cs:
                    cs.shield = True
                    try:
                        await stream.close()
                    except Exception:  # noqa: BLE001
                        pass
            self.latency_ms[peer] = round(rtt, 3)
            return self.latency_ms[peer]
        return None

    async def identify(self, peer: str) -> str:
        """The agent version ``peer`` gives in identify ("" when it does not answer within ``timeout``)."""
        from libp2p.identity.identify.pb.identify_pb2 import Identify
        from libp2p.utils import read_length_prefixed_protobuf

        if peer not in self._connected():  # (host.new_stream would dial it)
            return ""
        with trio.move_on_after(self.timeout):
            try:
                stream = await self.host.new_stream(ID.from_base58(peer), [IDENTIFY_ID])
                try:
                    msg = Identify()
                    msg.ParseFromString(await read_length_prefixed_protobuf(stream, use_varint_format=True))
                finally:
                    with trio.move_on_after(1) as cs:
                        cs.shield = True
                        await stream.close()
            except Exception as exc:  # noqa: BLE001 (a peer that went away or sent garbage)
                log.debug("identify %s: %s", peer, exc)
                return ""
            if peer in self._connected():
                self.agent[peer] = _printable(msg.agent_version)
            return self.agent.get(peer, "")
        return ""

    def _connected(self) -> set[str]:
        net = self.host.get_network()
        return {p.to_base58() for p, conns in list(net.connections.items()) if conns}

    async def _probe(self, peer: str, first: bool) -> None:
        with trio.CancelScope() as cs:
            self._scopes.setdefault(peer, set()).add(cs)
            try:
                if first:
                    self._first.add(peer)
                    await self._first_probe(peer)
                else:
                    await self.ping(peer)
            finally:
                self._first.discard(peer)
                self._scopes.get(peer, set()).discard(cs)
        if peer not in self._connected():  # it left meanwhile: nothing kept
            self.on_peer(peer, False)

    async def _first_probe(self, peer: str) -> None:
        # after the host's own identify of the peer (or its wait for it): py-libp2p skips that identify when the
        # peerstore already lists ping or identify for the peer, as a stream of ours opened first would make it,
        # and the node's requests would then wait for an identify that never comes
        if self.identified is not None and not await self.identified(peer):
            return  # it did not list ping: nothing to ask
        await self.identify(peer)
        await self.ping(peer)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: probe each peer as it connects, and ping every connected peer every ``interval``."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            next_round = trio.current_time() + self.interval
            while True:
                with trio.move_on_at(next_round):
                    await self._wake.wait()
                self._wake = trio.Event()
                new, self._new = self._new, set()
                for p in new:
                    nursery.start_soon(self._probe, p, True)
                if trio.current_time() >= next_round:
                    next_round = trio.current_time() + self.interval
                    for p in self._connected() - new - self._first:
                        nursery.start_soon(self._probe, p, False)
