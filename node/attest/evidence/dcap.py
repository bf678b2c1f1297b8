"""Intel SGX and TDX DCAP (ECDSA) quotes, verified offline as of a given time.

The DCAP cryptography (PCK chain, CRLs, TCB info, QE identity, the quote and
QE report signatures) is PyPI ``dcap-qvl`` 0.7.0's, not hand-written. This
module's own layer:

* pins the Intel SGX Root CA (``roots/intel_sgx_root_ca.pem``, SHA-256
  fingerprint ``44a0196b...74d3``) and hands exactly that root to dcap-qvl;
* parses the quote header and report body itself (MRENCLAVE / MRTD,
  attributes, report_data) — ``parse_quote`` — and a test checks it against
  dcap-qvl's own reading;
* before any cryptography, reads the whole quote strictly (``check_layout``):
  SGX v3 / SGX or TDX v4 with an ECDSA P-256 key only; the quote ends exactly
  where its signature-data length says (no trailing bytes, not even zero
  padding; no truncation); every nested length field (QE authentication data,
  certification data, the type-6 QE report data, the type-5 PCK chain) covers
  exactly the bytes that follow it; the PCK chain is exactly three PEM
  certificates and at most a NUL. dcap-qvl is lenient about all of these, and
  the bytes they would leave are covered by no signature;
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

from node.attest.verdict import Verdict

ROOT_PEM = Path(__file__).with_name("roots") / "intel_sgx_root_ca.pem"
ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

HEADER_LEN = 48
SGX_BODY_LEN = 384
TDX10_BODY_LEN = 584
TEE_SGX, TEE_TDX = 0x00000000, 0x00000081
SGX_ATTR_DEBUG = 0x02  # ATTRIBUTES.FLAGS bit 1
TD_ATTR_DEBUG = 0x01  # TDATTRIBUTES bit 0 (TUD.DEBUG)
ATT_KEY_ECDSA_P256 = 2
CERT_PCK_CHAIN = 5  # certification data: the PCK certificate chain (PEM)
CERT_QE_REPORT = 6  # certification data (v4): QE report, its signature, auth data, then type-5 data
MAX_CERT_DATA = 64 * 1024  # a real PCK chain is ~3.7 KB
MAX_QUOTE_LEN = 128 * 1024
PCK_CHAIN_CERTS = 3  # PCK certificate, PCK Platform/Processor CA, Intel SGX Root CA


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
    """Format detection only (header fields); ``parse_quote`` then reads the whole quote strictly."""
    if len(blob) < HEADER_LEN:
        return False
    version, akt, tee = struct.unpack_from("<HHI", blob, 0)
    return version in (3, 4, 5) and akt in (2, 3) and tee in (TEE_SGX, TEE_TDX)


class _Reader:
    """Reads a quote's little-endian fields in order; every length it is told must fit the buffer exactly."""

    def __init__(self, blob: bytes, start: int, end: int):
        self.blob, self.pos, self.end = blob, start, end

    def take(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise QuoteParseError(f"quote truncated: {what} needs {n} bytes at offset {self.pos}, "
                                  f"{max(self.end - self.pos, 0)} remain")
        out = self.blob[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def sized(self, n: int, what: str) -> "_Reader":
        """A reader over the next ``n`` bytes, which a length field declared."""
        if n > self.end - self.pos:
            raise QuoteParseError(f"quote truncated: {what} declares {n} bytes at offset {self.pos}, only "
                                  f"{max(self.end - self.pos, 0)} are left")
        sub = _Reader(self.blob, self.pos, self.pos + n)
        self.pos += n
        return sub

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise QuoteParseError(f"{self.end - self.pos} bytes inside {what} after its last field "
                                  f"(offset {self.pos}): its length fields disagree with its contents")


def _cert_data(r: _Reader, what: str) -> None:
    """Certification data: u16 type 5, u32 size, then exactly that many bytes: the PCK chain (``_pck_chain``)."""
    cert_type = r.u16(f"{what} type")
    size = r.u32(f"{what} size")
    if cert_type != CERT_PCK_CHAIN:
        raise QuoteParseError(f"{what}: certification data type {cert_type} is not supported "
                              f"({CERT_PCK_CHAIN}, the PCK certificate chain, is)")
    if not 0 < size <= MAX_CERT_DATA:
        raise QuoteParseError(f"{what}: PCK chain size {size} is not in 1..{MAX_CERT_DATA}")
    _pck_chain(r.take(size, f"{what} (PCK chain)"))


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{1,8192}?-----END CERTIFICATE-----\n")


def _pck_chain(data: bytes) -> None:
    """Exactly the PCK chain Intel's quoting enclave writes: 3 PEM certificates (PCK, CA, root), then at most
    one NUL terminator. Nothing else: bytes the signatures do not cover are not left for an attacker to fill."""
    pos, n = 0, 0
    while (m := _PEM_CERT.match(data, pos)) is not None:
        pos, n = m.end(), n + 1
    rest = data[pos:]
    if n != PCK_CHAIN_CERTS or rest not in (b"", b"\0"):
        raise QuoteParseError(f"PCK certification data is not exactly {PCK_CHAIN_CERTS} PEM certificates "
                              f"(found {n}, then {len(rest)} other bytes)")


def quote_end(blob: bytes) -> int:
    """The quote's length by its own signature-data length field (after header and body); 0 if too short."""
    if len(blob) < HEADER_LEN:
        return 0
    tee, = struct.unpack_from("<I", blob, 4)
    body = TDX10_BODY_LEN if tee == TEE_TDX else SGX_BODY_LEN
    if len(blob) < HEADER_LEN + body + 4:
        return 0
    return HEADER_LEN + body + 4 + struct.unpack_from("<I", blob, HEADER_LEN + body)[0]


def check_layout(blob: bytes) -> None:
    """The whole quote, field by field, as Intel lays it out (SGX v3, SGX/TDX v4 with ECDSA P-256):

    header, report body, u32 signature-data length, then the signature data, which must end exactly at the
    end of ``blob``: no trailing bytes (not even zero padding) and no truncation. Inside it every length field
    (QE authentication data, certification data, the nested type-6 QE report certification data, the type-5
    PCK chain) must cover exactly the bytes that follow it. Raises ``QuoteParseError``.
    """
    if len(blob) > MAX_QUOTE_LEN:
        raise QuoteParseError(f"quote is {len(blob)} bytes, over {MAX_QUOTE_LEN}")
    r = _Reader(blob, 0, len(blob))
    version, _akt, tee = _header(r.take(HEADER_LEN, "the header"))
    r.take(TDX10_BODY_LEN if tee == TEE_TDX else SGX_BODY_LEN, "the report body")
    sig_len = r.u32("the signature data length")
    if sig_len < r.end - r.pos:
        raise QuoteParseError(f"{r.end - r.pos - sig_len} trailing bytes after the quote's end at byte "
                              f"{r.pos + sig_len} (its signature data length is {sig_len})"
                              + (": zero padding, strip it" if not any(blob[r.pos + sig_len:]) else ""))
    sig = r.sized(sig_len, "the signature data length")
    sig.take(64, "the quote signature")
    sig.take(64, "the attestation public key")
    if version == 3:
        qe = sig
    else:
        outer_type = sig.u16("the certification data type")
        if outer_type != CERT_QE_REPORT:
            raise QuoteParseError(f"v4 certification data type {outer_type} is not {CERT_QE_REPORT} "
                                  "(QE report certification data)")
        qe = sig.sized(sig.u32("the certification data size"), "the QE report certification data")
        sig.done("the signature data")
    qe.take(SGX_BODY_LEN, "the QE report")
    qe.take(64, "the QE report signature")
    qe.take(qe.u16("the QE authentication data size"), "the QE authentication data")
    _cert_data(qe, "the PCK certification data")
    qe.done("the signature data" if version == 3 else "the QE report certification data")


def _header(header: bytes) -> tuple[int, int, int]:
    """(version, attestation key type, TEE type) of a layout read here, else ``QuoteParseError``."""
    version, akt, tee = struct.unpack_from("<HHI", header, 0)
    if akt != ATT_KEY_ECDSA_P256:
        raise QuoteParseError(f"attestation key type {akt} is not supported ({ATT_KEY_ECDSA_P256}, ECDSA P-256, is)")
    if (tee, version) not in ((TEE_SGX, 3), (TEE_SGX, 4), (TEE_TDX, 4)):
        raise QuoteParseError(f"quote version {version} for TEE type 0x{tee:x} is not supported "
                              "(SGX v3/v4, TDX v4 are)")
    return version, akt, tee


def read_report(blob: bytes) -> ParsedQuote:
    """The header and report body only (no check of what follows them: see ``parse_quote``)."""
    if len(blob) < HEADER_LEN:
        raise QuoteParseError(f"quote too short: {len(blob)} bytes < {HEADER_LEN}-byte header")
    version, akt, tee = _header(blob[:HEADER_LEN])
    qe_svn, pce_svn = struct.unpack_from("<HH", blob, 8)
    vendor_id = blob[12:28]
    body = blob[HEADER_LEN:]
    if tee == TEE_SGX:
        if len(body) < SGX_BODY_LEN:
            raise QuoteParseError("quote too short for an SGX report body")
        attributes = body[48:64]
        return ParsedQuote(version, akt, tee, qe_svn, pce_svn, vendor_id, "intel-sgx-dcap",
                           measurement=body[64:96], signer=body[128:160], attributes=attributes,
                           debug=bool(attributes[0] & SGX_ATTR_DEBUG), report_data=body[320:384])
    if len(body) < TDX10_BODY_LEN:
        raise QuoteParseError("quote too short for a TD report body")
    td_attributes = body[120:128]
    return ParsedQuote(version, akt, tee, qe_svn, pce_svn, vendor_id, "intel-tdx-dcap",
                       measurement=body[136:184], signer=body[64:112], attributes=td_attributes,
                       debug=bool(td_attributes[0] & TD_ATTR_DEBUG), report_data=body[520:584])


def parse_quote(blob: bytes) -> ParsedQuote:
    """The whole quote checked (``check_layout``), then its header and report body read (``read_report``).

    Raises ``QuoteParseError``.
    """
    check_layout(bytes(blob))
    return read_report(blob)


def pinned_root_der() -> bytes:
    from node.attest.evidence.roots import load_pinned

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
        parsed = read_report(blob)
    except QuoteParseError as exc:
        return Verdict(False, False, "malformed", str(exc), "intel-dcap", when)
    base = dict(vendor=parsed.vendor, verified_at=when, measurement=parsed.measurement.hex(),
                debug=parsed.debug, report_data=parsed.report_data.hex())

    def refuse(code: str, reason: str, genuine: bool = False, **kw) -> Verdict:
        return Verdict(False, genuine, code, reason, **{**base, **kw})

    if collateral is None:
        return refuse("collateral-missing", "DCAP quotes are verified offline: give the collateral (--collateral)")
    try:
        check_layout(bytes(blob))  # before dcap-qvl, which is lenient about every length below
    except QuoteParseError as exc:
        return refuse("malformed", str(exc))
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
