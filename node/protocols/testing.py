"""Wire sans-IO protocol instances together in memory, so protocol tests need no network.

``GossipNet`` holds N peers, each with its protocols; a ``Publish`` from one
is offered to every other peer's ``validate`` and, on ACCEPT, delivered as
``GossipReceived`` (full mesh, zero latency, in order). A ``SendRequest``
reaches the target peer's protocol serving that stream protocol as
``RequestReceived``; its ``Respond`` comes back as ``ResponseReceived`` (an
unknown peer or protocol answers with an error at once). A ``LedgerCall`` runs
when it is reached and its ``TaskDone`` goes to the protocol that issued it (the
one interpreter, ``node.protocols.interpret``, with that protocol's ledger
adapters); an unknown command raises ``UnknownCommand``. Timers are
collected and fired by ``advance(now)``. This is the ``ConnectionPair`` of h11/wsproto
grown to a small network; the simulator (``simulations/``) models latency and
mesh degree, this helper deliberately does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.protocols.base import (
    Command, Event, GossipReceived, Notify, Publish, RequestReceived, Respond, ResponseReceived, Result, SendRequest,
    SetTimer, Started, TaskDone, TimerFired, Validation,
)
from node.protocols.interpret import Interpreter, LedgerAdapters


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
            self.run(p, proto.handle(Started(peer_id), now), now, proto)
        return p

    def call(self, peer_id: str, proto, commands: list[Command] | None, now: float) -> None:
        """Carry out commands an application call on ``proto`` returned."""
        self.run(self.peers[peer_id], commands or [], now, proto)

    def run(self, src: Peer, commands: list[Command], now: float, proto=None) -> None:
        """Carry out ``commands`` of ``src``'s protocol ``proto`` (None: not known, e.g. an application call
        through ``call``: the protocol serving the command's stream or topic, else the peer's only one), and
        every command they lead to, in order."""
        queue: list[tuple[Peer, object, Command]] = [(src, proto, c) for c in commands]
        mesh = self

        class _Transport:
            def publish(self, s, cmd: Publish) -> None:
                peer = s[0]
                mesh.published.append((peer.peer_id, cmd))
                for other in mesh.peers.values():
                    if other is peer:
                        continue
                    for p in other.protocols:
                        if cmd.topic not in getattr(p, "topics", ()):
                            continue
                        v = p.validate(cmd.topic, cmd.data, peer.peer_id, now)
                        other.validations.append((peer.peer_id, v))
                        if v.result is Result.ACCEPT:
                            ev: Event = GossipReceived(cmd.topic, cmd.data, peer.peer_id)
                            queue.extend((other, p, c) for c in p.handle(ev, now))

            def set_timer(self, s, cmd: SetTimer) -> None:
                s[0].timers[cmd.name] = cmd.at

            def notify(self, s, cmd: Notify) -> None:
                s[0].notes.append(cmd)

            def send_request(self, s, cmd: SendRequest) -> None:
                peer, sender = s
                if sender is None or cmd.protocol not in getattr(sender, "stream_protocols", ()):
                    sender = next((p for p in peer.protocols if cmd.protocol in getattr(p, "stream_protocols", ())),
                                  None)
                target = mesh.peers.get(cmd.peer)
                server = target and next((p for p in target.protocols
                                          if cmd.protocol in getattr(p, "stream_protocols", ())), None)
                if server is None:
                    if sender is not None:
                        err = ResponseReceived(cmd.protocol, cmd.peer, cmd.request_id, b"", "protocol not supported")
                        queue.extend((peer, sender, c) for c in sender.handle(err, now))
                    return
                mesh._call_ids += 1
                mesh._calls[mesh._call_ids] = (peer, sender, cmd)
                ev = RequestReceived(cmd.protocol, peer.peer_id, mesh._call_ids, cmd.data)
                queue.extend((target, server, c) for c in server.handle(ev, now))

            def respond(self, s, cmd: Respond) -> None:
                call = mesh._calls.pop(cmd.request_id, None)
                if call is None:
                    return
                requester, sender, req = call
                if sender is not None:
                    ev = ResponseReceived(req.protocol, s[0].peer_id, req.request_id, cmd.data)
                    queue.extend((requester, sender, c) for c in sender.handle(ev, now))

            def run_job(self, s, job) -> None:  # at once, in order; the outcome goes to the issuing protocol
                peer, p = s
                if p is None:
                    raise RuntimeError("a LedgerCall from an unknown protocol: pass proto= to GossipNet.run/call")
                done: TaskDone = job()
                queue.extend((peer, p, c) for c in p.handle(done, now))

        interp = Interpreter(_Transport(), lambda s: LedgerAdapters.of(s[1]))
        while queue:
            peer, p, cmd = queue.pop(0)
            if p is None and len(peer.protocols) == 1:
                p = peer.protocols[0]
            interp.execute((peer, p), cmd)

    def advance(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        for peer in list(self.peers.values()):
            for name, at in sorted(peer.timers.items(), key=lambda kv: kv[1]):
                if at <= now:
                    del peer.timers[name]
                    for proto in peer.protocols:
                        self.run(peer, proto.handle(TimerFired(name), now), now, proto)
