"""Wire sans-IO protocol instances together in memory, so protocol tests need no network.

``GossipNet`` holds N peers, each with its protocols; a ``Publish`` from one
is offered to every other peer's ``validate`` and, on ACCEPT, delivered as
``GossipReceived`` (full mesh, zero latency, in order). A ``SendRequest``
reaches the target peer's protocol serving that stream protocol as
``RequestReceived``; its ``Respond`` comes back as ``ResponseReceived`` (an
unknown peer or protocol answers with an error at once). A ``RunTask`` runs
when it is reached and its ``TaskDone`` goes to the peer's protocols. Timers are
collected and fired by ``advance(now)``. This is the ``ConnectionPair`` of h11/wsproto
grown to a small network; the simulator (``simulations/``) models latency and
mesh degree, this helper deliberately does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.protocols.base import (
    Command, Event, GossipReceived, Notify, Publish, RequestReceived, Respond, ResponseReceived, Result, RunTask,
    SendRequest, SetTimer, Started, TaskDone, TimerFired, Validation,
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
        self._calls: dict[int, tuple[Peer, object, SendRequest]] = {}  # incoming id -> requester
        self._call_ids = 0

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
            elif isinstance(cmd, SendRequest):
                sender = next((p for p in peer.protocols if cmd.protocol in getattr(p, "stream_protocols", ())),
                              None)
                target = self.peers.get(cmd.peer)
                server = target and next((p for p in target.protocols
                                          if cmd.protocol in getattr(p, "stream_protocols", ())), None)
                if server is None:
                    if sender is not None:
                        err = ResponseReceived(cmd.protocol, cmd.peer, cmd.request_id, b"", "protocol not supported")
                        queue += [(peer, c) for c in sender.handle(err, now)]
                    continue
                self._call_ids += 1
                self._calls[self._call_ids] = (peer, sender, cmd)
                ev = RequestReceived(cmd.protocol, peer.peer_id, self._call_ids, cmd.data)
                queue += [(target, c) for c in server.handle(ev, now)]
            elif isinstance(cmd, RunTask):  # at once, in order; the outcome goes to every protocol of the peer
                try:
                    done = TaskDone(cmd.name, cmd.fn())
                except Exception as exc:
                    done = TaskDone(cmd.name, None, exc)
                for proto in peer.protocols:
                    queue += [(peer, c) for c in proto.handle(done, now)]
            elif isinstance(cmd, Respond):
                call = self._calls.pop(cmd.request_id, None)
                if call is None:
                    continue
                requester, sender, req = call
                if sender is not None:
                    ev = ResponseReceived(req.protocol, peer.peer_id, req.request_id, cmd.data)
                    queue += [(requester, c) for c in sender.handle(ev, now)]

    def advance(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        for peer in list(self.peers.values()):
            for name, at in sorted(peer.timers.items(), key=lambda kv: kv[1]):
                if at <= now:
                    del peer.timers[name]
                    for proto in peer.protocols:
                        self.run(peer, proto.handle(TimerFired(name), now), now)
