"""Proof of cheating, sans-IO: two release records of one deposit key signed by one enclave.

An honest enclave commits a released key to no new contract and no host can sign a ``release`` record (domain
"release" is signed only inside the enclave's contract calls), so two such records by one signing key for the
same deposit key and different recipients, contracts or rounds are a self-contained proof against the device:
no ledger, no network (``node.protocols.outcomes`` assembles it from reports, ``node.protocols.revocation``
gossips and applies it).
"""

from __future__ import annotations

import hashlib

import msgspec

from node import wire
from node.contracts.spec import ReleaseBody
from node.contracts.protocol.envelope import MAX_MESSAGE, VERSION, signature_ok


class CheatingProof(msgspec.Struct, array_like=True, frozen=True):
    """Two ``release`` messages (wire-encoded signed envelopes) for one deposit key by one enclave."""

    first: bytes
    second: bytes


def verify_cheating_proof(proof: CheatingProof, *, net: str | None = None) -> bytes | str:
    """The device id (SHA-256 of the enclave signing key, as the offer book counts devices) when ``proof``
    shows one enclave signing two releases of the same deposit key to different recipients or contracts;
    otherwise a reason string. Self-contained: no ledger, no network."""
    envs = []
    for name, data in (("first", proof.first), ("second", proof.second)):
        try:
            env = wire.decode(data, wire.Signed, max_size=MAX_MESSAGE)
        except wire.WireError as exc:
            return f"{name}: malformed: {exc.reason}"
        if env.version != VERSION or env.kind != "release":
            return f"{name}: not a version-{VERSION} release record"
        if net is not None and env.net != net:
            return f"{name}: wrong network {env.net!r}"
        try:
            body = wire.decode(env.body, ReleaseBody, max_size=MAX_MESSAGE)
        except wire.WireError as exc:
            return f"{name}: malformed release body: {exc.reason}"
        if not signature_ok(env):
            return f"{name}: bad enclave signature"
        envs.append((env, body))
    (e1, b1), (e2, b2) = envs
    if e1.signer != e2.signer:
        return "the two releases are signed by different enclaves"
    if b1.deposit_pub != b2.deposit_pub:
        return "the two releases are of different deposit keys"
    if (b1.recipient, b1.contract_id, b1.round) == (b2.recipient, b2.contract_id, b2.round):
        return "the two releases are to the same recipient, contract and round (a resend, not a double release)"
    return hashlib.sha256(e1.signer).digest()
