"""Real Intel IAS (EPID) reports (../shared/testdata/attestation/intel-ias), verified as of their timestamps."""

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from node.attest.evidence.ias import (
    ROOT_SHA256,
    IasFormatError,
    looks_like_ias,
    pack_ias,
    pinned_root_der,
    unpack_ias,
    verify_ias,
    verify_ias_blob,
)
from node.attest.policy import AttestationPolicy

ROOT = Path(__file__).resolve().parents[2]
D = ROOT.parent / "shared" / "testdata" / "attestation" / "intel-ias"
CHAIN = D / "avr_certificates_urlencoded.pem"
UTC = dt.timezone.utc
# each sample verified a minute after its own report timestamp: inside the signing certificate's
# window (2016-11-22 .. 2026-11-20T09:36:58Z) and within the policy's 7-day quote age
SAMPLES = {
    "v4": dict(stem="avr_v4_body_sw_hardening_needed", at=dt.datetime(2020, 5, 11, 9, 22, 15, tzinfo=UTC),
               id="323119119247496566074708526703373820736", advisories=("INTEL-SA-00334",),
               mrenclave="92143ea742e1628677b5a8e280173b7264470bfb0611d520c2474aab9846168e",
               report_data=b"biNMqBAuTPF2hp/0fXa4P3splRkLHJf0"),  # report_data[32:64]
    "v5": dict(stem="avr_v5_body_sw_hardening_needed", at=dt.datetime(2023, 9, 27, 15, 52, 58, tzinfo=UTC),
               id="325753020347524304899139732345489823748", advisories=("INTEL-SA-00334", "INTEL-SA-00615"),
               mrenclave="d40c35b716c9ef1715d26100bb5e152d5045543017dacfcb492697028985cb7c",
               report_data=bytes(32)),  # report_data[32:64] (all 64 bytes are zero)
}
MRSIGNER = "9affcfae47b848ec2caf1c49b4b283531e1cc425f93582b36806e52a43d78d1a"

pytestmark = pytest.mark.skipif(not CHAIN.exists(), reason=f"IAS samples not found at {D}")


def sample(name):
    s = SAMPLES[name]
    return (D / f"{s['stem']}.json").read_bytes(), (D / f"{s['stem']}.sig").read_bytes(), CHAIN.read_bytes()


def policy(*allowed, **kw):
    return dataclasses.replace(AttestationPolicy.dev().with_measurements(*allowed), **kw)


def verify(name, body=None, sig=None, chain=None, at=None, pol=None, **kw):
    b, s, c = sample(name)
    return verify_ias(b if body is None else body, s if sig is None else sig, c if chain is None else chain,
                      policy=pol or policy(), at=at or SAMPLES[name]["at"], **kw)


@pytest.mark.parametrize("name", ["v4", "v5"])
def test_samples_are_genuine_debug_enclaves_with_the_readme_values(name):
    s = SAMPLES[name]
    v = verify(name, pol=policy(s["mrenclave"]))
    # both reports are of debug enclaves: genuine, never trusted by a production policy
    assert v.genuine and not v.ok and v.code == "debug-not-allowed", v
    assert v.vendor == "intel-ias" and v.debug is True and v.measurement == s["mrenclave"]
    assert v.tcb_status == "SWHardeningNeeded" and v.details["isv_enclave_quote_status"] == "SW_HARDENING_NEEDED"
    assert v.advisories == s["advisories"] and bytes.fromhex(v.report_data)[32:] == s["report_data"]
    assert v.details["mrsigner"] == MRSIGNER and v.details["ias_report_id"] == s["id"]
    assert v.details["attributes"][:2] == "07"
    assert v.details["ias_report_version"] == int(name[1]) and len(v.report_data) == 128
    if name == "v5":
        assert v.report_data == "00" * 64
    # an explicit allow-debug policy with the build allowed trusts it; without the build, it does not
    trusted = verify(name, pol=policy(s["mrenclave"], allow_debug=True))
    assert trusted.ok and trusted.code == "ok" and trusted.allowed_build is True
    other = verify(name, pol=policy(allow_debug=True))
    assert other.genuine and other.code == "measurement-not-allowed" and other.allowed_build is False


def test_the_committed_root_is_the_pinned_intel_ca_from_the_sample_chain():
    assert hashlib.sha256(pinned_root_der()).hexdigest() == ROOT_SHA256
    pem = urllib.parse.unquote_to_bytes(CHAIN.read_bytes())
    assert pem.count(b"BEGIN CERTIFICATE") == 2
    assert base64.b64decode(b"".join(pem.split(b"-----")[6].split())) == pinned_root_der()


def test_plain_pem_chain_works_too():
    v = verify("v5", chain=urllib.parse.unquote_to_bytes(CHAIN.read_bytes()), pol=policy(allow_debug=True))
    assert v.genuine and v.code == "measurement-not-allowed"


@pytest.mark.parametrize("offset", [0, 30, 200, 700, -2])
def test_a_flipped_byte_in_the_body_is_a_bad_signature(offset):
    body = bytearray(sample("v5")[0])
    body[offset] ^= 0x01
    v = verify("v5", body=bytes(body), pol=policy(allow_debug=True))
    assert not v.genuine and not v.ok and v.code == "bad-signature", v


def test_a_flipped_byte_in_the_signature_is_a_bad_signature():
    sig = bytearray(base64.b64decode(sample("v4")[1]))
    sig[100] ^= 0x80
    v = verify("v4", sig=base64.b64encode(bytes(sig)), pol=policy(allow_debug=True))
    assert not v.genuine and v.code == "bad-signature"


def _throwaway_ca():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.load_der_x509_certificate(pinned_root_der()).subject  # Intel's exact name, a different key
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2016, 1, 1)).not_valid_after(dt.datetime(2049, 1, 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER), cert.public_bytes(Encoding.PEM)


def test_a_wrong_root_is_refused():
    der, pem = _throwaway_ca()
    v = verify("v5", pol=policy(allow_debug=True), root_der=der)
    assert not v.genuine and v.code == "untrusted-root", v
    # the real leaf presented under a same-named impostor CA is refused too
    leaf = urllib.parse.unquote_to_bytes(CHAIN.read_bytes()).split(b"-----END CERTIFICATE-----")[0]
    v2 = verify("v5", chain=leaf + b"-----END CERTIFICATE-----\n" + pem, pol=policy(allow_debug=True), root_der=der)
    assert not v2.genuine and v2.code == "bad-signature", v2


def test_a_truncated_chain_is_refused():
    pem = urllib.parse.unquote_to_bytes(CHAIN.read_bytes())
    leaf = pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    v = verify("v5", chain=leaf, pol=policy(allow_debug=True))
    assert not v.genuine and not v.ok and v.code == "untrusted-root", v
    ca_only = b"-----BEGIN CERTIFICATE-----" + pem.split(b"-----BEGIN CERTIFICATE-----")[2]
    v = verify("v5", chain=ca_only, pol=policy(allow_debug=True))
    assert not v.genuine and v.code in ("untrusted-root", "bad-signature"), v
    assert verify("v5", chain=b"").code == "malformed"


def test_after_the_signing_certificate_expired():
    for at in (dt.datetime(2026, 11, 20, 9, 37, tzinfo=UTC), dt.datetime(2026, 11, 24, tzinfo=UTC)):
        v = verify("v5", at=at, pol=policy(allow_debug=True, max_quote_age=1e12))
        assert not v.genuine and v.code == "expired" and "2026-11-20T09:36:58" in v.reason, v
    just_before = verify("v5", at=dt.datetime(2026, 11, 20, 9, 36, tzinfo=UTC),
                         pol=policy(allow_debug=True, max_quote_age=1e12))
    assert just_before.genuine and just_before.code == "measurement-not-allowed"


def test_report_time_against_at():
    early = verify("v5", at=dt.datetime(2023, 9, 27, 15, 0, tzinfo=UTC), pol=policy(allow_debug=True))
    assert not early.genuine and not early.ok and early.code == "quote-from-future"
    # no clock-skew allowance: the README's suggested instant, 44 ms before the timestamp, is refused too
    # (it used to pass as genuine: issue #17 item 10); the timestamp itself is the earliest time that verifies
    just_before = verify("v5", at=dt.datetime(2023, 9, 27, 15, 51, 58, tzinfo=UTC))
    assert not just_before.genuine and just_before.code == "quote-from-future"
    assert verify("v5", at=dt.datetime(2023, 9, 27, 15, 51, 58, 44803, tzinfo=UTC)).code == "debug-not-allowed"
    old = verify("v4", at=SAMPLES["v5"]["at"], pol=policy(allow_debug=True))
    assert old.genuine and old.code == "quote-stale"
    naive = verify("v4", at=SAMPLES["v4"]["at"].replace(tzinfo=None))
    assert naive.code == "debug-not-allowed" and naive.verified_at.endswith("+00:00")


def test_policy_refusing_sw_hardening_or_an_advisory():
    s = SAMPLES["v5"]
    strict = policy(s["mrenclave"], allow_debug=True, accept_tcb=frozenset({"UpToDate"}))
    v = verify("v5", pol=strict)
    assert v.genuine and not v.ok and v.code == "tcb-status-refused" and "SW_HARDENING_NEEDED" in v.reason
    adv = policy(s["mrenclave"], allow_debug=True, refuse_advisories=frozenset({"INTEL-SA-00615"}))
    v = verify("v5", pol=adv)
    assert v.genuine and v.code == "advisory-refused" and "INTEL-SA-00615" in v.reason
    assert verify("v4", pol=dataclasses.replace(adv, allowed_measurements=frozenset({SAMPLES["v4"]["mrenclave"]}))).ok
    # (v4 does not carry INTEL-SA-00615)


def test_envelope_round_trip_and_dispatch_helpers():
    body, sig, chain = sample("v5")
    blob = pack_ias(body, sig, chain)
    assert blob.startswith(b"KSIAS1") and looks_like_ias(blob) and pack_ias(body, sig, chain) == blob
    assert unpack_ias(blob) == (body, sig, chain)
    assert not looks_like_ias(body) and not looks_like_ias(b"")
    v = verify_ias_blob(blob, policy=policy(SAMPLES["v5"]["mrenclave"], allow_debug=True), at=SAMPLES["v5"]["at"])
    assert v.ok and v.vendor == "intel-ias"
    for bad in (b"KSIAS1", b"KSIAS1\xa0", blob + b"\x00", blob[:-1], b"KSIAS1" + b"\x01" * 10):
        with pytest.raises(IasFormatError):
            unpack_ias(bad)
        bv = verify_ias_blob(bad, policy=policy(), at=SAMPLES["v5"]["at"])
        assert not bv.ok and not bv.genuine and bv.code == "malformed" and bv.reason and "\n" not in bv.reason


def test_signed_but_unreadable_fields_and_bad_encodings_are_malformed():
    assert verify("v5", sig=b"not base64!!").code == "malformed"
    assert verify("v5", chain=b"%%%garbage").code == "malformed"
    assert verify("v5", body="text").code == "malformed"
    v = verify("v5", body=b"{not json")
    assert v.code == "bad-signature" and not v.genuine  # the signature is checked over the raw bytes first


def _mutate(data: bytes, pos: int, byte: int, cut: int) -> bytes:
    if not data:
        return bytes([byte])
    b = bytearray(data)
    b[pos % len(b)] = byte
    return bytes(b[: len(b) - cut % len(b)] if cut % 3 == 0 else b)


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=3000), st.binary(max_size=400), st.binary(max_size=5000))
def test_arbitrary_bytes_never_raise(body, sig, chain):
    v = verify_ias(body, sig, chain, policy=policy(), at=SAMPLES["v5"]["at"])
    assert not v.ok and not v.genuine and v.reason and "\n" not in v.reason
    b = verify_ias_blob(b"KSIAS1" + body, policy=policy(), at=SAMPLES["v5"]["at"])
    assert not b.ok and b.code == "malformed"


@FAST
@given(st.sampled_from(["body", "sig", "chain", "blob"]), st.integers(0, 10_000), st.integers(0, 255),
       st.integers(0, 10_000))
def test_mutated_samples_never_raise(part, pos, byte, cut):
    body, sig, chain = sample("v5")
    pol, at = policy(SAMPLES["v5"]["mrenclave"], allow_debug=True), SAMPLES["v5"]["at"]
    if part == "blob":
        blob = _mutate(pack_ias(body, sig, chain), pos, byte, cut)
        v = verify_ias_blob(blob, policy=pol, at=at)
        signed = unpack_ias(blob)[0] if v.ok else None
    else:
        parts = {"body": body, "sig": sig, "chain": chain}
        parts[part] = _mutate(parts[part], pos, byte, cut)
        v = verify_ias(parts["body"], parts["sig"], parts["chain"], policy=pol, at=at)
        signed = parts["body"]
    assert v.reason and "\n" not in v.reason and v.code != "internal-error", v
    if v.ok:  # trusted only if the signed body is exactly Intel's
        assert signed == body
