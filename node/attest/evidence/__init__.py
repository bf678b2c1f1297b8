"""One entry point for every kind of attestation evidence: ``verify_evidence``.

Formats: the simulated Keyswitch quote (``KSSIMQ`` magic, development only),
Intel SGX / TDX DCAP quotes (collateral: dcap-qvl's JSON), AWS Nitro
attestation documents (self-contained), AMD SEV-SNP reports (collateral: a
PEM bundle, the VCEK first, then AMD's ASK/ARK chain) and Intel IAS reports
(a ``KSIAS1`` envelope of body, signature and chain: ``ias.pack_ias``). Every verification is done *as of* a time
given by the caller, never the wall clock, and never raises on bad input: the
answer is always a ``Verdict`` with a code and a one-line reason.
"""

from __future__ import annotations

from datetime import datetime, timezone

from node.attest.verdict import Verdict

FORMATS = ("keyswitch-sim", "intel-dcap", "aws-nitro", "amd-sev-snp", "intel-ias")


def detect_format(blob: bytes) -> str:
    from node.attest.evidence.dcap import looks_like_dcap
    from node.attest.simquote import SIM_MAGIC

    if blob[: len(SIM_MAGIC)] == SIM_MAGIC:
        return "keyswitch-sim"
    if looks_like_dcap(blob):
        return "intel-dcap"
    from node.attest.evidence.ias import looks_like_ias
    from node.attest.evidence.nitro import looks_like_nitro
    from node.attest.evidence.snp import looks_like_snp

    if looks_like_ias(blob):
        return "intel-ias"
    if looks_like_snp(blob):
        return "amd-sev-snp"
    if looks_like_nitro(blob):
        return "aws-nitro"
    return "unknown"


def split_snp_collateral(collateral: bytes | None) -> tuple[bytes | None, bytes | None]:
    """A PEM bundle -> (VCEK DER, the rest as PEM); DER alone is taken as the VCEK."""
    if not collateral:
        return None, None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if b"-----BEGIN" not in collateral:
        return collateral, None
    import warnings

    with warnings.catch_warnings():  # AMD's VCEK has serial number 0 (see snp.py)
        warnings.simplefilter("ignore")
        certs = x509.load_pem_x509_certificates(collateral)
    rest = b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:])
    return certs[0].public_bytes(Encoding.DER), rest or None


def verify_evidence(blob: bytes, *, policy, at: datetime, collateral: bytes | None = None,
                    format: str | None = None) -> Verdict:
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    try:
        fmt = format or detect_format(blob)
        if fmt == "keyswitch-sim":
            from node.attest.simquote import verify_sim_quote

            return verify_sim_quote(blob, policy=policy, at=at)
        if fmt == "intel-dcap":
            from node.attest.evidence.dcap import verify_dcap

            return verify_dcap(blob, policy=policy, at=at, collateral=collateral)
        if fmt == "aws-nitro":
            from node.attest.evidence.nitro import verify_nitro

            return verify_nitro(blob, policy=policy, at=at)
        if fmt == "amd-sev-snp":
            from node.attest.evidence.snp import verify_snp

            try:
                vcek, chain = split_snp_collateral(collateral)
            except ValueError as exc:
                return Verdict(False, False, "bad-collateral", f"SNP collateral is not a PEM bundle: {exc}",
                               "amd-sev-snp", at.isoformat())
            return verify_snp(blob, policy=policy, at=at, vcek=vcek, chain=chain)
        if fmt == "intel-ias":
            from node.attest.evidence.ias import verify_ias_blob

            return verify_ias_blob(blob, policy=policy, at=at)
        reason = (f"unknown evidence format {format!r} (known: {', '.join(FORMATS)})" if format
                  else f"unrecognised evidence ({len(blob)} bytes): not any of {', '.join(FORMATS)}")
        return Verdict(False, False, "unsupported-format", reason, "unknown", at.isoformat())
    except Exception as exc:  # a verifier bug must not become a crash of the node
        return Verdict(False, False, "internal-error", f"{type(exc).__name__}: {exc}", "unknown", at.isoformat())
