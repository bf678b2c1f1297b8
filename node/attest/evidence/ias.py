"""Legacy Intel IAS (EPID) attestation verification reports, verified offline as of a given time.

An IAS report ("AVR") is three things from the IAS HTTP response: the JSON body
(exact bytes), the ``X-IASReport-Signature`` header (base64 RSA signature) and
the ``X-IASReport-Signing-Certificate`` header (URL-encoded PEM chain: report
signing leaf, then the CA). IAS was shut down in 2025; old reports can still be
checked as of a caller-given time (never the wall clock).

``verify_ias`` checks, in this order, and never raises:

1. the chain: it must end at exactly the pinned Intel SGX Attestation Report
   Signing CA (``roots/intel_ias_report_ca.pem``, SHA-256 fingerprint
   ``7b42e41e...735d``). Intel's header always carries the CA, so a chain that
   stops short of it (leaf only) is refused, not silently completed. Every
   link is a signature by the next certificate, which must be a CA;
   -> ``untrusted-root`` / ``bad-signature``;
2. every certificate's validity window contains ``at`` -> ``expired``;
3. the body signature: RSA PKCS#1 v1.5 with SHA-256 by the leaf over the exact
   body bytes -> ``bad-signature``;
   Before any of it, the two unsigned parts must be spelt canonically: the
   chain only PEM certificates (plain, or URL-encoded exactly as IAS does
   it), the signature base64 without whitespace or stray padding bits ->
   ``malformed``: nothing outside the signed body is left for anyone to vary;
4. the body: JSON of API version 4 or 5 with ``isvEnclaveQuoteBody`` a
   432-byte EPID quote (48-byte header, then the SGX report body, read at the
   same offsets as ``dcap.parse_quote``) -> ``malformed``;
5. the quote status: statuses saying the quote itself is not genuine
   (``SIGNATURE_INVALID``, ``*_REVOKED``, ``SIGRL_VERSION_MISMATCH``) give
   ``genuine=False``;
6. the report timestamp (UTC) is not after ``at``, not even by a microsecond
   (no clock-skew allowance: IAS reports are old by nature, and one dated
   after ``at`` did not exist at ``at``) -> ``quote-from-future`` with
   ``genuine=False`` (exit 4); and not older than ``policy.max_quote_age`` ->
   ``quote-stale`` (genuine);
7. the policy, as ``dcap.verify_dcap`` applies it: accepted TCB statuses
   (``tcb-status-refused``), refused advisories (``advisory-refused``), then
   ``dcap.check_report``: debug (``debug-not-allowed``) and the measurement
   allow-list (``measurement-not-allowed``).

**Status names.** IAS spells platform statuses differently from DCAP. The
verdict's ``tcb_status`` and the policy check use the DCAP-style name the
policy speaks (``IAS_STATUS_TO_TCB``): ``OK`` -> ``UpToDate``,
``GROUP_OUT_OF_DATE`` -> ``OutOfDate``, ``CONFIGURATION_NEEDED`` ->
``ConfigurationNeeded``, ``SW_HARDENING_NEEDED`` -> ``SWHardeningNeeded``,
``CONFIGURATION_AND_SW_HARDENING_NEEDED`` -> ``ConfigurationAndSWHardeningNeeded``.
An unknown status is kept verbatim (so a policy refuses it). The IAS spelling
is kept in ``details["isv_enclave_quote_status"]``.

``pack_ias`` / ``unpack_ias`` put the three parts in one deterministic blob
(``KSIAS1`` + canonical CBOR map ``{"body", "chain", "sig"}`` of byte
strings) so the evidence dispatcher can take a single blob
(``looks_like_ias``, ``verify_ias_blob``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from node.attest.evidence.dcap import HEADER_LEN, SGX_ATTR_DEBUG, SGX_BODY_LEN, check_report
from node.attest.verdict import Verdict

VENDOR = "intel-ias"
ROOT_PEM = Path(__file__).with_name("roots") / "intel_ias_report_ca.pem"
ROOT_SHA256 = "7b42e41ec43b91db834a065de4f98a13c44d695570e839cfa8921e584e40735d"

MAGIC = b"KSIAS1"
MAX_BLOB = 64 * 1024  # a real AVR body is ~1 KB, the chain ~4 KB
MAX_PART = 32 * 1024
EPID_QUOTE_LEN = HEADER_LEN + SGX_BODY_LEN  # 432: the quote without its EPID signature
SUPPORTED_VERSIONS = (4, 5)
MAX_CHAIN_CERTS = 4  # IAS sends 2: the report signing certificate and the CA
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]{1,16384}?-----END CERTIFICATE-----\n")

#: IAS ``isvEnclaveQuoteStatus`` -> the DCAP-style TCB status name the policy uses
IAS_STATUS_TO_TCB = {
    "OK": "UpToDate",
    "GROUP_OUT_OF_DATE": "OutOfDate",
    "CONFIGURATION_NEEDED": "ConfigurationNeeded",
    "SW_HARDENING_NEEDED": "SWHardeningNeeded",
    "CONFIGURATION_AND_SW_HARDENING_NEEDED": "ConfigurationAndSWHardeningNeeded",
}
#: statuses by which IAS says the quote itself is not genuine -> (code, meaning)
IAS_STATUS_NOT_GENUINE = {
    "SIGNATURE_INVALID": ("bad-signature", "the quote's EPID signature is invalid"),
    "GROUP_REVOKED": ("revoked", "the platform's EPID group is revoked"),
    "SIGNATURE_REVOKED": ("revoked", "the quote's EPID signature is revoked"),
    "KEY_REVOKED": ("revoked", "the platform's EPID private key is revoked"),
    "SIGRL_VERSION_MISMATCH": ("verification-failed", "the quote was made against an old SigRL"),
}


class IasFormatError(ValueError):
    pass


@dataclass(frozen=True)
class IasReport:
    """The fields of a (not yet trusted) AVR body that Keyswitch reads."""

    version: int
    id: str
    timestamp: datetime  # UTC
    status: str  # isvEnclaveQuoteStatus, IAS spelling
    advisories: tuple[str, ...]
    nonce: str
    quote_version: int
    sign_type: int
    epid_group_id: bytes
    qe_svn: int
    pce_svn: int
    measurement: bytes  # MRENCLAVE
    signer: bytes  # MRSIGNER
    attributes: bytes  # ATTRIBUTES (16)
    debug: bool
    report_data: bytes
    vendor: str = VENDOR  # for dcap.check_report


def _one_line(text: object, limit: int = 200) -> str:
    lines = str(text).splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise IasFormatError(f"duplicate JSON key {k!r}")
        d[k] = v
    return d


def parse_report(body: bytes) -> IasReport:
    """Parse an AVR body (v4/v5) and its ``isvEnclaveQuoteBody``. Raises ``IasFormatError``."""
    try:
        doc = json.loads(bytes(body).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except IasFormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IasFormatError(f"report body is not JSON: {_one_line(exc)}") from None
    if not isinstance(doc, dict):
        raise IasFormatError("report body is not a JSON object")

    def field(name: str, kind):
        if name not in doc:
            raise IasFormatError(f"report body has no {name!r}")
        value = doc[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise IasFormatError(f"report field {name!r} has the wrong type")
        return value

    version = field("version", int)
    if version not in SUPPORTED_VERSIONS:
        known = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise IasFormatError(f"IAS report version {version} not supported ({known} are)")
    report_id = field("id", str)
    ts_text = field("timestamp", str)
    try:
        ts = datetime.fromisoformat(ts_text)
    except ValueError:
        raise IasFormatError(f"report timestamp {ts_text[:40]!r} is not ISO-8601") from None
    ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)  # IAS: UTC
    status = field("isvEnclaveQuoteStatus", str)
    advisories = doc.get("advisoryIDs", [])
    if not isinstance(advisories, list) or not all(isinstance(a, str) for a in advisories):
        raise IasFormatError("report field 'advisoryIDs' is not a list of strings")
    nonce = doc.get("nonce", "")
    if not isinstance(nonce, str):
        raise IasFormatError("report field 'nonce' is not a string")
    qb_text = field("isvEnclaveQuoteBody", str)
    try:
        quote = base64.b64decode(qb_text, validate=True)
    except (binascii.Error, ValueError):
        raise IasFormatError("isvEnclaveQuoteBody is not base64") from None
    if len(quote) != EPID_QUOTE_LEN:
        raise IasFormatError(f"isvEnclaveQuoteBody is {len(quote)} bytes, not {EPID_QUOTE_LEN}")
    qver, sign_type = struct.unpack_from("<HH", quote, 0)
    qe_svn, pce_svn = struct.unpack_from("<HH", quote, 8)
    rb = quote[HEADER_LEN:]  # SGX report body, same offsets as dcap.parse_quote
    attributes = rb[48:64]
    return IasReport(version=version, id=report_id, timestamp=ts, status=status, advisories=tuple(advisories),
                     nonce=nonce, quote_version=qver, sign_type=sign_type, epid_group_id=quote[4:8],
                     qe_svn=qe_svn, pce_svn=pce_svn, measurement=rb[64:96], signer=rb[128:160],
                     attributes=attributes, debug=bool(attributes[0] & SGX_ATTR_DEBUG), report_data=rb[320:384])


def load_chain(cert_chain_pem: bytes) -> list:
    """PEM certificates, URL-encoded (as in the IAS header) or plain. Raises ``IasFormatError``."""
    from cryptography import x509

    data = bytes(cert_chain_pem)
    if b"%" in data:  # URL-encoded header value; plain PEM never contains '%'
        encoded, data = data, urllib.parse.unquote_to_bytes(data)
        if urllib.parse.quote_from_bytes(data).encode() != encoded:
            raise IasFormatError("URL-encoded certificate chain is not in the encoding IAS uses "
                                 "(urllib.parse.quote of the PEM): the same chain can be spelt only two ways")
    pos, count = 0, 0
    while (m := _PEM_CERT.match(data, pos)) is not None:
        pos, count = m.end(), count + 1
    if pos != len(data) or not 1 <= count <= MAX_CHAIN_CERTS:
        raise IasFormatError(f"certificate chain is not only 1..{MAX_CHAIN_CERTS} PEM certificates: {count} "
                             f"certificate(s), then {len(data) - pos} other bytes at offset {pos}")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except Exception as exc:  # ValueError, or a Rust-side parse error on odd DER
        raise IasFormatError(f"certificate chain is not PEM certificates: {_one_line(exc)}") from None
    if not certs:
        raise IasFormatError("certificate chain is empty")
    for i, cert in enumerate(certs):
        try:  # cryptography parses some fields lazily: read them all here, where bad DER is "malformed"
            cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc
            cert.public_key(), cert.extensions, cert.signature_hash_algorithm
        except Exception as exc:
            raise IasFormatError(f"certificate {i} in the chain does not parse: {_one_line(exc, 100)}") from None
    return certs


def decode_signature(signature: bytes) -> bytes:
    """The base64 ``X-IASReport-Signature``, in its one canonical spelling: no whitespace, no non-zero
    padding bits (the bytes of the evidence are not left for anyone to vary). Raises ``IasFormatError``."""
    text = bytes(signature)
    try:
        sig = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IasFormatError("report signature is not base64 (without whitespace)") from None
    if base64.b64encode(sig) != text:
        raise IasFormatError("report signature is not in canonical base64 (padding bits or '=' padding differ)")
    return sig


def pinned_root_der() -> bytes:
    from node.attest.evidence.roots import load_pinned

    return load_pinned(ROOT_PEM, ROOT_SHA256, "Intel SGX Attestation Report Signing CA")


def _name(cert) -> str:
    return _one_line(cert.subject.rfc4514_string(), 100)


def _check_chain(certs: list, root_der: bytes, at: datetime) -> tuple[str, str] | None:
    """None if ``certs`` (leaf first) is a valid chain to ``root_der`` at ``at``, else (code, reason)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    ders = [c.public_bytes(Encoding.DER) for c in certs]
    if ders[-1] != root_der:
        return ("untrusted-root", f"certificate chain ({len(certs)} certificate(s)) does not end at the pinned "
                                  f"Intel SGX Attestation Report Signing CA (last: {_name(certs[-1])})")
    if len(certs) < 2:
        return "untrusted-root", "the pinned CA itself cannot sign reports: the chain has no signing certificate"
    for child, parent in zip(certs, certs[1:]):
        try:
            bc = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bc.ca
        except Exception:
            is_ca = False
        if not is_ca:
            return "untrusted-root", f"{_name(parent)} is not a CA certificate"
        if child.issuer != parent.subject:
            return "untrusted-root", f"{_name(child)} was not issued by {_name(parent)}"
        try:
            child.verify_directly_issued_by(parent)
        except Exception as exc:
            return "bad-signature", f"{_name(child)} is not signed by {_name(parent)}: {_one_line(exc, 80)}"
    for cert in certs:
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        if not nb <= at <= na:
            return ("expired", f"outside the validity window: {_name(cert)} is valid "
                               f"{nb.isoformat()} to {na.isoformat()}, checked at {at.isoformat()}")
    return None


def _verify_body_signature(leaf, body: bytes, sig: bytes) -> str | None:
    """None if ``sig`` is the leaf's RSA PKCS#1 v1.5 SHA-256 signature over ``body``, else a reason."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        return "the report signing certificate does not hold an RSA key of at least 2048 bits"
    try:
        key.verify(sig, bytes(body), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "report body signature does not verify with the report signing certificate"
    return None


def verify_ias(body: bytes, signature: bytes, cert_chain_pem: bytes, *, policy, at: datetime,
               root_der: bytes | None = None) -> Verdict:
    """Verify an IAS attestation verification report as of ``at``. Never raises.

    ``body``: the exact signed JSON bytes; ``signature``: the base64
    ``X-IASReport-Signature``; ``cert_chain_pem``: the
    ``X-IASReport-Signing-Certificate`` value (URL-encoded or plain PEM, leaf
    first). ``root_der`` replaces the pinned CA (tests only).
    """
    try:
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        when = at.isoformat()
    except Exception as exc:
        return Verdict(False, False, "malformed", f"bad verification time: {_one_line(exc)}", VENDOR, "")
    try:
        return _verify(body, signature, cert_chain_pem, policy, at, when, root_der)
    except Exception as exc:  # a verifier bug must not become a crash of the node
        return Verdict(False, False, "internal-error", _one_line(f"{type(exc).__name__}: {exc}"), VENDOR, when)


def _verify(body, signature, cert_chain_pem, policy, at: datetime, when: str, root_der) -> Verdict:
    if not all(isinstance(x, (bytes, bytearray, memoryview)) for x in (body, signature, cert_chain_pem)):
        return Verdict(False, False, "malformed", "body, signature and chain must be bytes", VENDOR, when)
    body = bytes(body)
    try:
        report, parse_error = parse_report(body), None
    except IasFormatError as exc:
        report, parse_error = None, str(exc)
    base: dict = dict(vendor=VENDOR, verified_at=when)
    if report is not None:
        base.update(measurement=report.measurement.hex(), debug=report.debug, report_data=report.report_data.hex())

    def refuse(code: str, reason: str, genuine: bool = False, **kw) -> Verdict:
        return Verdict(False, genuine, code, _one_line(reason), **{**base, **kw})

    try:
        certs = load_chain(cert_chain_pem)
        sig = decode_signature(signature)
    except IasFormatError as exc:
        return refuse("malformed", str(exc))
    failure = _check_chain(certs, pinned_root_der() if root_der is None else bytes(root_der), at)
    if failure:
        return refuse(*failure)
    bad = _verify_body_signature(certs[0], body, sig)
    if bad:
        return refuse("bad-signature", bad)
    if report is None:  # signed by Intel, yet not a report we can read
        return refuse("malformed", f"signed report body is not a readable IAS report: {parse_error}")

    tcb = IAS_STATUS_TO_TCB.get(report.status, report.status)
    details = {"isv_enclave_quote_status": report.status, "ias_report_id": report.id,
               "ias_report_version": report.version, "ias_timestamp": report.timestamp.isoformat(),
               "nonce": report.nonce, "mrsigner": report.signer.hex(), "attributes": report.attributes.hex(),
               "epid_group_id": report.epid_group_id.hex(), "qe_svn": report.qe_svn, "pce_svn": report.pce_svn}
    fields = dict(base, tcb_status=tcb, advisories=report.advisories, details=details)
    if report.status in IAS_STATUS_NOT_GENUINE:
        code, meaning = IAS_STATUS_NOT_GENUINE[report.status]
        return refuse(code, f"IAS says {report.status}: {meaning}", **fields)
    if report.timestamp > at:  # no report existed yet at ``at``: not genuine as of then (exit 4)
        return refuse("quote-from-future", f"report timestamp {report.timestamp.isoformat()} is after the "
                      f"verification time {when}: the report did not exist yet", **fields)
    age = (at - report.timestamp).total_seconds()
    if age > policy.max_quote_age:
        return refuse("quote-stale", f"report is {age:.0f} s old, over the policy's {policy.max_quote_age:.0f} s",
                      genuine=True, **fields)
    if tcb not in policy.accept_tcb:
        return refuse("tcb-status-refused",
                      f"platform TCB status {tcb} (IAS {report.status}) is not accepted by policy",
                      genuine=True, **fields)
    bad_adv = sorted(set(report.advisories) & set(policy.refuse_advisories))
    if bad_adv:
        return refuse("advisory-refused", f"advisories refused by policy: {', '.join(bad_adv)}",
                      genuine=True, **fields)
    return check_report(report, policy, fields)


# --- one-blob envelope -------------------------------------------------------------------------------


def pack_ias(body: bytes, sig: bytes, chain: bytes) -> bytes:
    """``KSIAS1`` + canonical CBOR ``{"body": ..., "chain": ..., "sig": ...}`` (all byte strings)."""
    import cbor2

    parts = {"body": bytes(body), "chain": bytes(chain), "sig": bytes(sig)}
    return MAGIC + cbor2.dumps(parts, canonical=True)


def unpack_ias(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """(body, sig, chain) from a ``pack_ias`` blob. Raises ``IasFormatError`` on anything else."""
    import cbor2

    blob = bytes(blob)
    if not looks_like_ias(blob):
        raise IasFormatError("not an IAS evidence blob (no KSIAS1 prefix)")
    if len(blob) > MAX_BLOB:
        raise IasFormatError(f"IAS evidence blob is {len(blob)} bytes, over {MAX_BLOB}")
    try:
        parts = cbor2.loads(blob[len(MAGIC):])
    except Exception as exc:  # cbor2 raises several types on bad input
        raise IasFormatError(f"IAS evidence blob is not CBOR: {_one_line(exc, 100)}") from None
    if not isinstance(parts, dict) or set(parts) != {"body", "chain", "sig"}:
        raise IasFormatError("IAS evidence blob is not a map of exactly body, chain, sig")
    if not all(isinstance(v, bytes) and len(v) <= MAX_PART for v in parts.values()):
        raise IasFormatError("IAS evidence blob fields must be byte strings of bounded size")
    if pack_ias(parts["body"], parts["sig"], parts["chain"]) != blob:
        raise IasFormatError("IAS evidence blob is not in its canonical encoding")
    return parts["body"], parts["sig"], parts["chain"]


def looks_like_ias(blob: bytes) -> bool:
    return bytes(blob[: len(MAGIC)]) == MAGIC


def verify_ias_blob(blob: bytes, *, policy, at: datetime, root_der: bytes | None = None) -> Verdict:
    """``verify_ias`` on a ``pack_ias`` blob. Never raises."""
    try:
        body, sig, chain = unpack_ias(blob)
    except Exception as exc:
        try:
            when = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()
        except Exception:
            when = ""
        return Verdict(False, False, "malformed", _one_line(exc), VENDOR, when)
    return verify_ias(body, sig, chain, policy=policy, at=at, root_der=root_der)
