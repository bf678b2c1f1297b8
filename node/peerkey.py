"""Signatures by a node's libp2p identity (Ed25519), checkable from the peer id alone.

An Ed25519 peer id (``12D3KooW...``) is an identity multihash of the
protobuf-encoded public key, so the key can be read back out of the id: a
message signed by a peer's identity key is verified with nothing but its
peer id. Pure (``cryptography`` and ``base58``), no libp2p import, so sans-IO
protocols can use it; a test checks it agrees with py-libp2p's own ids.
"""

from __future__ import annotations

import functools

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_PROTO_PREFIX = b"\x08\x01\x12\x20"  # PublicKey{Type: Ed25519 (1), Data: 32 bytes}
_MH_PREFIX = b"\x00\x24"  # identity multihash, 36 bytes


class PeerKeyError(ValueError):
    pass


def peer_id_of(pub: bytes) -> str:
    if len(pub) != 32:
        raise PeerKeyError("an Ed25519 public key is 32 bytes")
    return base58.b58encode(_MH_PREFIX + _PROTO_PREFIX + pub).decode()


def pubkey_of_peer(peer_id: str) -> bytes:
    """The Ed25519 public key inside ``peer_id``; PeerKeyError if it holds none."""
    if not isinstance(peer_id, str):
        raise PeerKeyError("a peer id is a string")
    return _pubkey_of_peer(peer_id)


@functools.lru_cache(maxsize=8192)  # pure; a node checks the same few peers' signatures over and over
def _pubkey_of_peer(peer_id: str) -> bytes:
    try:
        raw = base58.b58decode(peer_id)
    except Exception:
        raise PeerKeyError("peer id is not base58") from None
    if len(raw) != 38 or not raw.startswith(_MH_PREFIX + _PROTO_PREFIX):
        raise PeerKeyError("peer id does not embed an Ed25519 key")
    return raw[6:]


def verify(peer_id: str, message: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is ``peer_id``'s Ed25519 signature of ``message``. Never raises.

    The answer for the same (peer id, message, signature) is remembered (a bounded cache): a node checks a
    request when it is gossiped and again when it handles it, and a simulation's nodes check the same bytes."""
    try:
        return _verify_cached(peer_id, message, sig)
    except TypeError:  # unhashable arguments (a bytearray): checked without the cache
        return _verify(peer_id, message, sig)


@functools.lru_cache(maxsize=4096)
def _verify_cached(peer_id: str, message: bytes, sig: bytes) -> bool:
    return _verify(peer_id, message, sig)


def _verify(peer_id: str, message: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pubkey_of_peer(peer_id)).verify(sig, message)
        return True
    except (PeerKeyError, InvalidSignature, ValueError):
        return False


class PeerSigner:
    """Signs as a peer id from its 32-byte identity seed (``node.identity``)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        pub = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.peer_id = peer_id_of(pub)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:  # never the key
        return f"PeerSigner({self.peer_id})"
