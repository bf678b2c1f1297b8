"""AMD SEV-SNP reports (../shared/testdata/attestation/amd-sev-snp), verified as of 2023-01-01.

The real sample's guest policy is 0xb0000, so DEBUG (bit 19) is *allowed*:
it is genuine, but a production policy refuses it ("debug-not-allowed"). The
non-debug "ok" path and the VCEK-extension checks are exercised with a
throwaway AMD-shaped chain (RSA ARK -> RSA ASK -> P-384 VCEK, RSASSA-PSS
SHA-384) that re-signs edited copies of the sample; that root is passed in
place of the pinned one.
"""

import dataclasses
import datetime as dt
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings, strategies as st

from node.attest.evidence import snp
from node.attest.evidence.snp import looks_like_snp, parse_snp_report, verify_snp
from node.attest.policy import AttestationPolicy

ROOT = Path(__file__).resolve().parents[2]
D = ROOT.parent / "shared" / "testdata" / "attestation" / "amd-sev-snp"
REPORT, VCEK, CHAIN = D / "attestation.bin", D / "vcek.testcer", D / "milan.testcer"
AT = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
MEASUREMENT = ("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
               "6bdf8a9ece31a5a608eb0cf2e4872b01")
UTC = dt.timezone.utc

pytestmark = pytest.mark.skipif(not REPORT.exists(), reason=f"SEV-SNP samples not found at {D}")


def policy(*allowed, allow_debug=False):
    return dataclasses.replace(AttestationPolicy.dev().with_measurements(*allowed), allow_debug=allow_debug)


@pytest.fixture(scope="module")
def sample():
    return REPORT.read_bytes(), VCEK.read_bytes(), CHAIN.read_bytes()


def verify(blob, vcek=None, chain=None, at=AT, pol=None, **kw):
    return verify_snp(blob, policy=pol or policy(), at=at, vcek=vcek, chain=chain, **kw)


# --- the real sample --------------------------------------------------------------------------


def test_the_parser_reads_the_readme_values(sample):
    p = parse_snp_report(sample[0])
    assert p.version == 2 and p.policy == 0xB0000 and p.debug is True
    assert p.vmpl == 0 and p.signature_algo == 1 and p.guest_svn == 0 and p.signing_key == 0
    assert p.measurement.hex() == MEASUREMENT and len(p.measurement) == 48
    assert p.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)
    assert p.reported_tcb.raw.hex() == "0200000000000544"
    assert (p.reported_tcb.bootloader, p.reported_tcb.tee, p.reported_tcb.snp, p.reported_tcb.microcode) == \
        (2, 0, 5, 0x44)
    assert p.chip_id.hex().startswith("3ac3fe21") and p.chip_id.hex().endswith("006b5d") and len(p.chip_id) == 64
    assert len(p.signature_r) == len(p.signature_s) == 72 and p.r > 0 and p.s > 0
    assert p.signed == sample[0][:0x2A0] and p.cpuid_fam_id is None  # a version 2 report has no CPUID fields


def test_the_genuine_sample_is_genuine_but_a_debug_guest(sample):
    v = verify(*sample, pol=policy(MEASUREMENT))
    assert v.genuine and not v.ok and v.code == "debug-not-allowed", v
    assert v.vendor == "amd-sev-snp" and v.measurement == MEASUREMENT and v.debug is True
    assert bytes.fromhex(v.report_data) == bytes([1, 2, 3, 4, 5]) + bytes(59)
    assert v.device_id == v.details["chip_id"] and v.device_id.startswith("3ac3fe21")
    assert v.details["reported_tcb"]["raw"] == "0200000000000544" and v.details["policy"] == "0xb0000"
    assert v.details["vmpl"] == 0 and v.details["vcek_product"] == "Milan-B0"
    assert v.verified_at == AT.isoformat() and v.headline().startswith("GENUINE, NOT TRUSTED")


def test_allowing_debug_then_the_measurement_decides(sample):
    v = verify(*sample, pol=policy(MEASUREMENT, allow_debug=True))
    assert v.ok and v.genuine and v.code == "ok" and v.allowed_build is True
    other = verify(*sample, pol=policy(allow_debug=True))
    assert other.genuine and not other.ok and other.code == "measurement-not-allowed"
    assert other.allowed_build is False


def test_the_chain_may_omit_the_ark_and_a_pem_vcek_works(sample):
    blob, vcek, chain = sample
    ask_only = x509.load_pem_x509_certificates(chain)[0].public_bytes(Encoding.PEM)
    vcek_pem = ssl.DER_cert_to_PEM_cert(vcek).encode()  # (cryptography warns on the VCEK's serial 0)
    v = verify(blob, vcek_pem, ask_only, pol=policy(MEASUREMENT, allow_debug=True))
    assert v.ok, v


@pytest.mark.parametrize("offset", [0x00, 0x04, 0x48, 0x50, 0x90, 0xBF, 0x180, 0x1A0, 0x1E8, 0x29F, 0x2A0, 0x2E8])
def test_a_flipped_byte_in_the_signed_part_or_the_signature_is_refused(sample, offset):
    q = bytearray(sample[0])
    q[offset] ^= 0x01
    v = verify(bytes(q), *sample[1:], pol=policy(MEASUREMENT, allow_debug=True))
    assert not v.genuine and not v.ok and v.code == "bad-signature", v


def test_a_changed_signature_algorithm_is_malformed(sample):
    q = bytearray(sample[0])
    q[0x34] = 2
    v = verify(bytes(q), *sample[1:])
    assert v.code == "malformed" and not v.genuine and not looks_like_snp(bytes(q))


def test_clearing_the_debug_bit_breaks_the_signature(sample):
    """The sample *has* DEBUG set; flipping bit 19 clears it. The parser sees the change, but the
    signature wins: a report whose signature fails is never judged on its debug bit."""
    q = bytearray(sample[0])
    q[0x0A] ^= 0x08  # policy bit 19
    assert parse_snp_report(bytes(q)).debug is False and parse_snp_report(sample[0]).debug is True
    v = verify(bytes(q), *sample[1:], pol=policy(MEASUREMENT))
    assert not v.genuine and v.code == "bad-signature" and v.debug is False


def test_a_wrong_root_is_refused(sample, fake_amd):
    blob, vcek, chain = sample
    v = verify(blob, vcek, chain, root_der=fake_amd.ark_der)  # the chain's real ARK is not that root
    assert not v.genuine and v.code == "untrusted-root", v
    ask_only = x509.load_pem_x509_certificates(chain)[0].public_bytes(Encoding.PEM)
    v = verify(blob, vcek, ask_only, root_der=fake_amd.ark_der)  # the ASK is not signed by that root
    assert not v.genuine and v.code == "untrusted-root", v
    # and the other way round: a chain made under a throwaway root against the pinned ARK
    v = verify(fake_amd.sign(blob), fake_amd.vcek_pem, fake_amd.chain_pem)
    assert not v.genuine and v.code == "untrusted-root", v
    v = verify(fake_amd.sign(blob), fake_amd.vcek_pem, fake_amd.ask_pem)
    assert not v.genuine and v.code == "untrusted-root", v


def test_the_pinned_root_is_the_milan_ark_of_the_sample_chain(sample, tmp_path, monkeypatch, fake_amd):
    der = snp.pinned_root_der()
    assert hashlib.sha256(der).hexdigest() == snp.ROOT_SHA256
    ark = x509.load_pem_x509_certificates(sample[2])[1]
    assert ark.public_bytes(Encoding.DER) == der and ark.subject == ark.issuer
    swapped = tmp_path / "ark.pem"
    swapped.write_bytes(x509.load_der_x509_certificate(fake_amd.ark_der).public_bytes(Encoding.PEM))
    monkeypatch.setattr(snp, "ROOT_PEM", swapped)
    with pytest.raises(RuntimeError):
        snp.pinned_root_der()
    v = verify(*sample, pol=policy(MEASUREMENT, allow_debug=True))
    assert not v.genuine and v.code == "untrusted-root", v


def test_missing_or_garbled_collateral(sample):
    blob, vcek, chain = sample
    assert verify(blob, None, chain).code == "collateral-missing"
    assert verify(blob, vcek, None).code == "collateral-missing"
    assert verify(blob).code == "collateral-missing" and not verify(blob).genuine
    assert verify(blob, b"not a certificate", chain).code == "bad-collateral"
    assert verify(blob, vcek, b"-----BEGIN CERTIFICATE-----\ngarbage\n").code == "bad-collateral"
    assert verify(blob, chain, chain).code == "bad-collateral"  # two certificates where the VCEK goes
    assert verify(blob, vcek, vcek).code == "bad-collateral"  # no ASK for the VCEK's issuer


@pytest.mark.parametrize("when,which", [
    (dt.datetime(2030, 1, 1, tzinfo=UTC), "expired"),  # the VCEK ran to 2029-09-24
    (dt.datetime(2022, 9, 1, tzinfo=UTC), "not yet valid"),  # the VCEK starts 2022-09-24
    (dt.datetime(2019, 1, 1, tzinfo=UTC), "not yet valid"),  # before the ARK too
    (dt.datetime(2046, 1, 1, tzinfo=UTC), "expired"),  # after the ARK
])
def test_outside_the_validity_windows_is_expired(sample, when, which):
    v = verify(*sample, at=when, pol=policy(MEASUREMENT, allow_debug=True))
    assert not v.genuine and not v.ok and v.code == "expired" and which in v.reason and "VCEK" in v.reason, v


def test_a_naive_time_is_utc_and_the_window_edges_are_inside(sample):
    assert verify(*sample, at=dt.datetime(2023, 1, 1)).genuine
    assert verify(*sample, at=dt.datetime(2022, 9, 24, 0, 55, 28, tzinfo=UTC)).genuine
    assert verify(*sample, at=dt.datetime(2029, 9, 24, 0, 55, 28, tzinfo=UTC)).genuine
    assert verify(*sample, at=dt.datetime(2029, 9, 24, 0, 55, 29, tzinfo=UTC)).code == "expired"


def test_format_detection(sample):
    blob = sample[0]
    assert looks_like_snp(blob) and looks_like_snp(bytearray(blob))
    assert not looks_like_snp(blob[:-1]) and not looks_like_snp(blob + b"\0") and not looks_like_snp(b"")
    assert not looks_like_snp(None) and not looks_like_snp("x" * 1184)
    v9 = bytearray(blob)
    v9[0] = 9
    assert not looks_like_snp(bytes(v9)) and verify(bytes(v9), *sample[1:]).code == "malformed"
    dcap = ROOT.parent / "shared" / "testdata" / "attestation" / "intel-dcap" / "sgx_quote_v3.bin"
    if dcap.exists():
        assert not looks_like_snp(dcap.read_bytes())


@pytest.mark.parametrize("blob", [b"", b"\x02\0\0\0", bytes(1184), None, "a string", 1184, b"\xff" * 1184])
def test_garbage_is_malformed_with_a_reason(sample, blob):
    v = verify(blob, *sample[1:])
    assert v.code == "malformed" and not v.genuine and not v.ok and v.reason and "\n" not in v.reason


# --- a throwaway AMD-shaped chain, to reach the non-debug and VCEK-extension paths --------------

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
T0, T1 = dt.datetime(2020, 1, 1), dt.datetime(2045, 1, 1)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, public_key, signer, exts=(), rsa_padding=PSS):
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer)).public_key(public_key)
         .serial_number(x509.random_serial_number()).not_valid_before(T0).not_valid_after(T1))
    for oid, value in exts:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False)
    return b.sign(signer, hashes.SHA384(), rsa_padding=rsa_padding)


def _spl_exts(bl=2, tee=0, snp_=5, ucode=0x44, hwid=None):
    a = "1.3.6.1.4.1.3704.1."
    exts = [(a + "3.1", bytes([2, 1, bl])), (a + "3.2", bytes([2, 1, tee])), (a + "3.3", bytes([2, 1, snp_])),
            (a + "3.8", bytes([2, 1, ucode])), (a + "2", b"\x16\x08Milan-B0")]
    if hwid is not None:
        exts.append((a + "4", hwid))
    return exts


@dataclasses.dataclass
class FakeAmd:
    ark_der: bytes
    ask_pem: bytes
    chain_pem: bytes
    vcek_pem: bytes
    vcek_key: ec.EllipticCurvePrivateKey
    ask_key: rsa.RSAPrivateKey

    def sign(self, report: bytes, key=None) -> bytes:
        """The report with its signature replaced by ``key``'s (the VCEK's by default)."""
        sig = (key or self.vcek_key).sign(report[:0x2A0], ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(sig)
        return report[:0x2A0] + r.to_bytes(72, "little") + s.to_bytes(72, "little") + report[0x2A0 + 144:]

    def vcek(self, **kw) -> bytes:
        """Another VCEK for the same key, with other extensions."""
        return _cert("SEV-VCEK", "SEV-Milan", self.vcek_key.public_key(), self.ask_key, _spl_exts(**kw)) \
            .public_bytes(Encoding.PEM)


@pytest.fixture(scope="module")
def fake_amd(sample):
    chip_id = parse_snp_report(sample[0]).chip_id
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    ark = _cert("ARK-Milan", "ARK-Milan", ark_key.public_key(), ark_key)
    ask = _cert("SEV-Milan", "ARK-Milan", ask_key.public_key(), ark_key)
    vcek = _cert("SEV-VCEK", "SEV-Milan", vcek_key.public_key(), ask_key, _spl_exts(hwid=chip_id))
    pem = lambda c: c.public_bytes(Encoding.PEM)  # noqa: E731
    return FakeAmd(ark.public_bytes(Encoding.DER), pem(ask), pem(ask) + pem(ark), pem(vcek), vcek_key, ask_key)


def fverify(fake, blob, vcek=None, pol=None, **kw):
    return verify(blob, vcek or fake.vcek_pem, fake.chain_pem, pol=pol, root_der=fake.ark_der, **kw)


def _with_debug(blob, debug):
    q = bytearray(blob)
    q[0x0A] = (q[0x0A] | 0x08) if debug else (q[0x0A] & ~0x08)
    return bytes(q)


def test_a_non_debug_report_of_an_allowed_build_is_trusted(sample, fake_amd):
    prod = fake_amd.sign(_with_debug(sample[0], False))
    v = fverify(fake_amd, prod, pol=policy(MEASUREMENT))
    assert v.ok and v.genuine and v.code == "ok" and v.debug is False and v.headline().startswith("TRUSTED"), v
    assert fverify(fake_amd, prod).code == "measurement-not-allowed"


def test_debug_is_refused_before_the_measurement_is_looked_at(sample, fake_amd):
    dbg = fake_amd.sign(_with_debug(sample[0], True))
    for pol in (policy(MEASUREMENT), policy()):  # allowed build or not: debug is the reason given
        v = fverify(fake_amd, dbg, pol=pol)
        assert v.genuine and not v.ok and v.code == "debug-not-allowed" and v.debug is True, v
    assert fverify(fake_amd, dbg, pol=policy(MEASUREMENT, allow_debug=True)).ok


def test_a_report_signed_by_another_key_is_a_bad_signature(sample, fake_amd):
    other = ec.generate_private_key(ec.SECP384R1())
    v = fverify(fake_amd, fake_amd.sign(sample[0], key=other), pol=policy(MEASUREMENT, allow_debug=True))
    assert not v.genuine and v.code == "bad-signature", v


def test_a_vcek_not_signed_with_amd_parameters_by_the_ask(sample, fake_amd):
    blob = fake_amd.sign(sample[0])
    pkcs1 = _cert("SEV-VCEK", "SEV-Milan", fake_amd.vcek_key.public_key(), fake_amd.ask_key, _spl_exts(),
                  rsa_padding=padding.PKCS1v15())
    v = fverify(fake_amd, blob, vcek=pkcs1.public_bytes(Encoding.PEM))
    assert not v.genuine and v.code == "bad-signature" and "VCEK" in v.reason, v
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _cert("SEV-VCEK", "SEV-Milan", fake_amd.vcek_key.public_key(), stranger, _spl_exts())
    v = fverify(fake_amd, blob, vcek=forged.public_bytes(Encoding.PEM))
    assert not v.genuine and v.code == "bad-signature", v


@pytest.mark.parametrize("kw", [dict(bl=3), dict(tee=1), dict(snp_=4), dict(ucode=0x45), dict(hwid=bytes(64))])
def test_a_vcek_for_another_tcb_or_chip_is_refused(sample, fake_amd, kw):
    v = fverify(fake_amd, fake_amd.sign(sample[0]), vcek=fake_amd.vcek(**kw),
                pol=policy(MEASUREMENT, allow_debug=True))
    assert not v.genuine and v.code == "vcek-mismatch", v
    ok = fverify(fake_amd, fake_amd.sign(sample[0]), vcek=fake_amd.vcek(), pol=policy(MEASUREMENT, allow_debug=True))
    assert ok.ok, ok  # without hwID the chip is not compared; the TCB still is


def test_a_masked_chip_id_is_not_compared(sample, fake_amd):
    q = bytearray(sample[0])
    q[0x48] |= 0x02  # MASK_CHIP_ID
    q[0x1A0:0x1E0] = bytes(64)
    assert parse_snp_report(bytes(q)).mask_chip_id
    v = fverify(fake_amd, fake_amd.sign(bytes(q)), pol=policy(MEASUREMENT, allow_debug=True))
    assert v.ok, v


def test_a_vlek_signed_report_is_not_verified(sample, fake_amd):
    q = bytearray(sample[0])
    q[0x48] |= 1 << 2  # SIGNING_KEY = 1 (VLEK)
    v = fverify(fake_amd, fake_amd.sign(bytes(q)), pol=policy(MEASUREMENT, allow_debug=True))
    assert not v.genuine and v.code == "unsupported-signing-key", v


# --- never raises -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2500))
def test_arbitrary_bytes_give_a_verdict(sample, blob):
    v = verify(blob, *sample[1:])
    assert not v.ok and not v.genuine and v.reason
    assert looks_like_snp(blob) in (True, False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 0x4A0 - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_samples_give_a_verdict(sample, edits):
    q = bytearray(sample[0])
    for i, byte in edits:
        q[i] = byte
    v = verify(bytes(q), *sample[1:], pol=policy(MEASUREMENT, allow_debug=True))
    assert v.reason and "\n" not in v.reason and v.code != "internal-error", v
    if bytes(q[:0x2A0 + 144]) != sample[0][:0x2A0 + 144]:
        assert not v.genuine and not v.ok, v  # any change to the signed part or to R, S is caught
    p = None
    try:
        p = parse_snp_report(bytes(q))
    except snp.SnpParseError:
        assert v.code == "malformed"
    if p is not None:
        assert v.measurement == p.measurement.hex()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600), st.booleans())
def test_garbage_collateral_gives_a_verdict(sample, junk, as_vcek):
    blob, vcek, chain = sample
    v = verify(blob, junk, chain) if as_vcek else verify(blob, vcek, junk)
    assert not v.genuine and v.code in ("bad-collateral", "untrusted-root"), v
