"""Request/response over libp2p streams: varint-length-prefixed frames.

``ask`` opens a stream, writes one frame, reads one frame, closes (one-shot).
``StreamPool.ask`` does the same over a stream it keeps open afterwards and
reuses for the next request to that peer and protocol: opening a stream costs
a multistream-select negotiation (a round trip of its own), so a reused stream
answers in about half the time (``StreamPool.warm`` opens one ahead of the first request). A server that
answers one request per stream
(``read_request`` / ``write_response``) closes it, so a reused stream that
fails before its answer arrives is retried once on a fresh stream, within the
same deadline; a server that keeps streams open reads the next frame with
``read_request`` and answers with ``write_frame``. All of them bound size and
time, and turn every failure into ``StreamFailed(reason)``.
"""

from __future__ import annotations

import collections
import contextlib

import trio
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

MAX_FRAME = 1 << 20


class StreamFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def close_stream(stream) -> None:
    with trio.move_on_after(2):
        try:
            await stream.close()
        except Exception:
            pass


@contextlib.contextmanager
def _bounded(timeout: float):
    """Bound the block by ``timeout`` and turn every failure in it into ``StreamFailed``."""
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        raise StreamFailed(f"timeout after {timeout:g}s") from None
    except StreamFailed:
        raise
    except Exception as exc:
        raise StreamFailed(f"{type(exc).__name__}: {exc}"[:200]) from None


async def ask(host, peer: str, protocol: str, data: bytes, *, timeout: float = 10.0,
              max_size: int = MAX_FRAME) -> bytes:
    """Send ``data`` to ``peer`` on ``protocol``; return the one-frame answer."""
    stream = None
    try:
        with _bounded(timeout):
            stream = await host.new_stream(ID.from_base58(peer), [protocol])
            await stream.write(encode_varint_prefixed(data))
            return await read_varint_prefixed_bytes_limited(stream, max_size)
    finally:
        if stream is not None:
            await close_stream(stream)


async def read_request(stream, *, timeout: float = 10.0, max_size: int = MAX_FRAME) -> bytes:
    try:
        with trio.fail_after(timeout):
            return await read_varint_prefixed_bytes_limited(stream, max_size)
    except trio.TooSlowError:
        raise StreamFailed("request read timeout") from None
    except Exception as exc:
        raise StreamFailed(f"{type(exc).__name__}: {exc}"[:200]) from None


async def write_response(stream, data: bytes, *, timeout: float = 10.0) -> None:
    try:
        with trio.fail_after(timeout):
            await stream.write(encode_varint_prefixed(data))
    except Exception:
        pass
    finally:
        await close_stream(stream)


async def write_frame(stream, data: bytes, *, timeout: float = 10.0) -> bool:
    """Write one frame and keep the stream open (the peer may send another request); False on failure."""
    try:
        with trio.fail_after(timeout):
            await stream.write(encode_varint_prefixed(data))
        return True
    except Exception:
        return False


async def _reset(stream) -> None:
    try:
        await stream.reset()
    except Exception:
        pass


class StreamPool:
    """Open streams kept per (peer, protocol) for request/response, each carrying one request at a time.

    A stream idle for ``idle_timeout`` seconds is closed instead of reused (servers keep idle streams
    longer than that), and at most ``max_idle`` are kept per peer and protocol; concurrent requests
    open more streams. A stream that failed or timed out is reset, never reused."""

    def __init__(self, host, *, max_idle: int = 4, idle_timeout: float = 30.0) -> None:
        self.host = host
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, str], list[tuple[object, float]]] = collections.defaultdict(list)
        self._warming: set[tuple[str, str]] = set()
        self.stats = {"opened": 0, "reused": 0, "stale": 0, "warmed": 0}

    def idle(self, peer: str, protocol: str) -> int:
        """How many open streams to ``peer`` on ``protocol`` wait for a request."""
        return len(self._idle.get((peer, protocol), ()))

    async def warm(self, peer: str, protocol: str, *, timeout: float = 10.0) -> None:
        """Open a stream to ``peer`` on ``protocol`` before its first request and keep it idle, so that
        request does not wait for the stream's negotiation (a round trip of its own); nothing when one is
        idle already or being opened. A failure only means the first request opens its own."""
        key = (peer, protocol)
        if self._idle[key] or key in self._warming:
            return
        self._warming.add(key)
        try:
            with _bounded(timeout):
                stream = await self.host.new_stream(ID.from_base58(peer), [protocol])
            self.stats["warmed"] += 1
            self._keep(key, stream)
        except StreamFailed:
            pass
        finally:
            self._warming.discard(key)

    async def ask(self, peer: str, protocol: str, data: bytes, *, timeout: float = 10.0,
                  max_size: int = MAX_FRAME) -> bytes:
        key = (peer, protocol)
        with _bounded(timeout):  # one deadline for a stale stream and the fresh one after it
            idle = self._idle[key]
            while idle:
                stream, last = idle.pop()
                if trio.current_time() - last > self.idle_timeout:
                    self._close_soon(stream)
                    continue
                try:
                    out = await self._roundtrip(stream, data, max_size)
                    self.stats["reused"] += 1
                except StreamFailed:  # closed by the server (or the connection): a fresh stream
                    self.stats["stale"] += 1
                    await _reset(stream)
                    continue
                self._keep(key, stream)
                return out
            stream = await self.host.new_stream(ID.from_base58(peer), [protocol])
            self.stats["opened"] += 1
            try:
                out = await self._roundtrip(stream, data, max_size)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await _reset(stream)
                raise
            self._keep(key, stream)
            return out

    async def _roundtrip(self, stream, data: bytes, max_size: int) -> bytes:
        try:
            await stream.write(encode_varint_prefixed(data))
            return await read_varint_prefixed_bytes_limited(stream, max_size)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await _reset(stream)  # an answer may still come: never reuse it
            raise
        except Exception as exc:
            raise StreamFailed(f"{type(exc).__name__}: {exc}"[:200]) from None

    def _keep(self, key: tuple[str, str], stream) -> None:
        idle = self._idle[key]
        if len(idle) < self.max_idle:
            idle.append((stream, trio.current_time()))
        else:
            self._close_soon(stream)

    def _close_soon(self, stream) -> None:
        trio.lowlevel.spawn_system_task(close_stream, stream)
