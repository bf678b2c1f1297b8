"""Yamux receive windows as go-yamux keeps them: one WINDOW_UPDATE per half window read, not one per read, and a
peer that sends beyond its window cut off.

py-libp2p 0.8.1's ``YamuxStream`` credits the sender after *every* read that leaves its receive window below
target (``_auto_tune_and_send_window_update``: its "partial slack" and "release on read" branches), and a
varint-prefixed frame is read one prefix byte at a time (``read_varint_prefixed_bytes_limited``), so each
request, answer or gossip RPC of a few hundred bytes cost its peer two to four extra Yamux frames: each a Noise
message encrypted, sent, received, decrypted and handled on both event loops. In ``benchmarks.request`` that was
about a tenth of every daemon's CPU.

``install()`` replaces that method with go-yamux's rule (``sendWindowUpdate``: ``delta = (max - buffered) -
recvWindow``; nothing is sent while ``delta`` is below half the window), keeping py-libp2p's window auto-tuning
when an update is sent (its ``PY_YAMUX_*`` tuning variables no longer apply to the credit). Flow control is unchanged for the peer: it may send up to the window we granted, and is
credited once half of it has been read, long before it could run out (the window is 256 kB, our frames at most
1 MB, which then cost several updates as before). Installed once per process, for every Yamux stream, by
``node.runtime.node``.

**The window is enforced** (a security fix, not a cost: ``docs/security.md``). py-libp2p 0.8.1 buffers whatever a
peer sends beyond the receive window it was granted and only logs it, so a hostile peer could make a node hold
unbounded memory on any stream no one reads (an idle pooled stream, a stream whose handler is busy).
``install()`` also makes a peer exceeding the window a protocol error, as go-yamux does (``ErrRecvWindowExceeded``
/ "receive window exceeded" in its ``readData``, then a GO_AWAY with a protocol error and the session closed):
the frame's bytes are dropped from the stream's buffer at once, the stream is marked reset, one line is logged
at warning with the peer id, and the whole connection is closed (GO_AWAY, protocol error). The connection and not
only the stream: a peer that breaks flow control is broken or hostile and everything else it sends is suspect,
a stream reset would let it start again at once on a new stream of the same connection (at no cost, where a
new connection costs it a TCP and Noise handshake), and it is the behaviour go-libp2p peers already know.

The check sits where py-libp2p counts received bytes against the window: ``YamuxStream.recv_window`` becomes a
property, and a value below zero (more received than granted) is the overrun. An honest peer never goes below
zero: every credit is added to ``recv_window`` before its WINDOW_UPDATE is sent (ours and py-libp2p's rule alike).
py-libp2p counts a DATA frame only after it has read its body (up to its own 16 MB frame cap, waiting for it up to
its 60 s data-read timeout), so a peer announcing one large frame and sending it slowly held up to 16 MB per
connection for a minute. As go-yamux, the length is checked from the header too (``_read_data_body``): a frame
longer than every receive window of the connection (at least py-libp2p's initial 256 kB, the window of a stream
the frame may open) is the same protocol error, before a byte of its body is read.
"""

from __future__ import annotations

import logging
import struct

import trio
from libp2p.stream_muxer.yamux import yamux as _yamux

log = logging.getLogger("keyswitch.runtime.yamux")

_ORIGINAL = _yamux.YamuxStream._auto_tune_and_send_window_update
_ORIGINAL_READ = _yamux.YamuxStream.read
_ORIGINAL_HANDLE_INCOMING = _yamux.Yamux.handle_incoming
_ORIGINAL_READ_DATA_BODY = _yamux.Yamux._read_data_body
GO_AWAY_TIMEOUT = 2.0  # seconds to hand the GO_AWAY to a peer that may not read; the connection closes anyway


async def _credit_by_half_window(self: _yamux.YamuxStream, *, bytes_read: int = 0) -> None:
    """Send a WINDOW_UPDATE only once the credit owed (bytes read since the last update) reaches half the
    target window; then grant all of it (and py-libp2p's auto-tuned growth). Called after every read: the
    common case (little owed) returns at once, without the window lock (reading two counters changes nothing,
    and no other task runs between them)."""
    owed = self.target_recv_window - (self.recv_window + len(self.conn.stream_buffers.get(self.stream_id, b"")))
    if owed < self.target_recv_window // 2 or owed <= 0:
        return
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self.target_recv_window // 2:
            self.recv_window += delta
            self._pending_recv_release = 0
            total = delta + self._apply_autotune_epoch(buffered)
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


async def _read_buffered_first(self: _yamux.YamuxStream, n: int | None = -1) -> bytes:
    """``YamuxStream.read(n)``, taking bytes already buffered for an open stream at once: what
    ``Yamux.read_stream`` does in that case, without its lock (not held by anyone: checked) and its debug lines
    (formatted whether logged or not). Every other case (nothing buffered, closed, reset, ``n`` of -1: read to
    the end) is py-libp2p's own path. A varint prefix is read a byte at a time, so this is most reads."""
    if n is not None and n > 0 and not (self.recv_closed or self.closed or self.reset_received):
        conn = self.conn
        buffer = conn.stream_buffers.get(self.stream_id)
        if buffer and not conn.streams_lock.locked() and not conn.event_shutting_down.is_set() \
                and self.stream_id in conn.streams:
            data = bytes(buffer[:n])
            del buffer[:n]
            await self._auto_tune_and_send_window_update(bytes_read=len(data))
            return data
    return await _ORIGINAL_READ(self, n)


def _get_recv_window(self: _yamux.YamuxStream) -> int:
    return self.__dict__["recv_window"]


def _set_recv_window(self: _yamux.YamuxStream, value: int) -> None:
    """``recv_window``: what the peer may still send on this stream. Below zero, it sent beyond the window: the
    overrun (see the module's docstring). Called by py-libp2p's ``handle_incoming`` under the streams lock,
    right after it added the frame to the stream's buffer."""
    if value >= 0:
        self.__dict__["recv_window"] = value
        return
    self.__dict__["recv_window"] = 0  # (py-libp2p's own check then finds nothing to log)
    conn = self.conn
    buffered = conn.stream_buffers.get(self.stream_id)
    if buffered is not None:
        buffered.clear()
    self.closed = self.send_closed = self.recv_closed = True
    self.reset_received = True
    if not conn.__dict__.get("_ks_window_overrun"):
        conn._ks_window_overrun = True
        log.warning("Yamux peer %s sent %d bytes beyond the receive window of stream %d: protocol error, closing "
                    "the connection", conn.peer_id, -value, self.stream_id)
    conn.event_shutting_down.set()  # handle_incoming stops after this frame; _handle_incoming closes the rest


async def _read_data_body_within_window(self: _yamux.Yamux, length: int) -> bytes:
    """py-libp2p's read of a DATA frame's body, once its announced ``length`` fits a receive window we granted:
    the frame's own stream's, which py-libp2p has not looked up yet, is at most the largest of the connection's
    (or the initial window, for a frame opening a stream). Beyond it: the overrun, found from the header; the
    body is left unread, handle_incoming stops after this frame (an empty body: nothing buffered, nothing
    counted) and ``_handle_incoming`` sends the GO_AWAY and closes the connection."""
    granted = max([_yamux.DEFAULT_WINDOW_SIZE, *(s.__dict__.get("recv_window", 0) for s in self.streams.values())])
    if length <= granted:
        return await _ORIGINAL_READ_DATA_BODY(self, length)
    if not self.__dict__.get("_ks_window_overrun"):
        self._ks_window_overrun = True
        log.warning("Yamux peer %s announced a %d-byte frame, beyond every receive window it was granted (%d "
                    "bytes): protocol error, closing the connection", self.peer_id, length, granted)
    self.event_shutting_down.set()
    return b""


async def _handle_incoming(self: _yamux.Yamux) -> None:
    """py-libp2p's frame loop; when it stopped on a window overrun, send a GO_AWAY (protocol error, bounded in
    time) and tear the connection down as py-libp2p does on its own protocol errors (``_cleanup_on_error``:
    every stream ended, the secure connection closed, the swarm told)."""
    await _ORIGINAL_HANDLE_INCOMING(self)
    if not self.__dict__.get("_ks_window_overrun") or self.event_closed.is_set():
        return
    go_away = struct.pack(_yamux.YAMUX_HEADER_FORMAT, 0, _yamux.TYPE_GO_AWAY, 0, 0, _yamux.GO_AWAY_PROTOCOL_ERROR)
    with trio.move_on_after(GO_AWAY_TIMEOUT):
        try:
            await self._write_frame(go_away)
        except Exception:  # the connection may be gone already: it is being closed in any case
            pass
    await self._cleanup_on_error()


def install() -> None:
    """Use ``_credit_by_half_window`` and ``_read_buffered_first`` for every Yamux stream of this process, and
    enforce the receive window (idempotent)."""
    _yamux.YamuxStream._auto_tune_and_send_window_update = _credit_by_half_window  # type: ignore[method-assign]
    _yamux.YamuxStream.read = _read_buffered_first  # type: ignore[method-assign]
    _yamux.YamuxStream.recv_window = property(_get_recv_window, _set_recv_window)  # type: ignore[assignment]
    _yamux.Yamux.handle_incoming = _handle_incoming  # type: ignore[method-assign]
    _yamux.Yamux._read_data_body = _read_data_body_within_window  # type: ignore[method-assign]


def uninstall() -> None:
    """py-libp2p's own credit and read rules again (for a test or benchmark comparing the two). The receive
    window stays enforced: that is a protection, not a cost."""
    _yamux.YamuxStream._auto_tune_and_send_window_update = _ORIGINAL  # type: ignore[method-assign]
    _yamux.YamuxStream.read = _ORIGINAL_READ  # type: ignore[method-assign]


def uninstall_cap() -> None:
    """py-libp2p 0.8.1's own handling of data beyond the window again (buffered, logged): only for the test
    that measures the gap. Streams keep their ``recv_window`` (stored in their ``__dict__`` either way)."""
    if isinstance(_yamux.YamuxStream.__dict__.get("recv_window"), property):
        del _yamux.YamuxStream.recv_window
    _yamux.Yamux.handle_incoming = _ORIGINAL_HANDLE_INCOMING  # type: ignore[method-assign]
    _yamux.Yamux._read_data_body = _ORIGINAL_READ_DATA_BODY  # type: ignore[method-assign]
