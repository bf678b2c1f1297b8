"""The signed envelope of ``/keyswitch/contract/1`` and of the requests topic, sans-IO and pure.

Requests (gossiped), proposals and contract offers (over the stream protocol ``CONTRACT_PROTOCOL``) travel as a
``SignedMsg``: its ``kind`` ("request", "proposal", "contract"), the wire-encoded body, and the sender's
signature with its libp2p identity key (Ed25519; the key is read out of the peer id: ``node.peerkey``) over
``signing_bytes(kind, body)``. Every one of them carries ``issued_at`` and ``expiry``, checked by ``lifetime``.
Used by ``node.protocols.rfp`` (requests, proposals) and ``node.contracts.protocol.agreement`` (contract offers).
"""

from __future__ import annotations

from typing import Callable

import msgspec

from node import wire
from node.protocols.base import Validation

RFP_VERSION = 1  # proposals and contract offers
CONTRACT_PROTOCOL = "/keyswitch/contract/1"
MAX_PROPOSAL_SIZE = 128 * 1024  # a message on CONTRACT_PROTOCOL: a proposal or a contract offer
MAX_LIFETIME = 600.0  # a request, proposal or contract offer may not live longer than this
MAX_CLOCK_SKEW = 120.0


class SignedMsg(msgspec.Struct, array_like=True, frozen=True):
    kind: str  # "request" | "proposal" | "contract"
    body: bytes
    sig: bytes  # Ed25519 by the body's client / proposer over signing_bytes(kind, body)


def signing_bytes(kind: str, body: bytes) -> bytes:
    return b"keyswitch/rfp/1\x00" + kind.encode() + b"\x00" + body


def sign_msg(kind: str, body_struct, sign: Callable[[bytes], bytes]) -> bytes:
    body = wire.encode(body_struct)
    return wire.encode(SignedMsg(kind, body, sign(signing_bytes(kind, body))))


def lifetime(issued_at: float, expiry: float, now: float) -> Validation | None:
    """Why a message's lifetime is refused (None: it is within its bounds)."""
    # [REJECT] expiry after issue, and not too far out.
    if not expiry > issued_at or expiry - issued_at > MAX_LIFETIME:
        return Validation.reject(f"lifetime must be in (0, {MAX_LIFETIME:g}] s, got {expiry - issued_at:g}")
    # [IGNORE] not from the future, not expired.
    if issued_at > now + MAX_CLOCK_SKEW:
        return Validation.ignore(f"issued {issued_at - now:.0f} s in the future")
    if expiry <= now:
        return Validation.ignore("expired")
    return None
