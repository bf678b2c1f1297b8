"""Deterministic, versioned, size-bounded wire encoding.

Every wire message is a ``msgspec.Struct`` encoded as MessagePack with
``array_like=True`` structs, so a value has exactly one encoding. ``decode``
re-encodes what it decoded and refuses input whose bytes differ (a
non-canonical encoding), so *the bytes that are signed are the bytes that are
sent* and a signature can always be checked over the received bytes.

Signed messages travel in a :class:`Signed` envelope whose signature covers a
tagged hash of ``(version, network, kind, body)``; the body is itself the
canonical encoding of the message struct.

Malformed input raises :class:`WireError` with a one-line reason; nothing
else escapes ``decode``.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

WIRE_VERSION = 1
#: Default ceiling for any message; each message type may set a smaller one.
MAX_MESSAGE_SIZE = 1 << 20

# ---- ranges: every integer on the wire is bounded, every float finite. A value outside its type's range
# fails ``decode`` (a ``WireError`` naming the field and the bound), so it is never forwarded nor stored.
#: the largest integer a wire field may carry: what SQLite INTEGER and a signed 64-bit column hold
MAX_INT = (1 << 63) - 1
#: the latest time a wire timestamp may name: 2^34 s after the epoch (year 2514)
MAX_TIME = float(1 << 34)
#: 0 <= n <= 2^63 - 1 (sequence numbers, counts)
U63 = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
#: 1 <= n <= 2^63 - 1 (amounts in smallest units, USD cents)
Positive63 = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
#: 0 <= n <= 65535 (versions)
U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
#: unix seconds, 0 <= t <= 2^34 (finite: NaN and infinities fail the bound)
Timestamp = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIME)]

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()


class WireError(ValueError):
    """Malformed input. ``reason`` is a short, stable, human-readable string."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def decode(data: bytes, typ: type[T], *, max_size: int = MAX_MESSAGE_SIZE, canonical: bool = True) -> T:
    """Decode ``data`` as ``typ``; raise WireError with a reason on any problem. ``canonical=False`` is for
    the node's own records on its disk only (never for what a peer sent): a record an older version wrote,
    before a trailing field with a default was added, re-encodes with that field and is still read."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise WireError(f"over size: {len(data)} bytes > limit {max_size}")
    if not data:
        raise WireError("empty message")
    try:
        obj = msgspec.msgpack.decode(data, type=typ)
    except msgspec.ValidationError as exc:
        raise WireError(f"malformed {getattr(typ, '__name__', typ)}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"undecodable {getattr(typ, '__name__', typ)}: {exc}") from None
    except Exception as exc:  # defensive: msgspec should raise only the above
        raise WireError(f"undecodable: {type(exc).__name__}") from None
    if canonical and _encoder.encode(obj) != data:
        raise WireError("non-canonical encoding")
    return obj


class Signed(msgspec.Struct, array_like=True, frozen=True):
    """A signed envelope. ``sig`` covers ``signing_digest(version, net, kind, body)``."""

    version: int
    net: str
    kind: str
    body: bytes
    signer: bytes  # 33-byte compressed secp256k1 public key
    sig: bytes  # 64-byte compact ECDSA signature

    def digest(self) -> bytes:
        return signing_digest(self.version, self.net, self.kind, self.body)


def signing_digest(version: int, net: str, kind: str, body: bytes) -> bytes:
    from node.crypto import tagged_hash

    return tagged_hash(
        "keyswitch/signed",
        version.to_bytes(2, "big"),
        net.encode(),
        kind.encode(),
        body,
    )
