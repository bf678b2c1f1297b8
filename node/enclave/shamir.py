"""Shamir secret sharing of a secp256k1 private key, over the curve's group order (trusted code).

A 32-byte private key ``s`` (``0 < s < N``) is the constant term of a random
polynomial of degree ``k - 1`` over GF(N); share ``i`` (``1 <= i <= n``) is the
polynomial at ``i``. Any ``k`` shares give ``s`` back by Lagrange
interpolation at 0; ``k - 1`` shares say nothing about it (every secret is
equally consistent with them). ``combine`` cannot tell a wrong result by
itself: callers check the recovered key against the expected public key.

Pure Python integers; randomness from ``secrets`` unless a ``randbelow`` is
passed in (deterministic tests and simulations only).
"""

from __future__ import annotations

import secrets
from typing import Callable, Sequence

#: secp256k1 group order
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_SHARES = 255


class ShareError(ValueError):
    pass


def split(secret: bytes, k: int, n: int, *, randbelow: Callable[[int], int] = secrets.randbelow
          ) -> list[tuple[int, bytes]]:
    """``n`` shares ``(index, 32-byte value)`` of ``secret``, any ``k`` of which recover it."""
    s = int.from_bytes(secret, "big")
    if len(secret) != 32 or not 0 < s < N:
        raise ShareError("the secret must be a valid 32-byte secp256k1 private key")
    if not 2 <= k <= n <= MAX_SHARES:
        raise ShareError(f"need 2 <= k <= n <= {MAX_SHARES}, got k={k}, n={n}")
    coeffs = [s] + [randbelow(N) for _ in range(k - 1)]
    shares = []
    for x in range(1, n + 1):
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % N
        shares.append((x, y.to_bytes(32, "big")))
    return shares


def combine(shares: Sequence[tuple[int, bytes]], k: int) -> bytes:
    """The secret from ``k`` or more distinct shares (the first ``k`` distinct indices are used)."""
    pts: dict[int, int] = {}
    for x, y in shares:
        if not 1 <= x <= MAX_SHARES or len(y) != 32:
            raise ShareError(f"malformed share index {x}")
        pts.setdefault(x, int.from_bytes(y, "big") % N)
    if len(pts) < k:
        raise ShareError(f"not enough shares: {len(pts)} distinct of the {k} needed")
    xs = sorted(pts)[:k]
    s = 0
    for i in xs:
        num, den = 1, 1
        for j in xs:
            if j != i:
                num = num * (-j) % N
                den = den * (i - j) % N
        s = (s + pts[i] * num * pow(den, -1, N)) % N
    if s == 0:
        raise ShareError("the shares combine to zero: not shares of one key")
    return s.to_bytes(32, "big")
