"""Real Intel DCAP quotes (../shared/testdata/attestation/intel-dcap), verified as of 2025-07-01."""

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import dcap_qvl
import pytest
from hypothesis import given, settings, strategies as st

from node.attest.evidence import detect_format, verify_evidence
from node.attest.evidence.dcap import check_report, parse_quote, quote_end, verify_dcap
from node.attest.policy import AttestationPolicy

ROOT = Path(__file__).resolve().parents[2]
D = ROOT.parent / "shared" / "testdata" / "attestation" / "intel-dcap"
AT = dt.datetime(2025, 7, 1, tzinfo=dt.timezone.utc)
SGX, SGX_C = D / "sgx_quote_v3.bin", D / "sgx_quote_v3_collateral.json"
TDX, TDX_C = D / "tdx_quote_v4.bin", D / "tdx_quote_v4_collateral.json"
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"

pytestmark = pytest.mark.skipif(not SGX.exists(), reason=f"DCAP samples not found at {D}")


def tdx_quote() -> bytes:
    """The TDX sample as long as it declares itself: the shared file has 70 zero bytes of padding after it,
    which the verifier refuses as trailing bytes (tests/adversarial/test_evidence.py)."""
    q = TDX.read_bytes()
    assert len(q) - quote_end(q) == 70 and not any(q[quote_end(q):])
    return q[:quote_end(q)]


def policy(*allowed):
    return AttestationPolicy.dev().with_measurements(*allowed)


def verify(blob, coll=None, at=AT, pol=None):
    return verify_evidence(blob, policy=pol or policy(), at=at, collateral=coll)


def test_sgx_sample_is_genuine_with_status_and_advisories():
    v = verify(SGX.read_bytes(), SGX_C.read_bytes())
    assert v.genuine and not v.ok and v.code == "measurement-not-allowed" and v.allowed_build is False
    assert v.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert v.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert v.measurement == MRENCLAVE and v.debug is False and v.vendor == "intel-sgx-dcap"
    assert bytes.fromhex(v.report_data) == b"Hello, world!" + bytes(51)
    trusted = verify(SGX.read_bytes(), SGX_C.read_bytes(), pol=policy(MRENCLAVE))
    assert trusted.ok and trusted.code == "ok" and trusted.tcb_status == v.tcb_status


def test_tdx_sample_is_up_to_date():
    v = verify(tdx_quote(), TDX_C.read_bytes())
    assert v.genuine and v.tcb_status == "UpToDate" and v.vendor == "intel-tdx-dcap" and len(v.measurement) == 96
    assert verify(tdx_quote(), TDX_C.read_bytes(), pol=policy(v.measurement)).ok


@pytest.mark.parametrize("offset", [0, 10, 48 + 64, 48 + 100, 48 + 330, 431])
def test_a_flipped_byte_in_the_signed_part_is_refused(offset):
    q = bytearray(SGX.read_bytes())
    q[offset] ^= 0x01
    v = verify(bytes(q), SGX_C.read_bytes(), pol=policy(MRENCLAVE))
    assert not v.genuine and not v.ok and v.code in ("bad-signature", "malformed", "verification-failed",
                                                            "unsupported-format"), v


def test_a_set_debug_bit_is_refused_both_ways():
    q = bytearray(SGX.read_bytes())
    q[48 + 48] |= 0x02  # ATTRIBUTES.DEBUG in the signed report body
    v = verify(bytes(q), SGX_C.read_bytes(), pol=policy(MRENCLAVE))
    assert not v.ok and not v.genuine  # the signature no longer covers it
    # and a genuine debug report (signature aside) is refused by Keyswitch's own check
    parsed = dataclasses.replace(parse_quote(SGX.read_bytes()), debug=True)
    assert check_report(parsed, policy(MRENCLAVE), {"vendor": "intel-sgx-dcap", "verified_at": ""}).code == \
        "debug-not-allowed"


def test_a_wrong_root_is_refused():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA")])  # same name, wrong key
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2018, 1, 1)).not_valid_after(dt.datetime(2049, 1, 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    v = verify_dcap(SGX.read_bytes(), policy=policy(MRENCLAVE), at=AT, collateral=SGX_C.read_bytes(),
                    root_der=cert.public_bytes(Encoding.DER))
    assert not v.genuine and v.code in ("untrusted-root", "bad-signature", "verification-failed"), v


@pytest.mark.parametrize("field", ["tcb_info_signature", "qe_identity_signature"])
def test_a_dropped_or_wrong_collateral_signature_is_refused(field):
    c = json.loads(SGX_C.read_text())
    c[field] = ""
    assert not verify(SGX.read_bytes(), json.dumps(c).encode(), pol=policy(MRENCLAVE)).genuine
    c[field] = "00" * 64
    v = verify(SGX.read_bytes(), json.dumps(c).encode(), pol=policy(MRENCLAVE))
    assert not v.genuine and v.code != "ok"


def test_outside_the_validity_window_names_the_expired_item():
    v = verify(SGX.read_bytes(), SGX_C.read_bytes(), at=dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc))
    assert not v.genuine and v.code == "expired" and "Expired" in v.reason
    early = verify(SGX.read_bytes(), SGX_C.read_bytes(), at=dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc))
    assert not early.genuine and not early.ok


def test_missing_or_garbled_collateral():
    assert verify(SGX.read_bytes()).code == "collateral-missing"
    assert verify(SGX.read_bytes(), b"{not json").code == "bad-collateral"


def test_refused_tcb_status_and_advisory_are_genuine_but_not_trusted():
    strict = dataclasses.replace(policy(MRENCLAVE), accept_tcb=frozenset({"UpToDate"}))
    v = verify(SGX.read_bytes(), SGX_C.read_bytes(), pol=strict)
    assert v.genuine and v.code == "tcb-status-refused"
    adv = dataclasses.replace(policy(MRENCLAVE), refuse_advisories=frozenset({"INTEL-SA-00615"}))
    assert verify(SGX.read_bytes(), SGX_C.read_bytes(), pol=adv).code == "advisory-refused"


def test_our_report_body_parser_agrees_with_dcap_qvl():
    for blob in (SGX.read_bytes(), tdx_quote()):
        ours, theirs = parse_quote(blob), dcap_qvl.Quote.parse(blob)
        assert ours.version == theirs.header.version and ours.tee_type == theirs.header.tee_type
        assert ours.qe_svn == theirs.header.qe_svn and ours.pce_svn == theirs.header.pce_svn
        rep = theirs.report
        if theirs.is_sgx():
            assert ours.measurement == bytes(rep.mr_enclave) and ours.signer == bytes(rep.mr_signer)
            assert ours.attributes == bytes(rep.attributes)
        else:
            assert ours.measurement == bytes(rep.mr_td) and ours.signer == bytes(rep.mr_signer_seam)
            assert ours.attributes == bytes(rep.td_attributes)
        assert ours.report_data == bytes(rep.report_data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6000))
def test_garbage_of_any_length_gives_a_verdict(blob):
    v = verify(blob, SGX_C.read_bytes())
    assert not v.ok and v.reason


def test_truncated_quotes_are_refused_with_a_reason():
    q = SGX.read_bytes()
    for n in (0, 47, 48, 431, 1000, len(q) - 1):
        v = verify(q[:n], SGX_C.read_bytes(), pol=policy(MRENCLAVE))
        assert not v.ok and not v.genuine and v.reason
    assert detect_format(q) == "intel-dcap" and detect_format(b"junk") == "unknown"


def test_cli_attest_verify_exact_command(tmp_path):
    cmd = [sys.executable, "-m", "node", "attest", "verify", str(SGX), "--collateral", str(SGX_C),
           "--at", "2025-07-01T00:00:00Z", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    v = json.loads(out.stdout)
    assert out.returncode == 3  # genuine, but not an allowed Keyswitch build
    assert v["genuine"] and v["code"] == "measurement-not-allowed"
    assert v["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert v["advisories"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    ok = subprocess.run(cmd + ["--allow-measurement", MRENCLAVE], capture_output=True, text=True, cwd=ROOT,
                        timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"]
    tampered = tmp_path / "tampered-quote.bin"
    q = bytearray(SGX.read_bytes())
    q[200] ^= 1
    tampered.write_bytes(bytes(q))
    bad = subprocess.run(cmd[:5] + [str(tampered)] + cmd[6:], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 4 and not json.loads(bad.stdout)["genuine"]
    human = subprocess.run(cmd[:5] + [str(tampered)] + cmd[6:-1], capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
    assert human.returncode == 4 and human.stdout.startswith("REFUSED")


@pytest.mark.parametrize("version,akt,words", [(5, 2, "version 5"), (3, 3, "attestation key type 3"),
                                               (2, 2, "version 2")])
def test_unsupported_quote_layouts_are_refused_before_any_reading(version, akt, words):
    """A v5 quote has a body descriptor at byte 48, so reading it at v3's offsets would report the wrong
    MRENCLAVE and report data: only the layouts read here (SGX v3/v4, TDX v4, ECDSA P-256) are accepted."""
    import struct

    q = bytearray(SGX.read_bytes())
    struct.pack_into("<HH", q, 0, version, akt)
    with pytest.raises(ValueError, match=words):
        parse_quote(bytes(q))
    v = verify(bytes(q), SGX_C.read_bytes(), pol=policy(MRENCLAVE))
    if version == 2:  # not even detected as DCAP
        assert not v.genuine and v.code == "unsupported-format", v
    else:
        assert not v.genuine and v.code == "malformed" and words in v.reason, v


def test_quote_end_reads_the_declared_length():
    assert quote_end(SGX.read_bytes()) == len(SGX.read_bytes()) == 4600
    assert quote_end(TDX.read_bytes()) == 4936 and quote_end(b"") == 0 and quote_end(bytes(100)) == 0
