"""AWS Nitro Enclaves attestation documents, verified offline as of a given time.

A Nitro attestation document is a COSE_Sign1 (RFC 9052; CBOR tag 18 or the
bare array ``[protected, unprotected, payload, signature]``) signed with
ECDSA P-384 / SHA-384 (COSE alg -35, raw 96-byte r||s signature) by a leaf
certificate that chains, through the document's ``cabundle``, to the AWS
Nitro Enclaves Root G1. This module:

* pins that root (``roots/aws_nitro_root_g1.pem``, SHA-256 fingerprint
  ``641a0321...bb5b``) and requires ``cabundle[0]`` to be exactly it;
* walks root -> cabundle[1] -> ... -> cabundle[-1] -> certificate: issuer
  names and signatures, CA basic constraints with path lengths, key usage,
  no unknown critical extension, every certificate valid at ``at``;
* reads the document in one spelling only (up to the COSE tag and base64
  text, a final newline allowed): the COSE_Sign1 structure in its shortest
  CBOR encoding, base64 without whitespace or stray padding bits;
* requires the unprotected header to be empty, as AWS sends it: it is not
  signed, so anything in it would be attacker-chosen bytes riding along a
  genuine document;
* verifies the COSE signature over
  ``["Signature1", protected, b"", payload]`` with the leaf's P-384 key;
* checks the document's fields as AWS specifies them (module_id, digest
  "SHA384", timestamp, pcrs, certificate, cabundle, and the optional
  public_key / user_data / nonce of at most 1024 bytes each);
* then the timestamp: not more than ``CLOCK_SKEW`` (5 minutes: documents are
  fresh, made at the handshake on another machine's clock) after ``at``, else
  ``quote-from-future`` with ``genuine=False`` (the document did not exist as
  of ``at``), and not older than the policy allows (``quote-stale``, genuine);
* then Keyswitch's own checks on a genuine document: the enclave is not in
  debug mode (debug enclaves have an all-zero PCR0), and PCR0 is on the
  policy's measurement allow-list.

The time is always the caller's ``at``, never the wall clock. Nothing here
raises on bad input: every failure is a ``Verdict`` with a code. CRLs are not
consulted (offline); the Nitro chain's short-lived leaf (hours) is what limits
a stolen document's usefulness.

``report_data`` in the verdict is the document's ``user_data`` (where an
enclave puts its 64-byte binding, see ``node.attest.binding``); ``public_key``,
``nonce`` and ``user_data`` are all in ``details`` as hex.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from node.attest.verdict import Verdict

VENDOR = "aws-nitro"
ROOT_PEM = Path(__file__).with_name("roots") / "aws_nitro_root_g1.pem"
ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

COSE_SIGN1_TAG = 18
COSE_ALG_ES384 = -35
SIG_LEN = 96  # P-384 r || s
MAX_DOC_LEN = 64 * 1024  # real documents are ~8 KB
MAX_FIELD_LEN = 1024  # certificate, each cabundle entry, public_key, user_data, nonce
MAX_CABUNDLE = 16
PCR_LENS = (32, 48, 64)
MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z, the last time a datetime can hold
CLOCK_SKEW = 300.0  # seconds a document's timestamp may lie after ``at``

CODES = (
    "ok",
    "malformed",
    "untrusted-root",  # cabundle[0] is not the pinned root
    "bad-chain",  # a certificate is not issued by the one before it, or may not issue
    "expired",  # ``at`` is outside some certificate's validity window
    "bad-signature",  # the COSE signature does not verify with the leaf key
    "quote-from-future",
    "quote-stale",
    "debug-not-allowed",
    "measurement-not-allowed",
    "internal-error",  # the pinned root file was altered, or a bug; never bad input
)


class NitroParseError(ValueError):
    pass


class ChainError(ValueError):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class NitroDocument:
    protected: bytes  # the serialized protected header, exactly as signed
    payload: bytes  # the serialized payload, exactly as signed
    signature: bytes
    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: dict[int, bytes]
    certificate: bytes  # DER, the leaf
    cabundle: tuple[bytes, ...]  # DER, root first
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    @property
    def pcr0(self) -> bytes:
        return self.pcrs[0]

    @property
    def debug(self) -> bool:
        """Nitro marks an enclave started in debug mode with all-zero PCRs (0, 1, 2)."""
        return not any(self.pcr0)

    def sig_structure(self) -> bytes:
        import cbor2

        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])


# ---------------------------------------------------------------- parsing


def _decode_exactly(data: bytes, what: str):
    """One CBOR item that spans all of ``data`` (no trailing bytes)."""
    import cbor2

    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # CBORDecodeError, and whatever a semantic tag's decoder raises
        raise NitroParseError(f"{what} is not valid CBOR: {_one_line(exc)}") from None
    if fp.tell() != len(data):
        raise NitroParseError(f"{what} has {len(data) - fp.tell()} trailing bytes after its CBOR item")
    return obj


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _printable(text[0] if text else type(exc).__name__, 200)


def _printable(text: str, limit: int) -> str:
    """Attacker-chosen text (names in certificates, parser messages) made safe for a one-line reason."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def _raw(blob) -> bytes:
    """The COSE bytes: ``blob`` itself, or its decoding when it is base64 text of them."""
    if isinstance(blob, str):
        blob = blob.encode("utf-8", "replace")
    raw = bytes(blob)
    if raw[:1] in (b"\x84", b"\xd2") or len(raw) > MAX_DOC_LEN * 2:
        return raw
    text = raw[:-1] if raw.endswith(b"\n") else raw  # one final newline, as a file has; no other whitespace
    if not text:
        return raw
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return raw
    if base64.b64encode(decoded) != text:  # stray padding bits: another spelling of the same bytes
        return raw
    return decoded if decoded[:1] in (b"\x84", b"\xd2") else raw


def _cose_parts(raw: bytes, strict: bool = True) -> tuple[bytes, Mapping, bytes, bytes]:
    import cbor2

    if len(raw) > MAX_DOC_LEN:
        raise NitroParseError(f"document too large: {len(raw)} bytes > {MAX_DOC_LEN}")
    obj = _decode_exactly(raw, "document")
    if strict and cbor2.dumps(obj) != raw:  # indefinite lengths, over-long length or integer encodings
        raise NitroParseError("the COSE_Sign1 structure is not in its shortest CBOR encoding (as AWS writes it): "
                              "the signature does not cover these bytes")
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise NitroParseError(f"CBOR tag {obj.tag} is not COSE_Sign1 ({COSE_SIGN1_TAG})")
        obj = obj.value
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:  # cbor2 decodes tagged arrays as tuples
        raise NitroParseError("not a COSE_Sign1: expected an array of 4 items")
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping) \
            or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise NitroParseError("not a COSE_Sign1: items must be bstr, map, bstr, bstr")
    return protected, unprotected, payload, signature


def _opt_bytes(p: Mapping, key: str, lo: int) -> bytes | None:
    v = p.get(key)
    if v is None:
        return None
    if not isinstance(v, bytes) or not lo <= len(v) <= MAX_FIELD_LEN:
        raise NitroParseError(f"{key} must be null or {lo}..{MAX_FIELD_LEN} bytes")
    return v


def parse_document(blob: bytes) -> NitroDocument:
    """Decode a Nitro attestation document and check its fields' types and sizes (no cryptography)."""
    protected, unprotected, payload, signature = _cose_parts(_raw(blob))
    if len(unprotected):
        keys = ", ".join(_printable(repr(k), 40) for k in list(unprotected)[:8])
        raise NitroParseError(f"the COSE unprotected header must be empty (AWS sends {{}}), it has {len(unprotected)} "
                              f"entries ({keys}): the signature does not cover it")
    header = _decode_exactly(protected, "protected header")
    if not isinstance(header, Mapping) or header.get(1) != COSE_ALG_ES384:
        alg = header.get(1) if isinstance(header, Mapping) else None
        raise NitroParseError(f"COSE algorithm {alg!r} is not ES384 ({COSE_ALG_ES384})")
    if len(signature) != SIG_LEN:
        raise NitroParseError(f"signature is {len(signature)} bytes, not {SIG_LEN} (P-384 r||s)")
    p = _decode_exactly(payload, "payload")
    if not isinstance(p, Mapping):
        raise NitroParseError("payload is not a CBOR map")

    module_id, digest, ts = p.get("module_id"), p.get("digest"), p.get("timestamp")
    if not isinstance(module_id, str) or not module_id:
        raise NitroParseError("module_id missing or not a non-empty text string")
    if digest != "SHA384":
        raise NitroParseError(f"digest {digest!r} is not 'SHA384'")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts <= MAX_TIMESTAMP_MS:
        raise NitroParseError("timestamp missing or not a positive integer (ms since the epoch)")
    pcrs = p.get("pcrs")
    if not isinstance(pcrs, Mapping) or not 1 <= len(pcrs) <= 32:
        raise NitroParseError("pcrs missing or not a map of 1..32 entries")
    for k, v in pcrs.items():
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < 32:
            raise NitroParseError(f"PCR index {k!r} is not an integer in 0..31")
        if not isinstance(v, bytes) or len(v) not in PCR_LENS:
            raise NitroParseError(f"PCR{k} is not a 32/48/64-byte string")
    if 0 not in pcrs:
        raise NitroParseError("PCR0 (the enclave image measurement) is missing")
    if len(pcrs[0]) != 48:
        raise NitroParseError(f"PCR0 is {len(pcrs[0])} bytes, not 48 (SHA-384)")
    cert = p.get("certificate")
    if not isinstance(cert, bytes) or not 1 <= len(cert) <= MAX_FIELD_LEN:
        raise NitroParseError(f"certificate missing or not 1..{MAX_FIELD_LEN} bytes")
    bundle = p.get("cabundle")
    if not isinstance(bundle, (list, tuple)) or not 1 <= len(bundle) <= MAX_CABUNDLE:
        raise NitroParseError(f"cabundle missing or not a list of 1..{MAX_CABUNDLE} certificates")
    if not all(isinstance(c, bytes) and 1 <= len(c) <= MAX_FIELD_LEN for c in bundle):
        raise NitroParseError(f"cabundle entries must be 1..{MAX_FIELD_LEN}-byte certificates")
    return NitroDocument(
        protected=protected, payload=payload, signature=signature, module_id=module_id, digest=digest,
        timestamp_ms=ts, pcrs=dict(sorted(pcrs.items())), certificate=cert, cabundle=tuple(bundle),
        public_key=_opt_bytes(p, "public_key", 1), user_data=_opt_bytes(p, "user_data", 0),
        nonce=_opt_bytes(p, "nonce", 0),
    )


def looks_like_nitro(blob: bytes) -> bool:
    """A COSE_Sign1 (raw or base64) whose payload is a CBOR map: format detection, not verification."""
    try:
        _protected, _u, payload, _s = _cose_parts(_raw(blob), strict=False)  # parse_document is strict
        return payload[:1] != b"" and 0xA0 <= payload[0] <= 0xBF
    except Exception:
        return False


# ---------------------------------------------------------------- chain


@functools.lru_cache(maxsize=1)
def pinned_root_der() -> bytes:
    from node.attest.evidence.roots import load_pinned

    return load_pinned(ROOT_PEM, ROOT_SHA256, "AWS Nitro Enclaves Root G1")


def _cn(cert) -> str:
    from cryptography.x509.oid import NameOID

    try:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return _printable(str(names[0].value) if names else cert.subject.rfc4514_string(), 80)
    except Exception:
        return "?"


def check_chain(certificate: bytes, cabundle: Sequence[bytes], *, at: datetime, root_der: bytes | None = None):
    """Verify root -> cabundle[1:] -> certificate as of ``at``; return the leaf certificate.

    Raises ``ChainError(code, reason)``; ``root_der`` defaults to the pinned AWS root.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtensionOID

    allowed_critical = (ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE)
    root_der = pinned_root_der() if root_der is None else root_der
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    if not cabundle:
        raise ChainError("malformed", "empty cabundle")
    if bytes(cabundle[0]) != root_der:
        raise ChainError("untrusted-root", "cabundle[0] is not the pinned AWS Nitro Enclaves Root G1 "
                                           f"(sha256 {hashlib.sha256(bytes(cabundle[0])).hexdigest()[:16]}...)")
    ders = [bytes(c) for c in cabundle] + [bytes(certificate)]
    certs = []
    for i, der in enumerate(ders):
        name = "certificate (leaf)" if i == len(ders) - 1 else f"cabundle[{i}]"
        try:
            cert = x509.load_der_x509_certificate(der)
            exts = {e.oid: e for e in cert.extensions}  # parsed lazily: malformed extensions raise here
        except Exception as exc:
            raise ChainError("malformed", f"{name} is not a DER X.509 certificate: {_one_line(exc)}") from None
        for e in exts.values():
            if e.critical and e.oid not in allowed_critical:
                raise ChainError("bad-chain", f"{name} has an unsupported critical extension {e.oid.dotted_string}")
        certs.append((name, cert, exts))

    n = len(certs)
    for i in range(n - 1):
        iname, issuer, iexts = certs[i]
        sname, subject, _ = certs[i + 1]
        bc = iexts.get(ExtensionOID.BASIC_CONSTRAINTS)
        if bc is None or not bc.value.ca:
            raise ChainError("bad-chain", f"{iname} ({_cn(issuer)}) is not a CA but issues {sname}")
        below = n - 2 - i  # CA certificates below this issuer, the leaf not counted
        if bc.value.path_length is not None and below > bc.value.path_length:
            raise ChainError("bad-chain", f"{iname} allows {bc.value.path_length} CAs below it, the chain has {below}")
        ku = iexts.get(ExtensionOID.KEY_USAGE)
        if ku is not None and not ku.value.key_cert_sign:
            raise ChainError("bad-chain", f"{iname} ({_cn(issuer)}) may not sign certificates")
        try:
            subject.verify_directly_issued_by(issuer)
        except InvalidSignature:
            raise ChainError("bad-chain", f"{sname} ({_cn(subject)}): signature by {iname} does not verify") from None
        except (ValueError, TypeError) as exc:
            raise ChainError("bad-chain", f"{sname} ({_cn(subject)}) is not issued by {iname} ({_cn(issuer)}): "
                                          f"{_one_line(exc)}") from None

    lname, leaf, lexts = certs[-1]
    ku = lexts.get(ExtensionOID.KEY_USAGE)
    if ku is not None and not ku.value.digital_signature:
        raise ChainError("bad-chain", "the leaf certificate may not sign (no digitalSignature key usage)")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ChainError("malformed", "the leaf certificate's key is not an ECDSA P-384 key")

    for name, cert, _ in certs:
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        if at < nb:
            raise ChainError("expired", f"{name} ({_cn(cert)}) is not valid until {nb.isoformat()}, "
                                        f"after {at.isoformat()}")
        if at > na:
            raise ChainError("expired", f"{name} ({_cn(cert)}) expired at {na.isoformat()}, "
                                        f"before {at.isoformat()}")
    return leaf


def check_signature(doc: NitroDocument, leaf) -> bool:
    """The COSE_Sign1 signature (ES384) over the Sig_structure, by the leaf certificate's key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    r = int.from_bytes(doc.signature[:48], "big")
    s = int.from_bytes(doc.signature[48:], "big")
    if not (0 < r and 0 < s):
        return False
    try:
        leaf.public_key().verify(encode_dss_signature(r, s), doc.sig_structure(), ec.ECDSA(hashes.SHA384()))
        return True
    except InvalidSignature:
        return False


# ---------------------------------------------------------------- verdict


def _hex(b: bytes | None) -> str:
    return "" if b is None else b.hex()


def verify_nitro(blob: bytes, *, policy, at: datetime, root_der: bytes | None = None) -> Verdict:
    """Verify a Nitro attestation document as of ``at`` against ``policy``. Never raises.

    ``root_der`` replaces the pinned AWS root (tests only).
    """
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    when = at.isoformat()
    try:
        return _verify(blob, policy=policy, at=at, when=when, root_der=root_der)
    except Exception as exc:  # a bug (or an altered root file), never an answer to bad input
        return Verdict(False, False, "internal-error", f"{type(exc).__name__}: {_one_line(exc)}", VENDOR, when)


def _verify(blob, *, policy, at: datetime, when: str, root_der: bytes | None) -> Verdict:
    try:
        doc = parse_document(blob)
    except NitroParseError as exc:
        return Verdict(False, False, "malformed", _printable(f"malformed Nitro attestation document: {exc}", 400),
                       VENDOR, when)

    ts = doc.timestamp_ms / 1000.0
    facts = dict(
        vendor=VENDOR, verified_at=when, measurement=doc.pcr0.hex(), debug=doc.debug,
        report_data=_hex(doc.user_data),
        details={
            "module_id": doc.module_id,
            "timestamp_ms": doc.timestamp_ms,
            "timestamp": datetime.fromtimestamp(ts, timezone.utc).isoformat(),
            "digest": doc.digest,
            "pcrs": {str(k): v.hex() for k, v in doc.pcrs.items()},
            "user_data": _hex(doc.user_data),
            "nonce": _hex(doc.nonce),
            "public_key": _hex(doc.public_key),
            "chain_length": len(doc.cabundle) + 1,
        },
    )

    def refuse(code: str, reason: str, genuine: bool = False, **kw) -> Verdict:
        return Verdict(False, genuine, code, _printable(reason, 400), **{**facts, **kw})

    try:
        leaf = check_chain(doc.certificate, doc.cabundle, at=at, root_der=root_der)
    except ChainError as exc:
        return refuse(exc.code, exc.reason)
    if not check_signature(doc, leaf):
        return refuse("bad-signature", "the COSE_Sign1 signature does not verify with the leaf certificate's key")

    # genuine from here on: AWS hardware signed exactly this document
    now = at.timestamp()
    if ts > now + CLOCK_SKEW:  # signed after ``at`` (beyond the skew): not genuine as of ``at`` (exit 4)
        return refuse("quote-from-future", f"document timestamp {facts['details']['timestamp']} is more than "
                                           f"{CLOCK_SKEW:.0f} s after the verification time {when}")
    if now - ts > policy.max_quote_age:
        return refuse("quote-stale", f"document is {now - ts:.0f} s old, over the policy's "
                                     f"{policy.max_quote_age:.0f} s", genuine=True)
    if doc.debug and not policy.allow_debug:
        return refuse("debug-not-allowed", "debug-mode enclave (PCR0 all zero): its memory is readable by the "
                                           "parent instance, never trusted", genuine=True)
    pcr0 = doc.pcr0.hex()
    if not policy.allows_measurement(pcr0):
        return refuse("measurement-not-allowed", f"genuine AWS Nitro document, but PCR0 {pcr0[:16]}... is not an "
                                                 "allowed Keyswitch build", genuine=True, allowed_build=False)
    return Verdict(True, True, "ok", "genuine AWS Nitro document of an allowed build", allowed_build=True, **facts)
