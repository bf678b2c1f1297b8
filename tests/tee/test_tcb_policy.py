"""TCB policy: statuses and advisories -> device classes and weights; the real samples classify as expected."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from pathlib import Path

import pytest

from node.risk.classes import DEFAULT_STATUS_WEIGHTS, ClassRegistry
from node.attest.evidence import verify_evidence
from node.attest.evidence.ias import pack_ias
from node.attest.policy import AttestationPolicy
from node.attest.tcb_policy import (DEFAULT_PATH, TcbPolicyError, class_registry, classify, load_tcb_policy,
                                 parse_tcb_policy)
from node.attest.verdict import Verdict

UTC = dt.timezone.utc
T = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "attestation"
needs_samples = pytest.mark.skipif(not T.exists(), reason=f"attestation samples not found at {T}")

SGX_MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
TDX_MRTD = ("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
            "de03ae6dc5f87f27428b2538873118b7")
IAS_V4 = "92143ea742e1628677b5a8e280173b7264470bfb0611d520c2474aab9846168e"
IAS_V5 = "d40c35b716c9ef1715d26100bb5e152d5045543017dacfcb492697028985cb7c"

POLICY = """
version = 1
[default]
no_status = 1.0
refuse = ["OutOfDate", "Revoked"]
refuse_advisories = ["INTEL-SA-00999"]
[default.accept]
UpToDate = 1.0
SWHardeningNeeded = 0.8
ConfigurationNeeded = 0.6
ConfigurationAndSWHardeningNeeded = 0.5
[default.advisories]
"INTEL-SA-00289" = 0.5
[kind.tdx]
refuse = ["ConfigurationNeeded"]
[kind.tdx.accept]
OutOfDate = 0.1
[kind.sim]
no_status = 0
"""


def verdict(vendor="intel-sgx-dcap", status="UpToDate", advisories=(), ok=True, genuine=True, code="ok"):
    return Verdict(ok, genuine, code, "test", vendor, "2025-07-01T00:00:00+00:00", tcb_status=status,
                   advisories=tuple(advisories))


@pytest.fixture(scope="module")
def pol():
    return parse_tcb_policy(POLICY, "test.toml")


@pytest.mark.parametrize("status, weight", [("UpToDate", 1.0), ("SWHardeningNeeded", 0.8),
                                            ("ConfigurationNeeded", 0.6),
                                            ("ConfigurationAndSWHardeningNeeded", 0.5)])
def test_accepted_statuses_map_to_class_and_weight(pol, status, weight):
    c = classify(verdict(status=status), pol)
    assert (c.class_name, c.family, c.status, c.weight, c.refused_reason) == (f"sgx:{status}", "sgx", status,
                                                                               weight, None)
    assert c.accepted


@pytest.mark.parametrize("status", ["OutOfDate", "Revoked"])
def test_refused_statuses_give_a_reason_and_weight_zero(pol, status):
    c = classify(verdict(status=status), pol)
    assert c.class_name == f"sgx:{status}" and c.weight == 0 and not c.accepted
    assert status in c.refused_reason and "refused" in c.refused_reason


def test_a_status_the_policy_does_not_name_is_refused(pol):
    c = classify(verdict(status="OutOfDateConfigurationNeeded"), pol)
    assert c.weight == 0 and "not named" in c.refused_reason


def test_advisories_lower_the_weight_or_refuse(pol):
    c = classify(verdict(status="ConfigurationAndSWHardeningNeeded", advisories=["INTEL-SA-00289", "INTEL-SA-1"]),
                 pol)
    assert c.accepted and c.weight == 0.25 and c.factors == {"INTEL-SA-00289": 0.5}
    r = classify(verdict(status="UpToDate", advisories=["INTEL-SA-00999"]), pol)
    assert r.weight == 0 and "INTEL-SA-00999" in r.refused_reason


def test_a_kind_table_overrides_the_default(pol):
    assert classify(verdict("intel-tdx-dcap", "OutOfDate"), pol).weight == 0.1  # accepted for TDX only
    assert not classify(verdict("intel-tdx-dcap", "ConfigurationNeeded"), pol).accepted
    assert classify(verdict("intel-sgx-dcap", "ConfigurationNeeded"), pol).weight == 0.6
    sim = classify(verdict("keyswitch-sim", ""), pol)
    assert sim.class_name == "sim" and not sim.accepted


@pytest.mark.parametrize("vendor, family", [("intel-sgx-dcap", "sgx"), ("intel-ias", "sgx"),
                                            ("intel-tdx-dcap", "tdx"), ("amd-sev-snp", "sev-snp"),
                                            ("aws-nitro", "nitro"), ("keyswitch-sim", "sim")])
def test_vendor_to_family(vendor, family):
    status = "UpToDate" if family in ("sgx", "tdx") else ""
    c = classify(verdict(vendor, status))  # the shipped default policy
    assert c.family == family and c.class_name == (f"{family}:{status}" if status else family) and c.weight == 1.0


def test_not_genuine_or_not_trusted_evidence_is_refused(pol):
    c = classify(verdict(ok=False, genuine=False, code="bad-signature"), pol)
    assert c.weight == 0 and "not genuine" in c.refused_reason and "bad-signature" in c.refused_reason
    d = classify(verdict(ok=False, code="debug-not-allowed"), pol)
    assert d.weight == 0 and "debug-not-allowed" in d.refused_reason
    u = classify(verdict(vendor="someone-else"), pol)
    assert u.family == "unknown" and not u.accepted
    # the verifier refused the status itself and so never checked debug and measurement: not accepted
    r = classify(verdict(ok=False, code="tcb-status-refused", status="SWHardeningNeeded"), pol)
    assert r.weight == 0 and "attestation_policy" in r.refused_reason
    # but a status the TCB policy refuses is named as such
    assert "refused for sgx by the TCB policy" in classify(verdict(ok=False, code="tcb-status-refused",
                                                                   status="OutOfDate"), pol).refused_reason


def test_shipped_default_policy():
    p = load_tcb_policy()
    assert p.source == str(DEFAULT_PATH)
    sgx, tdx = p.kinds["sgx"], p.kinds["tdx"]
    assert tdx.accept["UpToDate"] == 1.0
    assert tdx.accept["SWHardeningNeeded"] < 1.0 and tdx.accept["ConfigurationNeeded"] < 1.0
    assert tdx.accept["ConfigurationAndSWHardeningNeeded"] < min(tdx.accept["SWHardeningNeeded"],
                                                                 tdx.accept["ConfigurationNeeded"])
    for k in p.kinds.values():
        assert {"OutOfDate", "Revoked"} <= k.refuse
    assert sgx.accept["ConfigurationAndSWHardeningNeeded"] < sgx.accept["SWHardeningNeeded"]


def test_class_registry_takes_its_weights_from_the_policy(pol):
    reg = class_registry(pol)
    assert reg.resolve("sgx:SWHardeningNeeded").weight == 0.8
    assert reg.resolve("sgx:OutOfDate").weight == 0.0
    assert reg.resolve("tdx:OutOfDate").weight == 0.1
    assert reg.resolve("tdx:ConfigurationNeeded").weight == 0.0
    assert reg.resolve("sim").weight == 0.0 and reg.resolve("nitro").weight == 1.0
    assert reg.resolve("sgx:Whatever").weight == 0.0
    reg.revoke("tdx", "broken")
    assert reg.resolve("tdx:OutOfDate").weight == 0.0
    # the default registry is unchanged
    assert ClassRegistry().status_weights == DEFAULT_STATUS_WEIGHTS and ClassRegistry().class_weights == {}
    shipped = class_registry()
    assert shipped.resolve("sgx:ConfigurationAndSWHardeningNeeded").weight == 0.4
    assert shipped.resolve("tdx:ConfigurationAndSWHardeningNeeded").weight == 0.5
    assert shipped.resolve("sev-snp").weight == 1.0


@pytest.mark.parametrize("text, key, why", [
    ("version = 2", "version", "version 1"),
    ("version = 1\n[default.accept]\nUpToDate = 1.5", "default.accept.UpToDate", "out of range"),
    ("version = 1\n[default.accept]\nUpToDate = 0", "default.accept.UpToDate", "to refuse"),
    ("version = 1\n[default.accept]\nUpToDate = 'high'", "default.accept.UpToDate", "must be a number"),
    ("version = 1\n[default]\nrefuse = 'OutOfDate'", "default.refuse", "list of non-empty strings"),
    ("version = 1\n[default]\nrefuze = []", "default.refuze", "unknown key"),
    ("version = 1\n[kind.sgxx]\nno_status = 1", "kind.sgxx", "unknown family"),
    ("version = 1\n[kind.nitro]\nno_status = -1", "kind.nitro.no_status", "out of range"),
    ("version = 1\n[default.advisories]\n'INTEL-SA-1' = 2", "default.advisories.INTEL-SA-1", "out of range"),
    ("version = 1\n[default]\nrefuse = ['UpToDate']\n[default.accept]\nUpToDate = 1.0", "default.accept",
     "both accepted and refused"),
    ("version = 1\nextra = 3", "extra", "unknown top-level key"),
])
def test_a_bad_policy_file_gives_a_clear_error(tmp_path, text, key, why):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(TcbPolicyError) as e:
        load_tcb_policy(f)
    msg = str(e.value)
    assert str(f) in msg and key in msg and why in msg


def test_unreadable_or_not_toml(tmp_path):
    with pytest.raises(TcbPolicyError, match="cannot read"):
        load_tcb_policy(tmp_path / "missing.toml")
    f = tmp_path / "x.toml"
    f.write_text("version = \n")
    with pytest.raises(TcbPolicyError, match="not valid TOML"):
        load_tcb_policy(f)


# --- the real samples --------------------------------------------------------------------------------


def _trusting(*measurements):
    return dataclasses.replace(AttestationPolicy.dev().with_measurements(*measurements), allow_debug=True)


@needs_samples
def test_real_dcap_samples_classify_as_expected():
    d = T / "intel-dcap"
    at = dt.datetime(2025, 7, 1, tzinfo=UTC)
    pol = _trusting(SGX_MRENCLAVE, TDX_MRTD)
    sgx = verify_evidence((d / "sgx_quote_v3.bin").read_bytes(), policy=pol, at=at,
                          collateral=(d / "sgx_quote_v3_collateral.json").read_bytes())
    from node.attest.evidence.dcap import quote_end

    padded = (d / "tdx_quote_v4.bin").read_bytes()  # the shared file ends in zero padding, refused as trailing
    tdx = verify_evidence(padded[:quote_end(padded)], policy=pol, at=at,
                          collateral=(d / "tdx_quote_v4_collateral.json").read_bytes())
    assert sgx.ok and tdx.ok
    c = classify(sgx)  # shipped policy: 0.4 for the status, x0.8 Plundervolt, x0.9 INTEL-SA-00615
    assert c.class_name == "sgx:ConfigurationAndSWHardeningNeeded" and c.accepted
    assert c.advisories == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert c.weight == pytest.approx(0.4 * 0.8 * 0.9)
    t = classify(tdx)
    assert (t.class_name, t.weight, t.refused_reason) == ("tdx:UpToDate", 1.0, None)
    # an operator who refuses Plundervolt-affected platforms
    strict = parse_tcb_policy(DEFAULT_PATH.read_text().replace("refuse_advisories = []",
                                                               'refuse_advisories = ["INTEL-SA-00289"]'))
    r = classify(sgx, strict)
    assert r.weight == 0 and "INTEL-SA-00289" in r.refused_reason
    # an attestation policy narrower than the TCB policy stops early; attestation_policy() aligns them
    narrow = dataclasses.replace(pol, accept_tcb=frozenset({"UpToDate"}))
    args = dict(at=at, collateral=(d / "sgx_quote_v3_collateral.json").read_bytes())
    early = verify_evidence((d / "sgx_quote_v3.bin").read_bytes(), policy=narrow, **args)
    assert early.code == "tcb-status-refused" and not classify(early).accepted
    aligned = load_tcb_policy().attestation_policy(narrow, "sgx")
    assert classify(verify_evidence((d / "sgx_quote_v3.bin").read_bytes(), policy=aligned, **args)).accepted
    assert aligned.allowed_measurements == narrow.allowed_measurements


@needs_samples
def test_real_nitro_and_snp_samples_have_no_status_and_full_weight():
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    doc = base64.b64decode((T / "aws-nitro" / "nitro_attestation.b64").read_bytes())
    v = verify_evidence(doc, policy=_trusting(), at=dt.datetime.fromtimestamp(1725719859.545, UTC))
    v = verify_evidence(doc, policy=_trusting(v.measurement), at=dt.datetime.fromtimestamp(1725719859.545, UTC))
    assert v.ok, v.reason
    c = classify(v)
    assert (c.class_name, c.status, c.weight, c.refused_reason) == ("nitro", "", 1.0, None)
    s = T / "amd-sev-snp"
    with warnings.catch_warnings():  # AMD's sample VCEK has serial number 0
        warnings.simplefilter("ignore")
        vcek = x509.load_der_x509_certificate((s / "vcek.testcer").read_bytes())
    bundle = vcek.public_bytes(Encoding.PEM) + (s / "milan.testcer").read_bytes()
    at = dt.datetime(2023, 1, 1, tzinfo=UTC)
    v = verify_evidence((s / "attestation.bin").read_bytes(), policy=_trusting(), at=at, collateral=bundle)
    v = verify_evidence((s / "attestation.bin").read_bytes(), policy=_trusting(v.measurement), at=at,
                        collateral=bundle)
    assert v.ok, v.reason
    assert classify(v).class_name == "sev-snp" and classify(v).weight == 1.0


@needs_samples
@pytest.mark.parametrize("version, meas, ts, weight", [
    ("v4", IAS_V4, dt.datetime(2020, 5, 11, 9, 22, 15, tzinfo=UTC), 0.7 * 0.9),
    ("v5", IAS_V5, dt.datetime(2023, 9, 27, 15, 52, 58, tzinfo=UTC), 0.7 * 0.9 * 0.9),
])
def test_real_ias_samples_classify_as_sw_hardening_needed(version, meas, ts, weight):
    d = T / "intel-ias"
    blob = pack_ias((d / f"avr_{version}_body_sw_hardening_needed.json").read_bytes(),
                    (d / f"avr_{version}_body_sw_hardening_needed.sig").read_bytes(),
                    (d / "avr_certificates_urlencoded.pem").read_bytes())
    v = verify_evidence(blob, policy=_trusting(meas), at=ts)
    assert v.ok, v.reason
    c = classify(v)
    assert c.class_name == "sgx:SWHardeningNeeded" and c.family == "sgx" and c.accepted
    assert "INTEL-SA-00334" in c.advisories and c.weight == pytest.approx(weight)
    # the production attestation policy refuses these debug enclaves, and so the class is refused too
    debug = classify(verify_evidence(blob, policy=AttestationPolicy.dev().with_measurements(meas), at=ts))
    assert debug.weight == 0 and "debug" in debug.refused_reason
