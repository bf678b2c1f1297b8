"""Intel SGX and TDX DCAP (ECDSA) quotes, verified offline as of a given time.

The DCAP cryptography (PCK chain, CRLs, TCB info, QE identity, the quote and
QE report signatures) is PyPI ``dcap-qvl`` 0.7.0's, not hand-written. This
module's own layer:

* pins the Intel SGX Root CA (``roots/intel_sgx_root_ca.pem``, SHA-256
  fingerprint ``44a0196b...74d3``) and hands exactly that root to dcap-qvl;
* parses the quote header and report body itself (MRENCLAVE / MRTD,
  attributes, report_data) — ``parse_quote`` — and a test checks it against
  dcap-qvl's own reading;
* refuses debug enclaves / TDs, checks the measurement allow-list, applies
  the policy's accepted TCB statuses and refused advisories, and keeps the
  TCB status and advisory ids in the verdict.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from node.tee.verdict import Verdict

ROOT_PEM = Path(__file__).with_name("roots") / "intel_sgx_root_ca.pem"
ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

HEADER_LEN = 48
SGX_BODY_LEN = 384
TDX10_BODY_LEN = 584
TEE_SGX, TEE_TDX = 0x00000000, 0x00000081
SGX_ATTR_DEBUG = 0x02  # ATTRIBUTES.FLAGS bit 1
TD_ATTR_DEBUG = 0x01  # TDATTRIBUTES bit 0 (TUD.DEBUG)


class QuoteParseError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedQuote:
    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    vendor: str  # intel-sgx-dcap | intel-tdx-dcap
    measurement: bytes  # MRENCLAVE (SGX) or MRTD (TDX)
    signer: bytes  # MRSIGNER (SGX) or MRSIGNERSEAM (TDX)
    attributes: bytes  # SGX ATTRIBUTES (16) or TD_ATTRIBUTES (8)
    debug: bool
    report_data: bytes


def looks_like_dcap(blob: bytes) -> bool:
    if len(blob) < HEADER_LEN:
        return False
    version, akt, tee = struct.unpack_from("<HHI", blob, 0)
    return version in (3, 4, 5) and akt in (2, 3) and tee in (TEE_SGX, TEE_TDX)


def parse_quote(blob: bytes) -> ParsedQuote:
    """Read the header and report body (Intel's quote layout, v3 SGX / v4 TDX 1.0)."""
    if len(blob) < HEADER_LEN:
        raise QuoteParseError(f"quote too short: {len(blob)} bytes < {HEADER_LEN}-byte header")
    version, akt, tee, qe_svn, pce_svn = struct.unpack_from("<HHIHH", blob, 0)
    vendor_id = blob[12:28]
    body = blob[HEADER_LEN:]
    if tee == TEE_SGX:
        if len(body) < SGX_BODY_LEN:
            raise QuoteParseError("quote too short for an SGX report body")
        attributes = body[48:64]
        return ParsedQuote(version, akt, tee, qe_svn, pce_svn, vendor_id, "intel-sgx-dcap",
                           measurement=body[64:96], signer=body[128:160], attributes=attributes,
                           debug=bool(attributes[0] & SGX_ATTR_DEBUG), report_data=body[320:384])
    if tee == TEE_TDX:
        if version != 4:
            raise QuoteParseError(f"TDX quote version {version} not supported (4 is)")
        if len(body) < TDX10_BODY_LEN:
            raise QuoteParseError("quote too short for a TD report body")
        td_attributes = body[120:128]
        return ParsedQuote(version, akt, tee, qe_svn, pce_svn, vendor_id, "intel-tdx-dcap",
                           measurement=body[136:184], signer=body[64:112], attributes=td_attributes,
                           debug=bool(td_attributes[0] & TD_ATTR_DEBUG), report_data=body[520:584])
    raise QuoteParseError(f"unknown TEE type 0x{tee:x}")


def pinned_root_der() -> bytes:
    from node.tee.evidence.roots import load_pinned

    return load_pinned(ROOT_PEM, ROOT_SHA256, "Intel SGX Root CA")


_EXPIRED = re.compile(r"(\w*Expired\w*)\s*\{([^}]*)\}")


def _classify(message: str) -> tuple[str, str]:
    """dcap-qvl's error text -> (code, one-line reason)."""
    m = _EXPIRED.search(message)
    if m:
        item, fields = m.group(1), m.group(2)
        times = {k: int(v) for k, v in re.findall(r"(\w+): UnixTime\((\d+)\)", fields)}
        pretty = ", ".join(f"{k}={datetime.fromtimestamp(v, timezone.utc).isoformat()}" for k, v in times.items())
        return "expired", f"outside the validity window: {item} ({pretty})"
    low = message.lower()
    if "root ca" in low or "issuer" in low and "root" in low:
        return "untrusted-root", f"chain does not end at the pinned Intel SGX Root CA: {message.splitlines()[0]}"
    if "revoked" in low:
        return "revoked", message.splitlines()[0]
    if "signature" in low:
        return "bad-signature", message.splitlines()[0]
    if "collateral" in low or "tcb" in low or "qe identity" in low or "json" in low:
        return "bad-collateral", message.splitlines()[0]
    return "verification-failed", message.splitlines()[0]


def verify_dcap(blob: bytes, *, policy, at: datetime, collateral: bytes | None,
                root_der: bytes | None = None) -> Verdict:
    """Verify an SGX/TDX DCAP quote with its collateral as of ``at``. Never raises."""
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    when = at.isoformat()
    try:
        parsed = parse_quote(blob)
    except QuoteParseError as exc:
        return Verdict(False, False, "malformed", str(exc), "intel-dcap", when)
    base = dict(vendor=parsed.vendor, verified_at=when, measurement=parsed.measurement.hex(),
                debug=parsed.debug, report_data=parsed.report_data.hex())

    def refuse(code: str, reason: str, genuine: bool = False, **kw) -> Verdict:
        return Verdict(False, genuine, code, reason, **{**base, **kw})

    if collateral is None:
        return refuse("collateral-missing", "DCAP quotes are verified offline: give the collateral (--collateral)")
    try:
        import dcap_qvl

        coll = dcap_qvl.QuoteCollateralV3.from_json(
            collateral.decode() if isinstance(collateral, (bytes, bytearray)) else collateral)
    except Exception as exc:  # the binding raises several types on bad JSON
        return refuse("bad-collateral", f"collateral is not a dcap-qvl QuoteCollateralV3 JSON: {exc}")
    try:
        root = pinned_root_der() if root_der is None else root_der
        report = dcap_qvl.verify_with_root_ca(bytes(blob), coll, root, int(at.timestamp()))
    except Exception as exc:
        code, reason = _classify(str(exc))
        return refuse(code, reason)
    status = str(report.status)
    advisories = tuple(str(a) for a in report.advisory_ids)
    genuine = dict(base, tcb_status=status, advisories=advisories)
    if status not in policy.accept_tcb:
        return Verdict(False, True, "tcb-status-refused",
                       f"platform TCB status {status} is not accepted by policy", **genuine)
    bad_adv = sorted(set(advisories) & set(policy.refuse_advisories))
    if bad_adv:
        return Verdict(False, True, "advisory-refused", f"advisories refused by policy: {', '.join(bad_adv)}",
                       **genuine)
    return check_report(parsed, policy, genuine)


def check_report(parsed: ParsedQuote, policy, fields: dict) -> Verdict:
    """Keyswitch's checks on a genuine report body: debug, then the measurement allow-list."""
    if parsed.debug and not policy.allow_debug:
        return Verdict(False, True, "debug-not-allowed",
                       "debug enclave: its memory is readable by the host, never trusted", **fields)
    if not policy.allows_measurement(parsed.measurement.hex()):
        return Verdict(False, True, "measurement-not-allowed",
                       f"genuine {parsed.vendor} quote, but measurement {parsed.measurement.hex()[:16]}... "
                       "is not an allowed Keyswitch build", allowed_build=False, **fields)
    return Verdict(True, True, "ok", "genuine Intel quote of an allowed build", allowed_build=True, **fields)


def load_collateral(path: Path) -> bytes:
    data = Path(path).read_bytes()
    json.loads(data)  # a clear error early for a non-JSON file
    return data
