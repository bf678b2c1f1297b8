"""The range of every value the local API takes: one table, used by the checks (``node.api.app``) and stated
in the OpenAPI description (``node.api.openapi``), so the two cannot disagree.

A value out of its range gets a 400 whose one-line reason names the field and the range; floats must be
finite; bodies stop being read at ``MAX_BODY`` bytes (413).
"""

from __future__ import annotations

import math

from node.api.services import ApiError
from node.contracts.spec import MAX_ESCROW_HOLDERS
from node.protocols.request_run import MAX_EXPIRY_BLOCKS, MAX_PREMIUM_CHUNKS
from node.protocols.rfp import MAX_REQUEST_CENTS

MAX_BODY = 64 * 1024  # bytes of a request body; read in pieces, refused (413) as soon as it is passed
MAX_PEER_ID = 128  # characters of a peer id
MAX_ADDRESS = 128  # characters of a sweep destination (bech32 is at most 90, an Ethereum address 42)
MAX_MULTIADDR = 512  # characters of a peer's multiaddr (POST /v1/peers, keyswitch connect)

#: integer fields, by the name their reason uses: (minimum, maximum)
INT_RANGES: dict[str, tuple[int, int]] = {
    "limit": (1, 10_000),  # GET /v1/offers
    "deposits.chunks": (1, 1000),  # POST /v1/deposits
    "contracts.chunks": (1, 100),  # POST /v1/contracts
    "refund_blocks": (1, 100_000),
    "premium_chunks": (0, 100),
    "premium_blocks": (1, 100_000),
    "expiry_blocks": (1, 100_000),
    "key_escrow.k": (2, MAX_ESCROW_HOLDERS),
    "request.premium_chunks": (1, MAX_PREMIUM_CHUNKS),  # POST /v1/requests, contract option
    "request.expiry_blocks": (1, MAX_EXPIRY_BLOCKS),
}
#: float fields: (minimum, maximum), both inclusive; NaN and the infinities are refused
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "usd": (0.01, MAX_REQUEST_CENTS / 100),  # POST /v1/requests
}


#: string fields: (minimum, maximum) characters
STR_RANGES: dict[str, tuple[int, int]] = {
    "arbiter": (0, MAX_PEER_ID),  # POST /v1/contracts (escrow); empty for other kinds
    "contract": (0, 128),  # POST /v1/requests: the contract kind asked for
    "target": (1, 80),  # POST /v1/revocations: a class (vendor:status) or a device id
    "reason": (1, 500),
}


def check_str(name: str, v: str) -> str:
    lo, hi = STR_RANGES[name]
    if not lo <= len(v) <= hi:
        raise ApiError(400, f"{name} must be {lo}..{hi} characters, got {len(v)}")
    return v


def _num(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**15:
        return f"an integer of {v.bit_length()} bits"
    return repr(v)


def range_text(name: str) -> str:
    """``"chunks must be an integer in 1..1000"``: the range of a field, as every reason states it."""
    field = name.split(".")[-1] if name.startswith(("deposits.", "contracts.", "request.")) else name
    if name in INT_RANGES:
        lo, hi = INT_RANGES[name]
        return f"{field} must be an integer in {lo}..{hi}"
    lo, hi = FLOAT_RANGES[name]
    return f"{field} must be a finite number in {lo:g}..{hi:g}"


def check_int(name: str, v) -> int:
    lo, hi = INT_RANGES[name]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ApiError(400, f"{range_text(name)}, got {_num(v)}")
    return v


def check_float(name: str, v) -> float:
    lo, hi = FLOAT_RANGES[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ApiError(400, f"{range_text(name)}, got {_num(v)}")
    return float(v)


def int_schema(name: str) -> dict:
    lo, hi = INT_RANGES[name]
    return {"type": "integer", "minimum": lo, "maximum": hi}


def float_schema(name: str) -> dict:
    lo, hi = FLOAT_RANGES[name]
    return {"type": "number", "minimum": lo, "maximum": hi}
