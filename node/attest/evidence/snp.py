"""AMD SEV-SNP attestation reports, verified offline as of a given time.

``verify_snp(blob, policy=..., at=..., vcek=..., chain=...)`` never raises;
every answer is a ``Verdict`` (vendor ``amd-sev-snp``) with one of these codes:

=============================  ========  ===========================================
code                           genuine   meaning
=============================  ========  ===========================================
``malformed``                  False     not a 1184-byte SNP report of version 2..5,
                                         or a signature algorithm other than
                                         ECDSA P-384 / SHA-384, or non-zero bytes
                                         in the unsigned signature padding
``unsupported-signing-key``    False     signed by a VLEK (or no key), not a VCEK
``collateral-missing``         False     no VCEK certificate, or no ASK chain
``bad-collateral``             False     VCEK / chain unreadable, no ASK for the
                                         VCEK's issuer, or the VCEK key is not P-384
``untrusted-root``             False     the ASK is not signed by the pinned ARK,
                                         or the chain carries a different ARK
``bad-signature``              False     the VCEK is not signed by the ASK, or the
                                         report signature fails with the VCEK key
``expired``                    False     ``at`` is outside the validity window of
                                         the VCEK, the ASK or the ARK (before or after)
``vcek-mismatch``              False     the VCEK's TCB or hwID extension differs
                                         from the report's reported_tcb / chip_id
``debug-not-allowed``          True      guest policy DEBUG bit (19) set
``measurement-not-allowed``    True      genuine, but not an allowed Keyswitch build
``ok``                         True      trusted (ok=True)
=============================  ========  ===========================================

What is checked:

* the report layout (AMD SEV-SNP ABI spec, ATTESTATION_REPORT): 0x4A0 bytes,
  version 2..5, signature algorithm 1 (ECDSA P-384 with SHA-384), signing key
  VCEK (bits 4:2 of the word at 0x48);
* the report signature at 0x2A0 (R and S, 72 bytes each, little-endian) over
  bytes [0, 0x2A0), with the VCEK's P-384 public key; the bytes no signature
  covers must be zero, as the firmware writes them: R's and S's zero-extension
  (bytes 48..71 of each) and the 368 reserved bytes after S (``malformed``
  otherwise). High S is accepted: AMD's firmware does not normalise S (the
  shared sample's S is high);
* the chain VCEK <- ASK <- ARK: each link RSASSA-PSS with SHA-384, MGF1-SHA-384
  and a 48-byte salt (AMD's parameters; other parameters are refused), the ARK
  self-signed and byte-identical to the pinned Milan ARK
  (``roots/amd_milan_ark.pem``, SHA-256 fingerprint ``69d063b4...0bcd``,
  checked on load);
* each certificate's validity window at ``at`` (the caller's time, never the
  wall clock);
* the VCEK's AMD extensions, when present: blSPL / teeSPL / snpSPL / ucodeSPL
  (1.3.6.1.4.1.3704.1.3.{1,2,3,8}) must equal reported_tcb, and hwID
  (1.3.6.1.4.1.3704.1.4) must equal chip_id unless the report masks chip_id;
* Keyswitch's policy: a guest whose policy allows DEBUG is refused unless
  ``policy.allow_debug`` (checked before the measurement, as in ``dcap.py``, so
  a debug guest of an unknown build says ``debug-not-allowed``), then the
  MEASUREMENT allow-list (``policy.allows_measurement``).

What is NOT checked:

* revocation (AMD's KDS CRL for the ASK) — there is no CRL in the collateral;
* a minimum TCB (no SVN floor; reported/current/committed/launch TCB are put
  in ``details`` for a later TCB policy; ``policy.accept_tcb`` is Intel's
  status vocabulary and does not apply, so ``tcb_status`` stays empty);
* VMPL, guest SVN, ID / author key digests, host_data, family/image ids, SMT
  and the other guest-policy bits (all in ``details``);
* freshness: an SNP report has no timestamp; binding and freshness come from
  report_data, which the caller checks;
* processor families other than Milan: only the Milan ARK is pinned, and the
  TCB_VERSION layout read is Milan/Genoa's (boot loader byte 0, TEE byte 1,
  SNP byte 6, microcode byte 7); Turin's differs. VLEK-signed reports are
  refused rather than verified.
* the key-usage / basic-constraints extensions of the ASK and VCEK: AMD is
  the only signer under the pinned ARK, so the signatures are what is relied on.

Note: AMD's VCEKs have serial number 0, which RFC 5280 forbids;
``cryptography`` loads them with a deprecation warning (silenced here) and may
refuse them in a future release, which would then show as ``bad-collateral``.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from node.attest.verdict import Verdict

VENDOR = "amd-sev-snp"
ROOT_PEM = Path(__file__).with_name("roots") / "amd_milan_ark.pem"
ROOT_SHA256 = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"

REPORT_LEN = 0x4A0  # 1184
SIGNED_LEN = 0x2A0  # the signature covers bytes [0, 0x2A0)
SIG_COMPONENT_LEN = 72  # R and S, little-endian, zero-padded
P384_LEN = 48  # bytes of R and S that may be non-zero
VERSIONS = range(2, 6)
SIG_ALGO_ECDSA_P384_SHA384 = 1

# guest POLICY bits (ABI spec, "Guest Policy")
POLICY_SMT = 1 << 16
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20

SIGNING_KEY_VCEK = 0

_OID_AMD = "1.3.6.1.4.1.3704.1."
_OID_TCB = {"bootloader": _OID_AMD + "3.1", "tee": _OID_AMD + "3.2", "snp": _OID_AMD + "3.3",
            "microcode": _OID_AMD + "3.8"}
_OID_HWID = _OID_AMD + "4"
_OID_PRODUCT = _OID_AMD + "2"


class SnpParseError(ValueError):
    pass


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION (Milan/Genoa layout): SPLs of each firmware component."""

    raw: bytes  # the 8 bytes as in the report
    bootloader: int
    tee: int
    snp: int
    microcode: int

    @classmethod
    def from_bytes(cls, b: bytes) -> "TcbVersion":
        return cls(bytes(b), b[0], b[1], b[6], b[7])

    def as_dict(self) -> dict[str, Any]:
        return {"raw": self.raw.hex(), "bootloader": self.bootloader, "tee": self.tee, "snp": self.snp,
                "microcode": self.microcode}


@dataclass(frozen=True)
class ParsedSnpReport:
    version: int
    guest_svn: int
    policy: int  # guest policy (u64)
    debug: bool  # policy bit 19: the guest may be debugged (its memory is readable)
    family_id: bytes  # 16
    image_id: bytes  # 16
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    author_key_en: bool
    mask_chip_id: bool
    signing_key: int  # 0 VCEK, 1 VLEK, 7 none (reserved, so 0, before version 3)
    report_data: bytes  # 64
    measurement: bytes  # 48
    host_data: bytes  # 32
    id_key_digest: bytes  # 48
    author_key_digest: bytes  # 48
    report_id: bytes  # 32
    report_id_ma: bytes  # 32
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None  # version 3+
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes  # 64
    committed_tcb: TcbVersion
    current_version: str  # firmware major.minor.build
    committed_version: str
    launch_tcb: TcbVersion
    signature_r: bytes  # 72, little-endian
    signature_s: bytes  # 72, little-endian
    signed: bytes  # bytes [0, 0x2A0)

    @property
    def r(self) -> int:
        return int.from_bytes(self.signature_r, "little")

    @property
    def s(self) -> int:
        return int.from_bytes(self.signature_s, "little")

    def details(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": self.version, "guest_svn": self.guest_svn, "policy": f"0x{self.policy:x}",
            "policy_smt": bool(self.policy & POLICY_SMT), "policy_migrate_ma": bool(self.policy & POLICY_MIGRATE_MA),
            "policy_debug": self.debug, "policy_single_socket": bool(self.policy & POLICY_SINGLE_SOCKET),
            "family_id": self.family_id.hex(), "image_id": self.image_id.hex(), "vmpl": self.vmpl,
            "signature_algo": self.signature_algo, "platform_info": f"0x{self.platform_info:x}",
            "author_key_en": self.author_key_en, "mask_chip_id": self.mask_chip_id, "signing_key": self.signing_key,
            "host_data": self.host_data.hex(), "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(), "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(), "chip_id": self.chip_id.hex(),
            "current_tcb": self.current_tcb.as_dict(), "reported_tcb": self.reported_tcb.as_dict(),
            "committed_tcb": self.committed_tcb.as_dict(), "launch_tcb": self.launch_tcb.as_dict(),
            "current_version": self.current_version, "committed_version": self.committed_version,
        }
        if self.cpuid_fam_id is not None:
            d.update(cpuid_fam_id=self.cpuid_fam_id, cpuid_mod_id=self.cpuid_mod_id, cpuid_step=self.cpuid_step)
        return d


def looks_like_snp(blob: bytes) -> bool:
    """Format detection: 1184 bytes, version 2..5, signature algorithm ECDSA P-384."""
    try:
        if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) != REPORT_LEN:
            return False
        version, = struct.unpack_from("<I", blob, 0)
        algo, = struct.unpack_from("<I", blob, 0x34)
        return version in VERSIONS and algo == SIG_ALGO_ECDSA_P384_SHA384
    except Exception:
        return False


def parse_snp_report(blob: bytes) -> ParsedSnpReport:
    """Read an ATTESTATION_REPORT (AMD SEV-SNP ABI spec layout). Raises ``SnpParseError``."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise SnpParseError(f"report must be bytes, not {type(blob).__name__}")
    b = bytes(blob)
    if len(b) != REPORT_LEN:
        raise SnpParseError(f"an SNP report is {REPORT_LEN} bytes, not {len(b)}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", b, 0x00)
    if version not in VERSIONS:
        raise SnpParseError(f"SNP report version {version} not supported (2..5 are)")
    sig_area = b[SIGNED_LEN:]
    for name, start in (("R", 0), ("S", SIG_COMPONENT_LEN)):
        lo, hi = start + P384_LEN, start + SIG_COMPONENT_LEN
        if any(sig_area[lo:hi]):
            raise SnpParseError(f"signature {name} is not zero-extended: bytes {SIGNED_LEN + lo:#x}.."
                                f"{SIGNED_LEN + hi - 1:#x} must be zero for a P-384 value")
    reserved = sig_area[2 * SIG_COMPONENT_LEN:]
    if any(reserved):
        first = SIGNED_LEN + 2 * SIG_COMPONENT_LEN + next(i for i, x in enumerate(reserved) if x)
        raise SnpParseError(f"reserved bytes after the signature are not zero (first at {first:#x}): "
                            "no signature covers them")
    vmpl, sig_algo = struct.unpack_from("<II", b, 0x30)
    platform_info, flags = struct.unpack_from("<QI", b, 0x40)
    tcb = lambda off: TcbVersion.from_bytes(b[off:off + 8])  # noqa: E731
    ver = lambda off: f"{b[off + 2]}.{b[off + 1]}.{b[off]}"  # noqa: E731  (build, minor, major)
    v3 = version >= 3
    return ParsedSnpReport(
        version=version, guest_svn=guest_svn, policy=policy, debug=bool(policy & POLICY_DEBUG),
        family_id=b[0x10:0x20], image_id=b[0x20:0x30], vmpl=vmpl, signature_algo=sig_algo,
        current_tcb=tcb(0x38), platform_info=platform_info,
        author_key_en=bool(flags & 1), mask_chip_id=bool(flags & 2), signing_key=(flags >> 2) & 0x7,
        report_data=b[0x50:0x90], measurement=b[0x90:0xC0], host_data=b[0xC0:0xE0],
        id_key_digest=b[0xE0:0x110], author_key_digest=b[0x110:0x140], report_id=b[0x140:0x160],
        report_id_ma=b[0x160:0x180], reported_tcb=tcb(0x180),
        cpuid_fam_id=b[0x188] if v3 else None, cpuid_mod_id=b[0x189] if v3 else None,
        cpuid_step=b[0x18A] if v3 else None,
        chip_id=b[0x1A0:0x1E0], committed_tcb=tcb(0x1E0), current_version=ver(0x1E8),
        committed_version=ver(0x1EC), launch_tcb=tcb(0x1F0),
        signature_r=b[SIGNED_LEN:SIGNED_LEN + SIG_COMPONENT_LEN],
        signature_s=b[SIGNED_LEN + SIG_COMPONENT_LEN:SIGNED_LEN + 2 * SIG_COMPONENT_LEN],
        signed=b[:SIGNED_LEN],
    )


def pinned_root_der() -> bytes:
    """The pinned AMD Milan ARK, DER. Raises ``RuntimeError`` if the file is not that certificate."""
    from node.attest.evidence.roots import load_pinned

    return load_pinned(ROOT_PEM, ROOT_SHA256, "AMD Milan ARK")


def _load_certs(data: bytes) -> list:
    """One or more certificates, PEM (any number) or DER (one)."""
    from cryptography import x509

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected bytes, not {type(data).__name__}")
    data = bytes(data)
    with warnings.catch_warnings():  # AMD's VCEKs have serial number 0 (see the module docstring)
        warnings.simplefilter("ignore")
        if b"-----BEGIN CERTIFICATE-----" in data:
            return list(x509.load_pem_x509_certificates(data))
        return [x509.load_der_x509_certificate(data)]


def _pss_ok(cert, issuer_public_key) -> bool:
    """``cert`` is signed by ``issuer_public_key`` with AMD's RSASSA-PSS parameters."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import SignatureAlgorithmOID

    if not isinstance(issuer_public_key, rsa.RSAPublicKey):
        return False
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        return False
    try:
        issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes,
                                 padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
        return True
    except InvalidSignature:
        return False


def _der_int(value: bytes) -> int | None:
    """A DER INTEGER (the form of AMD's SPL extensions), or None."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[1] > 8:
        return None
    return int.from_bytes(value[2:], "big", signed=True)


def _amd_extensions(cert) -> dict[str, bytes]:
    from cryptography import x509

    out = {}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension) and ext.oid.dotted_string.startswith(_OID_AMD):
            out[ext.oid.dotted_string] = ext.value.value
    return out


def _vcek_mismatch(parsed: ParsedSnpReport, vcek) -> str | None:
    """Why the VCEK's TCB / hwID extensions contradict the report, or None."""
    exts = _amd_extensions(vcek)
    for name, oid in _OID_TCB.items():
        if oid in exts:
            got = _der_int(exts[oid])
            want = getattr(parsed.reported_tcb, name)
            if got != want:
                return f"VCEK {name} SPL {got} != reported_tcb {name} {want}"
    hwid = exts.get(_OID_HWID)
    if hwid is not None and not parsed.mask_chip_id:
        if len(hwid) == 66 and hwid[:2] == b"\x04\x40":  # tolerate an OCTET STRING wrapping
            hwid = hwid[2:]
        if hwid != parsed.chip_id:
            return "VCEK hwID is not the report's chip_id"
    return None


def _window(cert) -> tuple[datetime, datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _cn(cert) -> str:
    from cryptography.x509.oid import NameOID

    try:
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    except Exception:
        return cert.subject.rfc4514_string()


def verify_snp(blob: bytes, *, policy, at: datetime, vcek: bytes | None = None, chain: bytes | None = None,
               root_der: bytes | None = None) -> Verdict:
    """Verify an SEV-SNP report with its VCEK and ASK(+ARK) chain as of ``at``. Never raises.

    ``vcek``: the VCEK certificate (DER or PEM). ``chain``: PEM with the ASK
    (AMD KDS ``cert_chain``: ASK then ARK; the ARK is optional, but if present
    it must be the pinned one). ``root_der`` replaces the pinned ARK (tests only).
    """
    try:
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        when = at.isoformat()
    except Exception as exc:
        return Verdict(False, False, "malformed", f"bad verification time {at!r}: {exc}", VENDOR, str(at))
    try:
        parsed = parse_snp_report(blob)
    except Exception as exc:
        return Verdict(False, False, "malformed", str(exc) or type(exc).__name__, VENDOR, when)
    try:
        return _verify_parsed(parsed, policy=policy, at=at, when=when, vcek=vcek, chain=chain, root_der=root_der)
    except Exception as exc:  # a verifier bug or unforeseen input must not become a crash of the node
        return Verdict(False, False, "internal-error", f"{type(exc).__name__}: {exc}", VENDOR, when,
                       measurement=parsed.measurement.hex(), debug=parsed.debug,
                       report_data=parsed.report_data.hex())


def _verify_parsed(parsed: ParsedSnpReport, *, policy, at: datetime, when: str, vcek, chain,
                   root_der) -> Verdict:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.serialization import Encoding

    base = dict(vendor=VENDOR, verified_at=when, measurement=parsed.measurement.hex(), debug=parsed.debug,
                report_data=parsed.report_data.hex(), device_id=parsed.chip_id.hex(), details=parsed.details())

    def refuse(code: str, reason: str, genuine: bool = False, **kw) -> Verdict:
        return Verdict(False, genuine, code, reason, **{**base, **kw})

    if parsed.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        return refuse("malformed", f"signature algorithm {parsed.signature_algo} is not 1 (ECDSA P-384 SHA-384)")
    if parsed.signing_key != SIGNING_KEY_VCEK:
        return refuse("unsupported-signing-key", f"report signed with key kind {parsed.signing_key} (1 = VLEK); "
                      "only VCEK-signed reports are verified")
    if vcek is None:
        return refuse("collateral-missing", "SNP reports are verified offline: give the VCEK certificate "
                      "(AMD KDS /vcek/v1/Milan/<chip_id>)")
    if chain is None:
        return refuse("collateral-missing", "SNP reports are verified offline: give the ASK chain "
                      "(AMD KDS /vcek/v1/Milan/cert_chain)")
    try:
        vcek_certs = _load_certs(vcek)
        chain_certs = _load_certs(chain)
    except Exception as exc:
        return refuse("bad-collateral", f"VCEK or chain is not an X.509 certificate (PEM/DER): "
                      f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if len(vcek_certs) != 1:
        return refuse("bad-collateral", f"expected one VCEK certificate, got {len(vcek_certs)}")
    leaf = vcek_certs[0]
    try:
        root = x509.load_der_x509_certificate(pinned_root_der() if root_der is None else bytes(root_der))
    except Exception as exc:
        return refuse("untrusted-root", f"the pinned AMD root cannot be loaded: {exc}")
    root_bytes = root.public_bytes(Encoding.DER)

    # the chain: any self-signed certificate in it must be the pinned ARK; the ASK is the VCEK's issuer
    asks = []
    for c in chain_certs:
        if c.subject == c.issuer:
            if c.public_bytes(Encoding.DER) != root_bytes:
                return refuse("untrusted-root", f"the chain's root {_cn(c)!r} is not the pinned AMD Milan ARK")
        elif c.subject == leaf.issuer:
            asks.append(c)
    if not asks:
        return refuse("bad-collateral", f"the chain has no certificate for the VCEK's issuer "
                      f"{leaf.issuer.rfc4514_string()!r}")
    ask = asks[0]
    if ask.issuer != root.subject or not _pss_ok(ask, root.public_key()):
        return refuse("untrusted-root", f"the ASK {_cn(ask)!r} is not signed by the pinned AMD Milan ARK")
    if not _pss_ok(root, root.public_key()):
        return refuse("untrusted-root", "the pinned root's self-signature does not verify")
    if not _pss_ok(leaf, ask.public_key()):
        return refuse("bad-signature", f"the VCEK is not signed by the ASK {_cn(ask)!r} (RSASSA-PSS SHA-384)")

    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        return refuse("bad-collateral", "the VCEK's key is not ECDSA P-384")
    try:
        key.verify(encode_dss_signature(parsed.r, parsed.s), parsed.signed, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        return refuse("bad-signature", "the report signature does not verify with the VCEK (ECDSA P-384 SHA-384)")

    for label, c in (("VCEK", leaf), ("ASK", ask), ("ARK", root)):
        start, end = _window(c)
        if not start <= at <= end:
            state = "not yet valid" if at < start else "expired"
            return refuse("expired", f"outside the validity window: {label} {_cn(c)!r} is {state} at {when} "
                          f"(valid {start.isoformat()} to {end.isoformat()})")

    mismatch = _vcek_mismatch(parsed, leaf)
    if mismatch:
        return refuse("vcek-mismatch", f"the VCEK was not issued for this report's TCB / chip: {mismatch}")

    exts = _amd_extensions(leaf)
    product = exts.get(_OID_PRODUCT, b"")
    fields = dict(base)
    fields["details"] = {**base["details"], "vcek_product": product[2:].decode("ascii", "replace") if product else "",
                         "vcek_valid": [d.isoformat() for d in _window(leaf)]}
    if parsed.debug and not policy.allow_debug:
        return Verdict(False, True, "debug-not-allowed",
                       "guest policy allows DEBUG: its memory is readable by the host, never trusted", **fields)
    if not policy.allows_measurement(parsed.measurement.hex()):
        return Verdict(False, True, "measurement-not-allowed",
                       f"genuine {VENDOR} report, but measurement {parsed.measurement.hex()[:16]}... "
                       "is not an allowed Keyswitch build", allowed_build=False, **fields)
    return Verdict(True, True, "ok", "genuine AMD SEV-SNP report of an allowed build", allowed_build=True, **fields)
