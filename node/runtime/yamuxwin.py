"""Yamux receive-window credit as go-yamux sends it: one WINDOW_UPDATE per half window read, not one per read.

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
"""

from __future__ import annotations

from libp2p.stream_muxer.yamux import yamux as _yamux

_ORIGINAL = _yamux.YamuxStream._auto_tune_and_send_window_update
_ORIGINAL_READ = _yamux.YamuxStream.read


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


def install() -> None:
    """Use ``_credit_by_half_window`` and ``_read_buffered_first`` for every Yamux stream of this process
    (idempotent)."""
    _yamux.YamuxStream._auto_tune_and_send_window_update = _credit_by_half_window  # type: ignore[method-assign]
    _yamux.YamuxStream.read = _read_buffered_first  # type: ignore[method-assign]


def uninstall() -> None:
    """py-libp2p's own rules again (for a test comparing the two)."""
    _yamux.YamuxStream._auto_tune_and_send_window_update = _ORIGINAL  # type: ignore[method-assign]
    _yamux.YamuxStream.read = _ORIGINAL_READ  # type: ignore[method-assign]
