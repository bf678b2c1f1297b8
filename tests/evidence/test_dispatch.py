"""One entry point, five formats: ``verify_evidence`` detects each real sample and verifies it."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from node.attest.evidence import detect_format, verify_evidence
from node.attest.evidence.ias import pack_ias
from node.attest.policy import AttestationPolicy

UTC = dt.timezone.utc
T = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "attestation"
pytestmark = pytest.mark.skipif(not T.exists(), reason=f"attestation samples not found at {T}")


def debug_ok(*allowed):
    return dataclasses.replace(AttestationPolicy.dev().with_measurements(*allowed), allow_debug=True)


def test_nitro_detected_and_verified():
    blob = base64.b64decode((T / "aws-nitro" / "nitro_attestation.b64").read_bytes())
    assert detect_format(blob) == "aws-nitro"
    v = verify_evidence(blob, policy=AttestationPolicy.dev(), at=dt.datetime.fromtimestamp(1725719859.545, UTC))
    assert v.genuine and v.vendor == "aws-nitro" and v.measurement.startswith("e72a46ca")


def test_snp_detected_and_verified_with_a_pem_bundle():
    report = (T / "amd-sev-snp" / "attestation.bin").read_bytes()
    vcek = x509.load_der_x509_certificate((T / "amd-sev-snp" / "vcek.testcer").read_bytes())
    bundle = vcek.public_bytes(Encoding.PEM) + (T / "amd-sev-snp" / "milan.testcer").read_bytes()
    assert detect_format(report) == "amd-sev-snp"
    at = dt.datetime(2023, 1, 1, tzinfo=UTC)
    v = verify_evidence(report, policy=AttestationPolicy.dev(), at=at, collateral=bundle)
    assert v.genuine and v.code == "debug-not-allowed"  # the public sample is a debug guest
    assert verify_evidence(report, policy=AttestationPolicy.dev(), at=at).code == "collateral-missing"
    assert verify_evidence(report, policy=AttestationPolicy.dev(), at=at, collateral=b"-----BEGIN junk").code \
        in ("bad-collateral", "malformed")


def test_ias_envelope_detected_and_verified():
    d = T / "intel-ias"
    blob = pack_ias((d / "avr_v5_body_sw_hardening_needed.json").read_bytes(),
                    (d / "avr_v5_body_sw_hardening_needed.sig").read_bytes(),
                    (d / "avr_certificates_urlencoded.pem").read_bytes())
    assert detect_format(blob) == "intel-ias"
    at = dt.datetime(2023, 9, 27, 15, 52, 58, tzinfo=UTC)
    v = verify_evidence(blob, policy=debug_ok("d40c35b716c9ef1715d26100bb5e152d5045543017dacfcb492697028985cb7c"),
                        at=at)
    assert v.ok and v.vendor == "intel-ias" and v.tcb_status == "SWHardeningNeeded"


def test_dcap_still_detected_and_garbage_named():
    assert detect_format((T / "intel-dcap" / "sgx_quote_v3.bin").read_bytes()) == "intel-dcap"
    v = verify_evidence(b"\x00garbage", policy=AttestationPolicy.dev(), at=dt.datetime(2025, 1, 1, tzinfo=UTC))
    assert v.code == "unsupported-format" and "aws-nitro" in v.reason
