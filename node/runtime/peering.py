"""Keeping a node connected: bootnodes, peer exchange, target count, backoff.

``PeerManager.run`` loops until cancelled:

* every ``dial_interval`` it tops the connection count up to ``target_peers``
  from the candidates it knows (bootnodes, peers learned by peer exchange),
  a few dials at a time, skipping peers in backoff. A failed dial doubles the
  peer's backoff (1 s .. 5 min, with jitter); a success clears it.
* every ``pex_interval`` (and at once when it has fewer peers than wanted)
  it asks a connected peer — a bootnode if it has one — for more peers
  (``node.runtime.pex``).
* with no peers at all it **re-bootstraps**: bootnodes leave backoff and are
  dialled again, whatever happened before.

It also answers peer-exchange requests from others (``serve``). Who closes
what: the manager only opens connections; the host closes them all when the
node stops. Cancelling ``run`` abandons dials in flight (trio cancels them).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
import multiaddr

from node.runtime import pex
from node.runtime.streams import StreamFailed, ask, read_request, write_response
from node.wire import WireError

log = logging.getLogger("keyswitch.runtime.peering")

MIN_BACKOFF = 1.0
MAX_BACKOFF = 300.0
DIAL_TIMEOUT = 10.0
#: seconds a peer-exchange answer waits for the identify of a connected peer it was asked to find
FIND_IDENTIFY_WAIT = 2.0
PARALLEL_DIALS = 4
LOOKUP_FANOUT = 3  # connected peers asked at once for a peer we have no address for
FORGET_AFTER = 4  # failed dials in a row before a (non-boot) peer is forgotten


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0


class PeerManager:
    def __init__(self, node, *, bootnodes: list[str], target: int, dial_interval: float = 1.0,
                 pex_interval: float = 10.0, seed: int | None = None, dial_learned: bool = True) -> None:
        self.node = node
        self.bootnodes = list(bootnodes)
        self.boot_ids = {pex.peer_of(b) for b in self.bootnodes} - {None}
        self.target = target
        self.dial_interval = dial_interval
        self.pex_interval = pex_interval
        self.rng = random.Random(seed)
        # peers we know how to reach: dial candidates, and what we hand out
        self.known = pex.PeerTable(ttl=600.0, seed=seed)
        self.dial_learned = dial_learned
        self.backoff: dict[str, _Backoff] = {}
        self.dialing: set[str] = set()
        self.stats = {"dials": 0, "dial_failures": 0, "pex_asked": 0, "pex_learned": 0,
                      "pex_served": 0, "rebootstraps": 0, "lookups": 0, "lookup_failures": 0,
                      "skipped_unsupported": 0}
        self._kick = trio.Event()
        self._had_peers = False

    # ------------------------------------------------------------ helpers
    def now(self) -> float:
        return trio.current_time()

    def kick(self) -> None:
        """Wake the loop now (e.g. a peer disconnected)."""
        self._kick.set()

    def add_candidates(self, peers: dict[str, list[str]]) -> int:
        """Peers heard of second-hand: new ones are added, known ones are *not*
        refreshed (only first-hand sightings keep a peer alive in the table,
        so a dead peer cannot circulate forever)."""
        new = 0
        me = self.node.peer_id
        for p, addrs in peers.items():
            if p == me or p in self.known:
                continue
            new += 1
            self.known.note(p, addrs, self.now())
        return new

    def _in_backoff(self, peer: str) -> bool:
        b = self.backoff.get(peer)
        return b is not None and b.until > self.now()

    def _failed(self, peer: str) -> None:
        b = self.backoff.setdefault(peer, _Backoff())
        b.failures += 1
        delay = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** (b.failures - 1))
        b.until = self.now() + delay * (0.75 + 0.5 * self.rng.random())
        if b.failures >= FORGET_AFTER and peer not in self.boot_ids:
            self.known.forget(peer)

    def _candidates(self) -> list[str]:
        connected = set(self.node.connected_peers())
        boot = [p for p in self.boot_ids if p not in connected]
        others = []
        if self.dial_learned:
            others = [p for p in self.known.recent(self.now()) if p not in connected and p not in self.boot_ids]
        self.rng.shuffle(others)
        # peers before bootnodes: bootnodes are for finding peers, not for gossip
        return [p for p in others + boot if p not in self.dialing and not self._in_backoff(p)]

    # ------------------------------------------------------------- dialing
    async def dial(self, peer: str) -> bool:
        addrs = self.known.addrs(peer)
        if not addrs:
            return False
        self.dialing.add(peer)
        self.stats["dials"] += 1
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addrs[0]))
            for extra in addrs[1:]:
                info.addrs.extend(info_from_p2p_addr(multiaddr.Multiaddr(extra)).addrs)
            with trio.fail_after(DIAL_TIMEOUT):
                await self.node.host.connect(info)
        except Exception as exc:  # unreachable, refused, handshake failure, timeout
            self.stats["dial_failures"] += 1
            self._failed(peer)
            log.debug("dial %s failed: %s", peer, exc)
            return False
        finally:
            self.dialing.discard(peer)
        self.backoff.pop(peer, None)
        return True

    async def _top_up(self) -> None:
        missing = self.target - len(self.node.connected_peers())
        if missing <= 0:
            return
        todo = self._candidates()[: min(missing, PARALLEL_DIALS)]
        if not todo:
            return
        async with trio.open_nursery() as n:
            for p in todo:
                n.start_soon(self.dial, p)

    def _rebootstrap(self) -> None:
        self.stats["rebootstraps"] += 1
        for p in self.boot_ids:
            self.backoff.pop(p, None)
        for b in self.bootnodes:
            pid = pex.peer_of(b)
            if pid:
                self.known.note(pid, [b], self.now())

    # --------------------------------------------------------- peer exchange
    async def ask_peers(self, peer: str, *, find: list[str] = ()) -> int:
        """Ask ``peer`` for peers (and for the addresses of the peers in ``find``); returns how many were new."""
        will_speak = getattr(self.node, "will_speak", None)
        if will_speak is not None and not await will_speak(peer, pex.PEX_PROTOCOL):
            return 0  # identify says it has no peer exchange (another implementation, a plain libp2p node)
        self.stats["pex_asked"] += 1
        try:
            data = await ask(self.node.host, peer, pex.PEX_PROTOCOL,
                             pex.request_bytes(self.node.net, self.node.announce_addrs(), find=find),
                             timeout=5.0, max_size=pex.MAX_PEX_MESSAGE)
            found = pex.parse_answer(data, net=self.node.net, me=self.node.peer_id)
        except (StreamFailed, WireError) as exc:
            log.debug("peer exchange with %s failed: %s", peer, getattr(exc, "reason", exc))
            return 0
        for p in find:  # asked for by name: fresher than whatever we had, however we had it
            if found.get(p):
                self.known.note(p, found.pop(p), self.now())
        new = self.add_candidates(found)
        self.stats["pex_learned"] += new
        return new

    async def lookup(self, peer: str, *, ask_at_most: int = LOOKUP_FANOUT) -> bool:
        """Find addresses for ``peer`` by asking connected peers (bootnodes first) at once; True when known.

        For a peer we must reach but never met since we started: the origin of an offer our book kept across a
        restart, say. Each answerer names the addresses it has seen the peer at (peer exchange, ``find``)."""
        if self.known.addrs(peer):
            return True
        connected = [p for p in self.node.connected_peers() if p != peer]
        connected = [p for p in connected if self._may_speak_pex(p)]
        asked = sorted(connected, key=lambda p: (p not in self.boot_ids, self.rng.random()))[:ask_at_most]
        self.stats["lookups"] += 1
        async with trio.open_nursery() as n:
            for p in asked:
                n.start_soon(lambda p=p: self.ask_peers(p, find=[peer]))
        if self.known.addrs(peer):
            return True
        self.stats["lookup_failures"] += 1
        return False

    async def serve(self, stream) -> None:
        """Stream handler for ``/keyswitch/pex/1.0.0``."""
        asker = stream.muxed_conn.peer_id.to_base58()
        try:
            data = await read_request(stream, timeout=5.0, max_size=pex.MAX_PEX_MESSAGE)
        except StreamFailed:
            await write_response(stream, b"")
            return
        await self._await_identify_of_sought(data)
        now = self.now()
        self._touch_connected(now)
        self.known.expire(now)
        out = pex.answer(self.known, data, asker, net=self.node.net, now=now)
        self.stats["pex_served"] += 1
        await write_response(stream, out)

    async def _await_identify_of_sought(self, data: bytes, wait: float = FIND_IDENTIFY_WAIT) -> None:
        """A peer asked for by name that is connected to us but not identified yet (it connected a moment ago,
        or identify is slow under load) has no listen address we could give: wait up to ``wait`` s for the end
        of its identify (``Node.identify_over``), then note its addresses. Without this the asker's lookup failed
        for a peer we were connected to (seen under load: ``test_runtime``'s lookup through a connected peer)."""
        identify_over = getattr(self.node, "identify_over", None)
        if identify_over is None:
            return
        try:
            sought = pex.decode_request(data, self.node.net).find[: pex.MAX_FIND]
        except WireError:
            return  # pex.answer gives the reason
        waiting = [p for p in sought if p in self.node.connected_peers() and not self.known.addrs(p)]
        if not waiting:
            return
        async with trio.open_nursery() as n:
            for p in waiting:
                n.start_soon(identify_over, p, wait)
        for p in waiting:
            addrs = self._peerstore_addrs(p)
            if addrs:
                self.known.note(p, addrs, self.now())

    def _may_speak_pex(self, peer: str) -> bool:
        """Not known (from identify) to lack peer exchange."""
        speaks = getattr(self.node, "speaks", None)
        return speaks is None or speaks(peer, pex.PEX_PROTOCOL) is not False

    def note_connected(self, peer: str) -> None:
        """A connection opened (either way): a first-hand sighting."""
        self._had_peers = True
        addrs = self.known.addrs(peer) or tuple(self._peerstore_addrs(peer))
        if addrs:
            self.known.note(peer, list(addrs), self.now())

    def note_disconnected(self, *, none_left: bool) -> None:
        """A peer's last connection closed. With no peer left, re-bootstrap at once rather than at the loop's
        next turn: the loop may be busy in a dial or a peer exchange, and a dial in flight could reconnect us
        first, so the bootnodes' backoff would stay and the loss would go uncounted."""
        if none_left and self._had_peers and self.bootnodes:
            log.info("no peers left: re-bootstrapping from %d bootnodes", len(self.bootnodes))
            self._rebootstrap()
            self._had_peers = False
        self.kick()

    def _touch_connected(self, now: float) -> None:
        for p in self.node.connected_peers():
            if p in self.known:
                self.known.touch(p, now)
            else:
                self.note_connected(p)

    def _peerstore_addrs(self, peer: str) -> list[str]:
        try:
            ma = self.node.host.get_peerstore().addrs(ID.from_base58(peer))
        except Exception:
            return []
        try:
            return pex.clean_addrs([str(a) for a in ma if "/tcp/" in str(a)], peer)
        except WireError:
            return []

    # ------------------------------------------------------------------ loop
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Maintain connections until cancelled (see module docstring)."""
        self._rebootstrap()
        self.stats["rebootstraps"] = 0
        task_status.started()
        next_pex = 0.0
        while True:
            if not self.node.connected_peers() and self._had_peers and self.bootnodes:  # missed by the notifee
                self.note_disconnected(none_left=True)
            await self._top_up()
            connected = self.node.connected_peers()
            now = self.now()
            connected = [p for p in connected if self._may_speak_pex(p)]
            if connected and (now >= next_pex or len(connected) < self.target and now >= next_pex - self.pex_interval + 2):
                boots = [p for p in connected if p in self.boot_ids]
                peer = self.rng.choice(boots or connected)
                await self.ask_peers(peer)
                next_pex = now + self.pex_interval * (0.8 + 0.4 * self.rng.random())
            self._kick = trio.Event()
            with trio.move_on_after(self.dial_interval):
                await self._kick.wait()
