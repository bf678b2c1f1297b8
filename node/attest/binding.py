"""The binding an attestation quote carries in its report data.

A quote proves "this code runs on a genuine device"; the *binding* says what
that enclave vouches for: its own signing and encryption keys, the libp2p peer
id of the node it serves, the network, and a commitment to its deposit keys.
``report_data()`` packs it into the 64 bytes every TEE format offers
(SGX/TDX report_data, SEV-SNP REPORT_DATA, Nitro user_data).
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime

import msgspec

from node import wire
from node.attest.verdict import Verdict

BINDING_TAG = b"keyswitch/binding/1"


class Binding(msgspec.Struct, frozen=True, array_like=True):
    net: str
    peer_id: str
    sign_pub: bytes  # 33-byte compressed secp256k1, the enclave's signing key
    enc_pub: bytes  # 33-byte compressed secp256k1, the enclave's ECIES key
    keys_root: bytes = b"\x00" * 32  # commitment to the deposit public keys
    version: int = 1

    def validate(self) -> str | None:
        """A reason string when malformed, else None."""
        if self.version != 1:
            return f"unsupported binding version {self.version}"
        if len(self.sign_pub) != 33 or self.sign_pub[0] not in (2, 3):
            return "sign_pub must be a 33-byte compressed secp256k1 key"
        if len(self.enc_pub) != 33 or self.enc_pub[0] not in (2, 3):
            return "enc_pub must be a 33-byte compressed secp256k1 key"
        if len(self.keys_root) != 32:
            return "keys_root must be 32 bytes"
        if len(self.net) > 64 or len(self.peer_id) > 128:
            return "net or peer_id too long"
        return None

    def encode(self) -> bytes:
        return wire.encode(self)

    def report_data(self) -> bytes:
        """64 bytes: SHA-512 over a domain tag and the deterministic encoding."""
        return hashlib.sha512(BINDING_TAG + self.encode()).digest()


def keys_root(pubkeys: list[bytes]) -> bytes:
    """Commitment to a list of deposit public keys (order-independent)."""
    h = hashlib.sha256(b"keyswitch/keys-root/1")
    for pk in sorted(pubkeys):
        h.update(pk)
    return h.digest()


def verify_attestation(
    quote: bytes,
    binding: Binding,
    *,
    policy,
    at: datetime,
    collateral: bytes | None = None,
) -> Verdict:
    """Verify evidence and that its report data commits to ``binding``.

    Never raises on bad input: every failure is a ``Verdict`` with a code.
    """
    bad = binding.validate()
    if bad is not None:
        return Verdict(
            ok=False, genuine=False, code="binding-malformed", reason=bad, vendor="unknown",
            verified_at=at.isoformat(),
        )
    from node.attest.simquote import SIM_MAGIC, verify_sim_quote

    if quote[: len(SIM_MAGIC)] == SIM_MAGIC:
        verdict = verify_sim_quote(quote, policy=policy, at=at)
    else:
        from node.attest.evidence import verify_evidence  # lazy: vendor formats pull heavier deps

        verdict = verify_evidence(quote, policy=policy, at=at, collateral=collateral)
    if not verdict.genuine and not verdict.ok:
        return verdict
    expected = binding.report_data().hex()
    if verdict.report_data.lower()[: len(expected)] != expected:
        return dataclasses.replace(
            verdict,
            ok=False,
            code="binding-mismatch",
            reason="report data does not commit to this binding (keys or peer id not the attested ones)",
        )
    return verdict
