"""One-shot request/response over a libp2p stream: varint-length-prefixed frames.

``ask`` opens a stream, writes one frame, reads one frame, closes. ``serve_one``
reads one frame, computes the answer, writes it, closes. Both bound size and
time, and turn every failure into ``StreamFailed(reason)``.
"""

from __future__ import annotations

import trio
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

MAX_FRAME = 1 << 20


class StreamFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _close(stream) -> None:
    with trio.move_on_after(2):
        try:
            await stream.close()
        except Exception:
            pass


async def ask(host, peer: str, protocol: str, data: bytes, *, timeout: float = 10.0,
              max_size: int = MAX_FRAME) -> bytes:
    """Send ``data`` to ``peer`` on ``protocol``; return the one-frame answer."""
    stream = None
    try:
        with trio.fail_after(timeout):
            stream = await host.new_stream(ID.from_base58(peer), [protocol])
            await stream.write(encode_varint_prefixed(data))
            return await read_varint_prefixed_bytes_limited(stream, max_size)
    except trio.TooSlowError:
        raise StreamFailed(f"timeout after {timeout:g}s") from None
    except StreamFailed:
        raise
    except Exception as exc:
        raise StreamFailed(f"{type(exc).__name__}: {exc}"[:200]) from None
    finally:
        if stream is not None:
            await _close(stream)


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
        await _close(stream)
