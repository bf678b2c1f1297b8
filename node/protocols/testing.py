"""Wire sans-IO protocol instances together in memory, so protocol tests need no network.

``GossipNet`` holds N peers, each with its protocols; a ``Publish`` from one
is offered to every other peer's ``validate`` and, on ACCEPT, delivered as
``GossipReceived`` (full mesh, zero latency, in order). Timers are collected
and fired by ``advance(now)``. This is the ``ConnectionPair`` of h11/wsproto
grown to a small network; the simulator (``simulations/``) models latency and
mesh degree, this helper deliberately does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.protocols.base import (
    Command, Event, GossipReceived, Notify, Publish, Result, SetTimer, Started, TimerFired, Validation,
)


@dataclass
class Peer:
    peer_id: str
    protocols: list
    timers: dict[str, float] = field(default_factory=dict)
    notes: list[Notify] = field(default_factory=list)
    validations: list[tuple[str, Validation]] = field(default_factory=list)


class GossipNet:
    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.published: list[tuple[str, Publish]] = []

    def add(self, peer_id: str, *protocols, now: float = 0.0) -> Peer:
        p = Peer(peer_id, list(protocols))
        self.peers[peer_id] = p
        for proto in protocols:
            self.run(p, proto.handle(Started(peer_id), now), now)
        return p

    def call(self, peer_id: str, proto, commands: list[Command] | None, now: float) -> None:
        """Carry out commands an application call on ``proto`` returned."""
        self.run(self.peers[peer_id], commands or [], now)

    def run(self, src: Peer, commands: list[Command], now: float) -> None:
        queue = [(src, c) for c in commands]
        while queue:
            peer, cmd = queue.pop(0)
            if isinstance(cmd, SetTimer):
                peer.timers[cmd.name] = cmd.at
            elif isinstance(cmd, Notify):
                peer.notes.append(cmd)
            elif isinstance(cmd, Publish):
                self.published.append((peer.peer_id, cmd))
                for other in self.peers.values():
                    if other is peer:
                        continue
                    for proto in other.protocols:
                        if cmd.topic not in getattr(proto, "topics", ()):
                            continue
                        v = proto.validate(cmd.topic, cmd.data, peer.peer_id, now)
                        other.validations.append((peer.peer_id, v))
                        if v.result is Result.ACCEPT:
                            ev: Event = GossipReceived(cmd.topic, cmd.data, peer.peer_id)
                            queue += [(other, c) for c in proto.handle(ev, now)]

    def advance(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        for peer in list(self.peers.values()):
            for name, at in sorted(peer.timers.items(), key=lambda kv: kv[1]):
                if at <= now:
                    del peer.timers[name]
                    for proto in peer.protocols:
                        self.run(peer, proto.handle(TimerFired(name), now), now)
