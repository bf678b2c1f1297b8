"""One entry point for every kind of attestation evidence: ``verify_evidence``.

Formats: the simulated Keyswitch quote (``KSSIMQ`` magic, development only)
and Intel SGX / TDX DCAP quotes. Every verification is done *as of* a time
given by the caller, never the wall clock, and never raises on bad input: the
answer is always a ``Verdict`` with a code and a one-line reason.
"""

from __future__ import annotations

from datetime import datetime, timezone

from node.tee.verdict import Verdict

FORMATS = ("keyswitch-sim", "intel-dcap")


def detect_format(blob: bytes) -> str:
    from node.tee.evidence.dcap import looks_like_dcap
    from node.tee.simquote import SIM_MAGIC

    if blob[: len(SIM_MAGIC)] == SIM_MAGIC:
        return "keyswitch-sim"
    if looks_like_dcap(blob):
        return "intel-dcap"
    return "unknown"


def verify_evidence(blob: bytes, *, policy, at: datetime, collateral: bytes | None = None,
                    format: str | None = None) -> Verdict:
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    try:
        fmt = format or detect_format(blob)
        if fmt == "keyswitch-sim":
            from node.tee.simquote import verify_sim_quote

            return verify_sim_quote(blob, policy=policy, at=at)
        if fmt == "intel-dcap":
            from node.tee.evidence.dcap import verify_dcap

            return verify_dcap(blob, policy=policy, at=at, collateral=collateral)
        reason = (f"unknown evidence format {format!r} (known: {', '.join(FORMATS)})" if format
                  else f"unrecognised evidence ({len(blob)} bytes): not a Keyswitch sim quote or an Intel DCAP quote")
        return Verdict(False, False, "unsupported-format", reason, "unknown", at.isoformat())
    except Exception as exc:  # a verifier bug must not become a crash of the node
        return Verdict(False, False, "internal-error", f"{type(exc).__name__}: {exc}", "unknown", at.isoformat())
