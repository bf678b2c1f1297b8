"""Drives sans-IO protocols (``node.protocols.base``) over a running ``Node``.

For each protocol: its gossip ``topics`` are subscribed and get a validator
that calls ``protocol.validate(topic, data, from_peer, now)`` (REJECT and
IGNORE mapped as in ``node.runtime.gossip``); its ``stream_protocols`` get a
stream handler. Events (``Started``, ``GossipReceived``, ``PeerConnected``,
``PeerDisconnected``, ``TimerFired``, ``RequestReceived``,
``ResponseReceived``) are fed one at a time, in order, to
``protocol.handle(event, now)`` and the commands it returns are carried out:

* ``Publish(topic, data)``: gossipsub publish;
* ``SetTimer(name, at)``: ``TimerFired(name)`` to the same protocol at
  wall time ``at`` (per protocol, a new timer replaces one of the same name);
* ``SendRequest(protocol, peer, request_id, data, timeout)``: a stream
  request (``Node.request``: over a stream kept open and reused); the answer
  or the failure comes back as ``ResponseReceived`` with the protocol's own
  ``request_id``;
* ``Respond(request_id, data)``: answers a ``RequestReceived`` (the driver
  numbers incoming requests; an unanswered request times out after
  ``respond_timeout`` and the stream is reset). A stream stays open after
  its answer for the peer's next request, in order, until the peer closes
  it or leaves it idle for ``idle_timeout`` seconds. A protocol whose
  ``duplex_streams`` names a stream protocol asks its peers on it too (each
  side sends requests): a peer's first request there opens a stream back to
  it at once (``StreamPool.warm``), so our first request does not wait for
  that stream's negotiation, and a request that finds no idle stream opens a
  spare one alongside its own (two requests in a row, e.g. a release
  protocol's cosign and first release, then both find one);
* ``LedgerCall(name, op, args)``: run by the one interpreter (``node.protocols.interpret``) with the
  issuing protocol's ledger adapters on a worker thread (``trio.to_thread``), so blocking I/O such as a
  ledger call never stalls the event loop; ``TaskDone(name, result, error)`` comes back to the same
  protocol (only), in order with the other events;
* ``Notify(kind, detail)``: logged, kept in ``driver.notifications`` (last
  1,000) and passed to ``on_notify`` if given.

Every command goes through ``node.protocols.interpret.Interpreter`` (as in the simulator and the protocol
test harness); a command it does not know (``UnknownCommand``) is logged as an error and counted in
``errors``, like a protocol that raises.

A protocol whose ``handle`` calls the enclave (a blocking IPC) says so with the class attribute
``handle_blocks = True`` (the contract protocols: release, contract-run, key escrow): its ``handle`` (and
``submit``'s calls on it) run OFF the trio thread, on one worker at a time (``trio.to_thread.run_sync`` with
a ``CapacityLimiter(1)``), event after event in order, so the event loop (timers, streams, gossip, the API)
stays responsive while it waits. Other protocols (the offer book and the stores behind outcomes and
reputation are SQLite connections bound to the trio thread) keep running on the trio thread. The commands
a handle returns are carried out on the trio thread. ``validate`` is called synchronously by gossipsub on
the trio thread; it and every handle hold ``driver.lock`` (a ``threading.RLock``), so validate and handle
still never run concurrently and protocols need no locks of their own. Application code that reads an
offloaded protocol's state from the trio thread should copy it at once (``list(d.values())``) or hold
``driver.lock``. A protocol that raises is logged and the event is dropped; the node keeps running.

The application acts through a protocol with ``submit(protocol, fn)`` (fire and forget: ``fn(now) ->
commands`` runs in order with the events) or awaits a call with ``await call(protocol, fn, timeout=...)``:
its value comes back, or ``NotTaken`` (withdrawn before the worker took it: it never runs) or
``StillRunning`` (taken, not ended in time): never a call given up on that still runs later.

Lifecycle: ``run`` is started by ``run_host`` in the node's nursery (or by
you with ``nursery.start``) and runs until cancelled; cancelling it drops
queued events and pending timers, and abandons requests in flight (their
streams are closed by the host when the node stops).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
from typing import Any, Callable, Sequence

import trio

from node.clock import Clock, SystemClock
from node.protocols.base import (
    Command,
    Event,
    GossipReceived,
    Notify,
    PeerConnected,
    PeerDisconnected,
    Publish,
    RequestReceived,
    Respond,
    ResponseReceived,
    Result,
    SansIOProtocol,
    SendRequest,
    SetTimer,
    Started,
    TaskDone,
    TimerFired,
    Validation,
)
from node.protocols.interpret import Interpreter, LedgerAdapters, UnknownCommand
from node.runtime.calls import AwaitedCall, Call, NotTaken
from node.runtime.streams import StreamFailed, close_stream, read_request, write_frame, write_response

log = logging.getLogger("keyswitch.runtime.driver")


class ProtocolDriver:
    def __init__(self, node, protocols: Sequence[SansIOProtocol], *, clock: Clock | None = None,
                 on_notify: Callable[[Notify], None] | None = None, respond_timeout: float = 10.0,
                 idle_timeout: float = 60.0) -> None:
        self.node = node
        self.protocols = list(protocols)
        self.clock = clock or SystemClock()
        self.on_notify = on_notify
        self.respond_timeout = respond_timeout
        self.idle_timeout = idle_timeout  # longer than a StreamPool keeps a stream idle (30 s)
        self.notifications: collections.deque[Notify] = collections.deque(maxlen=1000)
        self.errors = 0
        self._send, self._recv = trio.open_memory_channel[tuple[int | None, Event]](10_000)
        self._timers: dict[tuple[int, str], float] = {}
        self._timer_wake = trio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[int, trio.Event, list[bytes]]] = {}
        self._nursery: trio.Nursery | None = None
        self._by_topic: dict[str, list[int]] = collections.defaultdict(list)
        for i, p in enumerate(self.protocols):
            for t in p.topics:
                self._by_topic[t].append(i)
        self.lock = threading.RLock()  # held by every handle/submit call (worker thread) and validate (trio)
        self._worker = trio.CapacityLimiter(1)  # one handle at a time, in order, off the trio thread
        # per protocol class (and "<class>.validate"): [calls, seconds waiting for ``lock``, holding it] (``stats``)
        self._handled: dict[str, list] = {}
        # awaited calls (``call``) by how they ended (``ended``, ``taken``: not ended in time, ``withdrawn``), and
        # the longest a call waited to be taken: what a 429 from the API comes from (``stats``)
        self._calls: dict[str, float] = {"ended": 0, "taken": 0, "withdrawn": 0, "wait_max_s": 0.0}
        self.interpreter = Interpreter(self, lambda i: dataclasses.replace(
            LedgerAdapters.of(self.protocols[i]), clock=time.perf_counter))

    # --------------------------------------------------------------- validate
    def _validator(self, topic: str):
        owners = [self.protocols[i] for i in self._by_topic[topic]]

        def validate(topic: str, data: bytes, forwarder: str) -> Validation:
            now = self.clock.now()
            worst = Validation.accept()
            for p in owners:
                t0 = time.perf_counter()
                with self.lock:
                    t1 = time.perf_counter()
                    try:
                        v = p.validate(topic, data, forwarder, now)
                    finally:
                        self._count(f"{type(p).__name__}.validate", t1 - t0, time.perf_counter() - t1)
                if v.result is Result.REJECT:
                    return v
                if v.result is Result.IGNORE:
                    worst = v
            return worst

        return validate

    # ----------------------------------------------------------------- events
    def _post(self, target: int | None, event: Event) -> None:
        try:
            self._send.send_nowait((target, event))
        except trio.WouldBlock:
            self.errors += 1
            log.warning("driver queue full: dropped %s", type(event).__name__)

    def _on_peer(self, peer: str, up: bool) -> None:
        self._post(None, PeerConnected(peer) if up else PeerDisconnected(peer))

    async def _pump_gossip(self) -> None:
        async for d in self.node.pubsub.deliveries:
            ev = GossipReceived(d.topic, d.data, d.forwarder, d.msg_id)
            for i in self._by_topic.get(d.topic, ()):
                await self._send.send((i, ev))

    def submit(self, protocol: SansIOProtocol, fn: Callable[[float], list[Command] | None]) -> None:
        """Run ``fn(now)`` on the driver loop, in order with events, and carry out
        the commands it returns as if ``protocol.handle`` had returned them.

        This is how the application (the daemon, the API) acts through a
        protocol, e.g. ``driver.submit(offers, lambda now: offers.publish_sheet(sheet, now))``,
        without ever running concurrently with ``validate``/``handle``."""
        self._post(self.protocols.index(protocol), Call(fn))  # type: ignore[arg-type]

    async def call(self, protocol: SansIOProtocol, fn: Callable[[float], tuple[Any, Sequence[Command]]], *,
                   timeout: float) -> Any:
        """Run ``fn(now) -> (value, commands)`` on the driver loop as ``submit`` does (in order with events,
        under ``lock``, the commands carried out as ``protocol``'s) and return ``value``, or raise on this side
        the exception ``fn`` raised (its commands then dropped).

        Taken or withdrawn, decided once: the worker has ``timeout`` seconds to take the call; if it has not,
        the call is withdrawn and ``NotTaken`` raised: it never runs (the worker skips it), so nothing it would
        do happens. Once taken, ``fn`` has ``timeout`` seconds more to end; if it has not, ``StillRunning`` is
        raised: it runs (or ran) and its effects may happen, its value is lost. A full queue raises
        ``NotTaken`` at once. Cancelled (a trio cancel scope around the await): the call is withdrawn if not
        yet taken, and ``Cancelled`` goes on; a call already taken runs to its end regardless.

        Who closes what: nothing is left open by the call itself (a withdrawn call is dropped by the worker, an
        ended one by the caller); ``fn`` runs like a ``handle`` (holding ``lock``, and the one worker for a
        protocol whose handle blocks), so it does the protocol's own work only; state it registers (e.g. a
        listener) is the caller's to remove, with ``submit``. ``NotTaken`` and ``StillRunning`` are in
        ``node.runtime.calls``."""
        i = self.protocols.index(protocol)  # type: ignore[arg-type]
        c = AwaitedCall(fn)
        try:
            self._send.send_nowait((i, c))
        except trio.WouldBlock:
            raise NotTaken(f"the driver's queue is full ({self._recv.statistics().current_buffer_used} "
                           f"events waiting)") from None
        try:
            return await c.result(timeout)
        finally:
            self._calls[c.state] += 1
            self._calls["wait_max_s"] = max(self._calls["wait_max_s"], round(c.waited, 4))

    def _handle_one(self, i: int, event: Event) -> list[tuple[int, list[Command]]]:
        """``handle`` (or a submitted call) of protocol ``i``, under ``lock``: its commands, to be carried out
        on the trio thread (none when it raised: logged, counted, the event dropped)."""
        p = self.protocols[i]
        t0 = time.perf_counter()
        try:
            with self.lock:
                t1 = time.perf_counter()
                try:
                    if isinstance(event, Call):
                        if not event.take():  # withdrawn by its caller (``call``): it never runs
                            return []
                        cmds = event.run(self.clock.now())
                    else:
                        cmds = p.handle(event, self.clock.now())
                finally:
                    self._count(type(p).__name__, t1 - t0, time.perf_counter() - t1)
        except Exception:
            self.errors += 1
            log.exception("%s.handle(%s) raised", type(p).__name__, type(event).__name__)
            return []
        return [(i, list(cmds or ()))]

    def _count(self, name: str, waited: float, held: float) -> None:
        row = self._handled.setdefault(name, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += waited
        row[2] += held

    def stats(self) -> dict:
        """Per protocol since the start: ``handles`` (events and submitted calls), ``wait_s`` (waiting for
        ``lock``: a validate or another handle held it) and ``handle_s`` (holding it); ``queued``: events
        waiting now; ``calls``: awaited calls ended, taken (not ended in time) and withdrawn, and the longest
        wait for the worker to take one (``wait_max_s``)."""
        rows = {k: {"handles": n, "wait_s": round(w, 4), "handle_s": round(h, 4)}
                for k, (n, w, h) in sorted(list(self._handled.items()))}
        return {"protocols": rows, "queued": self._recv.statistics().current_buffer_used, "calls": dict(self._calls)}

    def _carry_out(self, results: list[tuple[int, list[Command]]]) -> None:
        for i, cmds in results:
            for c in cmds:
                try:
                    self.interpreter.execute(i, c)
                except UnknownCommand as exc:
                    self.errors += 1
                    log.error("%s returned a command no interpreter knows: %s", type(self.protocols[i]).__name__,
                              exc)

    def offloaded(self, i: int) -> bool:
        """Does protocol ``i``'s handle run on the worker thread (its class says ``handle_blocks = True``)?"""
        return bool(getattr(self.protocols[i], "handle_blocks", False))

    async def _dispatch(self, target: int | None, event: Event) -> None:
        """Feed one event to its protocol(s), one after the other: a blocking handle on the worker thread (one
        at a time, the trio loop free meanwhile), any other on the trio thread; commands on the trio thread."""
        for i in range(len(self.protocols)) if target is None else (target,):
            if self.offloaded(i):
                results = await trio.to_thread.run_sync(self._handle_one, i, event, limiter=self._worker)
            else:
                results = self._handle_one(i, event)
            self._carry_out(results)

    # --------------------------------------------------------------- commands (the interpreter's transport)
    def publish(self, i: int, c: Publish) -> None:
        self._nursery.start_soon(self._publish, c)

    def set_timer(self, i: int, c: SetTimer) -> None:
        self._timers[(i, c.name)] = c.at
        self._timer_wake.set()

    def send_request(self, i: int, c: SendRequest) -> None:
        self._nursery.start_soon(self._request, i, c)

    def respond(self, i: int, c: Respond) -> None:
        slot = self._pending.get(c.request_id)
        if slot is None or slot[0] != i:
            log.warning("Respond to unknown request %s", c.request_id)
            return
        slot[2].append(c.data)
        slot[1].set()

    def notify(self, i: int, c: Notify) -> None:
        self.notifications.append(c)
        log.info("notify %s %s", c.kind, c.detail)
        if self.on_notify is not None:
            try:
                self.on_notify(c)
            except Exception:
                log.exception("on_notify raised")

    def run_job(self, i: int, job: Callable[[], TaskDone]) -> None:
        self._nursery.start_soon(self._job, i, job)

    async def _publish(self, c: Publish) -> None:
        try:
            await self.node.publish(c.topic, c.data)
        except Exception:
            self.errors += 1
            log.exception("publish on %s failed", c.topic)

    async def _request(self, i: int, c: SendRequest) -> None:
        streams = getattr(self.node, "streams", None)
        if streams is not None and c.protocol in getattr(self.protocols[i], "duplex_streams", ()) and \
                not streams.idle(c.peer, c.protocol):  # no stream idle: a spare one opened alongside this
            self._nursery.start_soon(self._warm, c.peer, c.protocol)  # request's own, for the next
        try:
            data = await self.node.request(c.peer, c.protocol, c.data, timeout=c.timeout)
            ev = ResponseReceived(c.protocol, c.peer, c.request_id, data)
        except StreamFailed as exc:
            log.debug("request %s to %s failed: %s", c.protocol, c.peer, exc.reason)
            ev = ResponseReceived(c.protocol, c.peer, c.request_id, b"", exc.reason or "failed")
        await self._send.send((i, ev))

    async def _job(self, i: int, job: Callable[[], TaskDone]) -> None:
        """A ledger call's job (it never raises: its error is in the ``TaskDone``), on a worker thread of
        its own (not the handle worker: a slow ledger does not hold up events); back to protocol ``i``."""
        ev = await trio.to_thread.run_sync(job, abandon_on_cancel=True)
        await self._send.send((i, ev))

    async def _warm(self, peer: str, protocol: str) -> None:
        streams = getattr(self.node, "streams", None)  # (a node without a stream pool opens none)
        if streams is not None:
            await streams.warm(peer, protocol, timeout=self.respond_timeout)

    def _stream_handler(self, i: int, protocol: str):
        duplex = protocol in getattr(self.protocols[i], "duplex_streams", ())

        async def handle(stream) -> None:
            peer = stream.muxed_conn.peer_id.to_base58()
            first = True
            while True:  # one request at a time, for as long as the peer keeps the stream open
                try:  # (a duplex protocol's peer may open a stream ahead of its first request: ``warm``)
                    data = await read_request(stream, timeout=self.respond_timeout if first and not duplex
                                              else self.idle_timeout)
                except StreamFailed:  # the peer closed it (a one-shot request ends here), or idled too long
                    if first and not duplex:
                        await write_response(stream, b"")
                    else:  # (an empty answer on a warmed stream would answer the request it was kept for)
                        await close_stream(stream)
                    return
                if first and duplex:  # we will ask this peer on this protocol too: have a stream ready
                    self._nursery.start_soon(self._warm, peer, protocol)
                first = False
                rid = next(self._ids)
                done, box = trio.Event(), []
                self._pending[rid] = (i, done, box)
                try:
                    await self._send.send((i, RequestReceived(protocol, peer, rid, data)))
                    with trio.move_on_after(self.respond_timeout):
                        await done.wait()
                finally:
                    self._pending.pop(rid, None)
                if not box or not await write_frame(stream, box[0], timeout=self.respond_timeout):
                    try:
                        await stream.reset()
                    except Exception:
                        pass
                    return

        return handle

    # ------------------------------------------------------------------ timers
    async def _timer_loop(self) -> None:
        while True:
            now = self.clock.now()
            due = [k for k, at in self._timers.items() if at <= now]
            for k in sorted(due, key=lambda k: self._timers[k]):
                del self._timers[k]
                await self._send.send((k[0], TimerFired(k[1])))
            self._timer_wake = trio.Event()
            wait = min(self._timers.values(), default=now + 3600) - self.clock.now()
            with trio.move_on_after(max(0.0, min(wait, 3600))):
                await self._timer_wake.wait()

    # -------------------------------------------------------------------- run
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Wire protocols to the node, then feed events until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._by_topic and self.node.pubsub is None:
                raise RuntimeError("protocols use gossip topics but the node runs without gossipsub")
            for topic in self._by_topic:
                self.node.pubsub.set_tri_validator(topic, self._validator(topic))
                await self.node.pubsub.subscribe(topic)
            for i, p in enumerate(self.protocols):
                for sp in p.stream_protocols:
                    self.node.host.set_stream_handler(sp, self._stream_handler(i, sp))
            self.node.on_peer(self._on_peer)
            if self.node.pubsub is not None:
                nursery.start_soon(self._pump_gossip)
            nursery.start_soon(self._timer_loop)
            await self._dispatch(None, Started(self.node.peer_id))
            for p in self.node.connected_peers():
                await self._dispatch(None, PeerConnected(p))
            task_status.started(self)
            async for target, event in self._recv:
                await self._dispatch(target, event)


async def run_host(config, protocols: Sequence[SansIOProtocol] = (), *, clock: Clock | None = None,
                   on_notify: Callable[[Notify], None] | None = None,
                   task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a node and drive ``protocols`` on it until cancelled or ``node.stop()``.

    ``config`` is a ``NodeConfig`` or a ``node.config.Config``.
    ``task_status.started(node)`` hands back the running ``Node``, whose
    ``driver`` attribute is the ``ProtocolDriver``. Cancellation (or
    ``node.stop()``) stops the driver first, then the node closes every
    connection and service it opened.
    """
    from node.runtime.node import Node, NodeConfig

    if not isinstance(config, NodeConfig):
        config = NodeConfig.from_config(config)
    node = Node(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            node.driver = await nursery.start(
                ProtocolDriver(node, protocols, clock=clock, on_notify=on_notify).run)
            task_status.started(node)
            await node.stopped.wait()
        finally:
            nursery.cancel_scope.cancel()
