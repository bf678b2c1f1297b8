"""The libp2p node: host (TCP + Noise + Yamux), identify, ping, gossipsub, peers.

``Node(config).run(task_status=...)`` is the one long-running service; start
it with ``node = await nursery.start(Node(cfg).run)`` (or ``run_host``, which
also drives sans-IO protocols). When ``run`` returns or is cancelled, every
service it started stops and every connection closes: ``Node.stop()`` asks
for exactly that (graceful shutdown), cancelling the enclosing nursery does
the same abruptly. Nobody else closes the host.

Security: only Noise is offered (py-libp2p's ``new_host`` would also offer
TLS, SECIO and *plaintext*); Yamux is the muxer. Protocol ids are the
standard ones: ``/ipfs/id/1.0.0``, ``/ipfs/id/push/1.0.0``,
``/ipfs/ping/1.0.0``, ``/meshsub/1.2.0`` and ``/meshsub/1.1.0``, plus our
``/keyswitch/pex/1.0.0`` peer exchange.

Protocol selection: before opening one of *our* protocols (peer exchange, a
request such as the sheets pull) to a peer, the node reads the protocols the
peer listed in identify (``speaks``; waiting for the host's identify of the
peer to end, however slow, up to ``IDENTIFY_WAIT``). A peer that listed them
but not this one is not asked: no stream, no "protocol not supported" error
line (py-libp2p logs one at error level for every failed negotiation),
``peering.skipped_unsupported`` counts it. A peer whose identify failed is
asked as before. Every connection period of a peer is identified afresh: at
its last disconnection the peerstore forgets its protocols (py-libp2p skips
identify of a peer whose protocols it still lists, and forgets it identified
one whenever any of its connections closes).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.network.config import ConnectionConfig
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from node import identity
from node.runtime import pex, yamuxwin
from node.runtime.gossip import KsPubsub, make_gossipsub
from node.runtime.peering import PeerManager
from node.runtime.peerinfo import PING_ID, PeerProbe, announce_agent
from node.runtime.streams import StreamFailed, StreamPool

log = logging.getLogger("keyswitch.runtime")

yamuxwin.install()  # Yamux as go-yamux: a WINDOW_UPDATE per half window read; a peer beyond its window cut off

#: at most this many seconds a request waits for the end of the host's identify of a just-connected peer (an
#: event: it ends as soon as the reply is parsed or fails); py-libp2p gives up on a reply after 10 s itself
IDENTIFY_WAIT = 10.0


@dataclass
class NodeConfig:
    """What a node needs to run. ``from_config`` maps ``node.config`` keys."""

    datadir: Path
    net: str = "dev"
    listen: list[str] = field(default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"])
    announce: list[str] = field(default_factory=list)
    bootnodes: list[str] = field(default_factory=list)
    target_peers: int = 8
    gossip_rate_limit: float = 40.0
    #: run gossipsub (bootstrap nodes do not: they hold no offers)
    gossip: bool = True
    #: local reputation of a peer id, added to its gossipsub score (P6)
    app_score: Callable[[str], float] | None = None
    dial_interval: float = 1.0
    pex_interval: float = 10.0
    heartbeat: float = 1.0
    #: a REJECT penalty's decay per heartbeat and the PRUNE back-off (``network.gossip_penalty_decay``, ``..._prune_backoff``)
    penalty_decay: float = 0.99
    prune_backoff: int = 60
    mesh_degree: int = 6
    #: dial peers learned by peer exchange (bootstrap nodes only dial bootnodes)
    dial_learned: bool = True
    seed: int | None = None

    @classmethod
    def from_config(cls, cfg: Any, **kw: Any) -> "NodeConfig":
        return cls(
            datadir=Path(cfg.datadir),
            net=cfg["network.net"],
            listen=list(cfg["network.listen"]),
            announce=list(cfg["network.announce"]),
            bootnodes=list(cfg.bootnodes),
            target_peers=int(cfg["network.target_peers"]),
            gossip_rate_limit=float(cfg["network.gossip_rate_limit"]),
            penalty_decay=float(cfg["network.gossip_penalty_decay"]),
            prune_backoff=int(cfg["network.gossip_prune_backoff"]),
            **kw,
        )


def tcp_listen_ports(listen: list[str]) -> list[tuple[str, int]]:
    """(host, port) of each /ip4|ip6/<host>/tcp/<port> listen multiaddr with a fixed port (not 0)."""
    out = []
    for a in listen:
        parts = a.split("/")
        if len(parts) >= 5 and parts[1] in ("ip4", "ip6") and parts[3] == "tcp" and parts[4].isdigit():
            if int(parts[4]):
                out.append((parts[2], int(parts[4])))
    return out


def check_listen_ports_free(listen: list[str]) -> None:
    """OSError(EADDRINUSE) naming the port when a fixed listen port already has a live listener. py-libp2p's TCP
    listener sets SO_REUSEPORT (for hole punching), so a second node would otherwise bind the same port
    silently and the kernel would split incoming connections between the two.

    The probe is a connection, not a bind: only a listener accepts one. A bind probe also fails while the
    sockets of a node that just stopped linger on the port (its accepted connections closing), and would
    refuse a restart on the same port that py-libp2p itself would accept."""
    import errno
    import socket

    for host, port in tcp_listen_ports(listen):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        target = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect((target, port))
            except OSError:  # refused, unreachable, timed out: nobody listens there
                continue
        raise OSError(errno.EADDRINUSE, f"swarm port {host}:{port} is already in use (network.listen)")


async def _no_auto_connect() -> None:
    """Replaces py-libp2p's AutoConnector.maybe_connect (see Node.__init__)."""


class _ConnNotifee(INotifee):
    def __init__(self, node: "Node") -> None:
        self.node = node

    async def opened_stream(self, network, stream) -> None:  # noqa: D401
        pass

    async def closed_stream(self, network, stream) -> None:
        pass

    async def connected(self, network, conn) -> None:
        self.node._conn_change(conn.muxed_conn.peer_id.to_base58(), +1)

    async def disconnected(self, network, conn) -> None:
        self.node._conn_change(conn.muxed_conn.peer_id.to_base58(), -1)

    async def listen(self, network, ma) -> None:
        pass

    async def listen_close(self, network, ma) -> None:
        pass


class Node:
    """A running libp2p host plus peering; see the module docstring."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.net = config.net
        self.key_pair = identity.key_pair(Path(config.datadir))
        self.peer_id: str = ID.from_pubkey(self.key_pair.public_key).to_base58()
        self.listen_addrs: list[str] = []  # full, with /p2p/<id>, once running
        high = max(64, 8 * config.target_peers)
        self.host = new_host(
            key_pair=self.key_pair,
            sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(self.key_pair, noise_privkey=create_x25519().private_key)},
            muxer_opt={YAMUX_PROTOCOL_ID: Yamux},  # new_host would add mplex as a fallback
            listen_addrs=[multiaddr.Multiaddr(a) for a in config.listen],
            announce_addrs=[multiaddr.Multiaddr(a) for a in config.announce] or None,
            # py-libp2p 0.8.1 ships an AutoConnector that dials every peer in the
            # peerstore until 150 connections (the watermark midpoint); the
            # PeerManager owns dialing here, so its floor is 0 and it is switched
            # off below. The pruner still sheds connections above `high`.
            connection_config=ConnectionConfig(min_connections=0, low_watermark=0, high_watermark=high,
                                               max_connections=2 * high),
        )
        self.host.get_network().auto_connector.maybe_connect = _no_auto_connect  # type: ignore[method-assign]
        # py-libp2p refuses every dial of a peer for 60 s after one dial of it failed (its negative cache). The
        # PeerManager backs off its own dials per peer, and a protocol's request paces its own retries (a
        # contract resends a released key every few seconds until it is acknowledged): with the cache, a peer
        # back from a restart or a cut link within the minute got no key, and the contract ended without it
        # (tests/faults, a ring with its links cut 3.5 s: all three keys lost). So nothing is cached.
        negative = getattr(self.host.get_network(), "_negative_peer_cache", None)
        if negative is not None:
            negative._ttl = 0.0
        self.streams = StreamPool(self.host)  # request/response streams, kept open and reused
        self.router = None
        self.pubsub: KsPubsub | None = None
        if config.gossip:
            self.router = make_gossipsub(rate_limit=config.gossip_rate_limit, app_score=config.app_score,
                                         degree=config.mesh_degree, heartbeat=config.heartbeat,
                                         penalty_decay=config.penalty_decay, prune_backoff=config.prune_backoff)
            self.pubsub = KsPubsub(self.host, self.router)
        self.peers = PeerManager(self, bootnodes=config.bootnodes, target=config.target_peers,
                                 dial_interval=config.dial_interval, pex_interval=config.pex_interval,
                                 seed=config.seed, dial_learned=config.dial_learned)
        self.host.set_stream_handler(pex.PEX_PROTOCOL, self.peers.serve)
        self._conns: dict[str, int] = collections.defaultdict(int)
        self._identify_ended: dict[str, trio.Event] = {}  # connected peer -> set when the host's identify of it ends
        self._identified: set[str] = set()  # connected peers whose identify reply came (since their first connection)
        self._watch_identify()
        self._peer_listeners: list[Callable[[str, bool], None]] = []
        self.host.get_network().register_notifee(_ConnNotifee(self))
        announce_agent()  # identify says keyswitch/<version>
        # each peer's address, direction, ping latency, agent (keyswitch peers), once identify is done
        self.probe = PeerProbe(self.host, identified=lambda peer: self.will_speak(peer, PING_ID))
        self.on_peer(self.probe.on_peer)
        self._cancel: trio.CancelScope | None = None
        self.started = trio.Event()
        self.stopped = trio.Event()

    # ----------------------------------------------------------- connections
    def _conn_change(self, peer: str, delta: int) -> None:
        before = self._conns[peer]
        self._conns[peer] = max(0, before + delta)
        after = self._conns[peer]
        if after == 0:
            del self._conns[peer]
        if (before == 0) != (after == 0):
            up = after > 0
            if up:
                self._identify_began(peer)
                self.peers.note_connected(peer)
            else:
                self._identify_forget(peer)
                self.peers.note_disconnected(none_left=not self._conns)
            for fn in list(self._peer_listeners):
                fn(peer, up)

    def on_peer(self, fn: Callable[[str, bool], None]) -> None:
        """Call ``fn(peer_id, connected)`` when a peer's first connection opens / last closes."""
        self._peer_listeners.append(fn)

    def connected_peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_network().connections if self._has_conn(p)]

    def _has_conn(self, pid: ID) -> bool:
        return bool(self.host.get_network().connections.get(pid))

    def announce_addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()]

    async def connect(self, addr: str, *, now: bool = False) -> str:
        """Dial a full multiaddr (``.../p2p/<id>``); return the peer id. ``now``: even if a dial of that peer
        failed a moment ago (an operator's ``keyswitch connect``; py-libp2p would refuse from its negative cache)."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        self.peers.known.note(info.peer_id.to_base58(), [addr], trio.current_time())
        if now:
            unblock = getattr(self.host.get_network(), "unblock_peer", None)
            if unblock is not None:
                unblock(info.peer_id)
        await self.host.connect(info)
        return info.peer_id.to_base58()

    # --------------------------------------------------------------- identify
    def _watch_identify(self) -> None:
        """Learn when py-libp2p's identify of a peer ends (``BasicHost._identify_peer``, run for each new connection:
        it returns once the reply is parsed into the peerstore, or it failed or timed out)."""
        run = self.host._identify_peer  # (py-libp2p 0.8.1, pinned: an upgrade without it fails here, not silently)

        async def identify(peer_id: ID, *, reason: str) -> None:
            try:
                await run(peer_id, reason=reason)
            finally:
                peer = peer_id.to_base58()
                if peer in self._conns:
                    if peer_id in self.host._identified_peers:
                        self._identified.add(peer)
                    self._identify_ended[peer].set()

        self.host._identify_peer = identify

    def _identify_began(self, peer: str) -> None:
        """``peer``'s first connection opened: its identify is on its way (py-libp2p starts it)."""
        self._identify_ended[peer] = ended = trio.Event()
        pid = ID.from_base58(peer)
        if pid in self.host._identified_peers:  # (already done: before this notification)
            self._identified.add(peer)
            ended.set()

    def _identify_forget(self, peer: str) -> None:
        """``peer``'s last connection closed: its next connection is identified afresh (waiters released)."""
        self._identified.discard(peer)
        ended = self._identify_ended.pop(peer, None)
        if ended is not None:
            ended.set()
        self.host.get_peerstore().clear_protocol_data(ID.from_base58(peer))

    def speaks(self, peer: str, protocol: str) -> bool | None:
        """True/False: ``peer`` listed / did not list ``protocol`` in identify; None: not identified (yet)."""
        # identified = py-libp2p parsed the peer's identify reply during its current connections. Not "the
        # identify protocol is in the peerstore": opening our identify stream to the peer records that before the
        # reply arrives, and every other protocol then looked unlisted (a node skipped its first requests to a
        # fresh connection: test_network's echo)
        if peer not in self._identified:
            return None
        store = self.host.get_peerstore()
        try:
            pid = ID.from_base58(peer)
            protocols = set(store.get_protocols(pid)) if store.has_peer(pid) else set()
        except Exception:
            protocols = set()
        return protocol in protocols

    async def identify_over(self, peer: str, wait: float) -> bool:
        """True once the host's identify of ``peer`` has ended (at once for a peer not connected); False when it
        is still not over after ``wait`` s."""
        ended = self._identify_ended.get(peer)
        if ended is None:
            return True
        with trio.move_on_after(wait):
            await ended.wait()
        if wait >= IDENTIFY_WAIT:  # an identify never started, or still not over: not waited for again (a reply
            ended.set()  # that comes later still counts: ``speaks`` reads it)
        return ended.is_set()

    async def will_speak(self, peer: str, protocol: str, *, wait: float = IDENTIFY_WAIT) -> bool:
        """False when identify says ``peer`` does not speak ``protocol``; the identify of a connected peer is
        awaited first, until it ends (up to ``wait`` s: then, as for a peer whose identify failed, True)."""
        await self.identify_over(peer, wait)
        if self.speaks(peer, protocol) is False:
            self.peers.stats["skipped_unsupported"] += 1
            log.debug("not opening %s to %s: not among the protocols it listed in identify", protocol, peer)
            return False
        return True

    async def disconnect(self, peer: str) -> None:
        await self.host.disconnect(ID.from_base58(peer))

    # ----------------------------------------------------------------- gossip
    async def publish(self, topic: str, data: bytes) -> None:
        if self.pubsub is None:
            raise RuntimeError("this node runs without gossipsub")
        await self.pubsub.publish(topic, data)
        await self._drain()

    async def _drain(self, high: int = 16, limit: float = 2.0) -> None:
        """Back-pressure for bursts of local publishes.

        py-libp2p keeps a 32-RPC outbound queue per peer and *drops* RPCs
        when it is full (as go-libp2p-pubsub does), but its send loops only
        run when the publishing task yields: twenty back-to-back publishes
        lose some. Wait (up to ``limit`` s) until every queue is half empty."""
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(limit):
            while any(len(q) >= high for q in list(self.pubsub.peer_queues.values())):
                await trio.sleep(0.002)

    async def request(self, peer: str, protocol: str, data: bytes, *, timeout: float = 10.0) -> bytes:
        """One request/response with ``peer``, over a stream kept open for the next one (``StreamPool``);
        a peer we are not connected to is dialled first at the addresses peer exchange gave us (the host
        alone knows none for it), and a peer we have no address for is looked up through our connected
        peers first (``PeerManager.lookup``). The identify of a peer just connected is awaited first (not over
        within ``timeout``: the request fails; then the stream has ``timeout`` too). Raises ``StreamFailed``
        with the reason."""
        if peer not in self.connected_peers() and self.peers is not None:
            with trio.move_on_after(timeout):
                if not await self.peers.lookup(peer):
                    raise StreamFailed(f"no address known for peer {peer} (asked our connected peers; is it "
                                       f"online and on network {self.net!r}?)")
                await self.peers.dial(peer)
        if not await self.identify_over(peer, timeout):  # (not asked blind: it may not speak the protocol)
            raise StreamFailed(f"peer {peer} not identified within {timeout:g} s (request timeout)")
        if not await self.will_speak(peer, protocol, wait=0):
            raise StreamFailed(f"peer {peer} does not speak {protocol} (not in the protocols it listed in identify)")
        return await self.streams.ask(peer, protocol, data, timeout=timeout)

    def mesh_peers(self, topic: str) -> list[str]:
        if self.router is None:
            return []
        return sorted(p.to_base58() for p in self.router.mesh.get(topic, ()))

    def gossip_health(self, peers: list[str] | None = None) -> dict[str, Any]:
        """Per connected peer: gossipsub score, its components, thresholds below, drops; the router's counters
        (heartbeats, negative-score prunes, refused GRAFTs, graylisted RPCs) and the configured heartbeat."""
        topics = list(self.pubsub.topic_ids) if self.pubsub else []
        peers = sorted(self.connected_peers()) if peers is None else peers
        return {
            "peer_scores": {p: self.pubsub.peer_score(p, topics) for p in peers} if self.pubsub and topics else {},
            "router": dict(getattr(self.router, "counters", {})) if self.router is not None else {},
            "heartbeat": self.config.heartbeat,
        }

    def status(self) -> dict[str, Any]:
        topics = list(self.pubsub.topic_ids) if self.pubsub else []
        peers = sorted(self.connected_peers())
        return {
            "peer_id": self.peer_id,
            "net": self.net,
            "listen_addrs": self.listen_addrs,
            "peers": peers,
            "scores": {p: round(self.pubsub.score_of(p, topics), 3) for p in peers} if self.pubsub and topics else {},
            **self.gossip_health(peers),
            "mesh": {t: self.mesh_peers(t) for t in topics},
            "gossip": dict(self.pubsub.counters) if self.pubsub else {},
            "gossip_last_reasons": dict(self.pubsub.last_reasons) if self.pubsub else {},
            "gossip_duplicates": dict(self.pubsub.duplicates) if self.pubsub else {},
            "peering": dict(self.peers.stats),
            "known_peers": len(self.peers.known),
        }

    # -------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Graceful shutdown: ``run`` closes every service and connection and returns."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until ``stop()`` or cancellation; ``task_status.started(self)`` once listening.

        Order of start: network listening, then pubsub and the gossipsub
        router (background services owned here), then the peer manager.
        On exit everything stops in reverse order and the swarm closes all
        connections; cancellation is the shutdown signal, nothing survives it.
        """
        try:
            check_listen_ports_free(self.config.listen)
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with self.host.run(listen_addrs=[multiaddr.Multiaddr(a) for a in self.config.listen]):
                    try:
                        self.listen_addrs = self.announce_addrs()
                        if self.pubsub is not None:
                            async with background_trio_service(self.pubsub):
                                async with background_trio_service(self.router):
                                    await self.pubsub.wait_until_ready()
                                    await self._serve(task_status)
                        else:
                            await self._serve(task_status)
                    finally:
                        # py-libp2p's TCP listeners run in nurseries of their own: cancelling the swarm's
                        # service leaves them accepting. Close the swarm (connections, then listeners) here,
                        # so a stopped node's port is free again (a node restarted in-process on it).
                        with trio.move_on_after(5) as cs:
                            cs.shield = True
                            await self.host.get_network().close()
        finally:
            self.stopped.set()

    async def _serve(self, task_status) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.peers.run)
            await nursery.start(self.probe.run)
            self.started.set()
            log.info("node %s listening on %s", self.peer_id, ", ".join(self.listen_addrs))
            if all("/ip4/0.0.0.0/" in a or "/ip6/::/" in a for a in self.listen_addrs):
                log.warning("listening only on unspecified addresses and nothing announced: peers cannot "
                            "learn how to reach this node (set --announce /ip4/<public ip>/tcp/<port>)")
            task_status.started(self)
            await trio.sleep_forever()
