"""Small cryptographic helpers shared by every layer (pure, no I/O).

* ``tagged_hash``: SHA-256 with a domain tag (as BIP-340), so a digest made for
  one purpose can never be replayed as another.
* secp256k1 ECDSA with 64-byte compact, low-S signatures over 32-byte digests.
* ECIES to a secp256k1 public key: ephemeral ECDH, HKDF-SHA256, AES-256-GCM,
  with associated data binding the ciphertext to its context.
"""

from __future__ import annotations

import hashlib
import os

import coincurve
from coincurve.ecdsa import cdata_to_der, der_to_cdata, deserialize_compact, serialize_compact
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """SHA256(SHA256(tag) || SHA256(tag) || len-prefixed parts)."""
    t = hashlib.sha256(tag.encode()).digest()
    h = hashlib.sha256(t + t)
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.digest()


def sign_digest(key: coincurve.PrivateKey, digest: bytes) -> bytes:
    """64-byte compact low-S ECDSA signature over a 32-byte digest."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    der = key.sign(digest, hasher=None)
    return serialize_compact(der_to_cdata(der))


def verify_digest(pubkey: bytes, digest: bytes, sig: bytes) -> bool:
    """True iff ``sig`` (64-byte compact) is valid for ``digest`` under ``pubkey``.

    Never raises on malformed keys or signatures: returns False.
    """
    if len(digest) != 32 or len(sig) != 64:
        return False
    try:
        pub = coincurve.PublicKey(pubkey)
        der = cdata_to_der(deserialize_compact(sig))
        return pub.verify(der, digest, hasher=None)
    except Exception:
        return False


def verify_domain_sig(sign_pub: bytes, domain: str, digest32: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is ``Enclave.sign(domain, digest32)`` by the enclave key ``sign_pub``.

    Lives here (pure, in the enclave's trusted code set) because the enclave checks its peers' signatures with
    it; ``node.tee.client`` re-exports it for host callers."""
    return verify_digest(sign_pub, tagged_hash("keyswitch/" + domain, digest32), sig)


def pubkey_of(key: coincurve.PrivateKey) -> bytes:
    return key.public_key.format(compressed=True)


_ECIES_INFO = b"keyswitch/ecies/v1"


def _ecies_key(shared: bytes, eph_pub: bytes, recipient: bytes, aad: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=eph_pub + recipient, info=_ECIES_INFO + aad
    ).derive(shared)


def ecies_encrypt(recipient_pub: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt to a secp256k1 public key. Output: eph_pub(33) || nonce(12) || ct+tag."""
    recipient = coincurve.PublicKey(recipient_pub).format(compressed=True)
    eph = coincurve.PrivateKey()
    eph_pub = pubkey_of(eph)
    key = _ecies_key(eph.ecdh(recipient), eph_pub, recipient, aad)
    nonce = os.urandom(12)
    return eph_pub + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


class DecryptError(ValueError):
    pass


def ecies_decrypt(key: coincurve.PrivateKey, blob: bytes, aad: bytes = b"") -> bytes:
    if len(blob) < 33 + 12 + 16:
        raise DecryptError("ciphertext too short")
    eph_pub, nonce, ct = blob[:33], blob[33:45], blob[45:]
    try:
        shared = key.ecdh(eph_pub)
    except Exception:
        raise DecryptError("bad ephemeral key") from None
    k = _ecies_key(shared, eph_pub, pubkey_of(key), aad)
    try:
        return AESGCM(k).decrypt(nonce, ct, aad)
    except Exception:
        raise DecryptError("authentication failed (wrong key, context or tampered)") from None
