"""The simulated quote format and its verifier: round trip, every failure code."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime, timezone

import coincurve
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.crypto import pubkey_of
from node.attest import simquote as sq
from node.attest.policy import AttestationPolicy

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = int(AT.timestamp())
DEVICE = coincurve.PrivateKey(b"\x07" * 32)
CERT = sq.certify_device(pubkey_of(DEVICE))
MEAS = bytes.fromhex(sq.code_measurement())


def quote(*, device=DEVICE, cert=CERT, **kw) -> bytes:
    args = dict(measurement=MEAS, report_data=b"\x11" * 64, timestamp=NOW, nonce=b"", debug=False)
    args.update(kw)
    return sq.make_quote(device, cert, **args)


def verify(blob, policy=None, at=AT):
    return sq.verify_sim_quote(blob, policy=policy or AttestationPolicy.dev(), at=at)


@given(
    measurement=st.binary(min_size=32, max_size=32),
    report_data=st.binary(min_size=64, max_size=64),
    timestamp=st.integers(min_value=0, max_value=2**62),
    nonce=st.binary(max_size=64),
    debug=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_quote_encoding_round_trips(measurement, report_data, timestamp, nonce, debug):
    blob = sq.make_quote(DEVICE, CERT, measurement=measurement, report_data=report_data,
                         timestamp=timestamp, nonce=nonce, debug=debug)
    assert blob.startswith(b"KSSIMQ\x01")
    q = sq.decode_quote(blob)
    b = q.body
    assert (b.measurement, b.report_data, b.timestamp, b.nonce, b.debug) == (
        measurement, report_data, timestamp, nonce, debug)
    assert b.cert == CERT
    assert sq.encode_quote(q) == blob  # one encoding per value


def test_genuine_quote_is_trusted():
    v = verify(quote())
    assert v.ok and v.genuine and v.code == "ok" and v.simulated and v.allowed_build
    assert v.report_data == (b"\x11" * 64).hex()
    assert v.measurement == MEAS.hex()
    assert v.device_id == sq.device_id_of(pubkey_of(DEVICE)).hex()
    assert "INSECURE" in v.reason


def _every_failure():
    """One (blob, policy, at) per failure code."""
    dev = AttestationPolicy.dev()
    good = quote()
    forged_root = coincurve.PrivateKey(b"\x09" * 32)
    other_cert = sq.certify_device(pubkey_of(DEVICE), forged_root)
    bad_cert = msgspec.structs.replace(CERT, sig=bytes(64 - 1) + b"\x01")
    q = sq.decode_quote(good)
    bad_sig = sq.encode_quote(sq.SimQuote(body=q.body, sig=sq.decode_quote(quote(nonce=b"x")).sig))
    return {
        "malformed": (good[:-3], dev, AT),
        "simulated-not-allowed": (good, replace(dev, allow_simulated=False), AT),
        "untrusted-root": (quote(cert=other_cert), dev, AT),
        "bad-device-cert": (sq.encode_quote(sq.SimQuote(body=msgspec.structs.replace(q.body, cert=bad_cert), sig=q.sig)), dev, AT),
        "bad-signature": (bad_sig, dev, AT),
        "quote-from-future": (quote(timestamp=NOW + 3600), dev, AT),
        "quote-stale": (quote(timestamp=NOW - int(dev.max_quote_age) - 1), dev, AT),
        "debug-not-allowed": (quote(debug=True), dev, AT),
        "measurement-not-allowed": (quote(measurement=b"\xee" * 32), dev, AT),
    }


@pytest.mark.parametrize("code", [c for c in sq.CODES if c != "ok"])
def test_every_failure_code_is_reachable(code):
    blob, policy, at = _every_failure()[code]
    v = verify(blob, policy, at)
    assert not v.ok
    assert v.code == code, v
    assert v.reason
    genuine_codes = {"quote-from-future", "quote-stale", "debug-not-allowed", "measurement-not-allowed"}
    assert v.genuine == (code in genuine_codes)


def test_codes_table_is_complete():
    assert set(_every_failure()) | {"ok"} == set(sq.CODES)


def test_not_allowed_build_is_distinct_from_forgery():
    not_ours = verify(quote(measurement=b"\xee" * 32))
    forged = verify(quote(cert=sq.certify_device(pubkey_of(DEVICE), coincurve.PrivateKey(b"\x09" * 32))))
    assert not_ours.genuine and not_ours.allowed_build is False and "not an allowed Keyswitch build" in not_ours.reason
    assert not forged.genuine and forged.code == "untrusted-root"
    assert not_ours.headline().startswith("GENUINE, NOT TRUSTED")
    assert forged.headline().startswith("REFUSED")


def test_debug_and_foreign_builds_accepted_only_when_the_policy_says_so():
    dev = AttestationPolicy.dev()
    assert verify(quote(debug=True), replace(dev, allow_debug=True)).ok
    assert verify(quote(measurement=b"\xee" * 32), dev.with_measurements("ee" * 32)).ok


@given(st.binary(max_size=600))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_raise(blob):
    v = verify(blob)
    assert not v.ok and v.code == "malformed"


@given(st.binary(max_size=400))
@settings(max_examples=100, deadline=None)
def test_bytes_after_the_magic_never_raise(tail):
    v = verify(b"KSSIMQ\x01" + tail)
    assert not v.ok


_GOOD = quote()


@given(pos=st.integers(min_value=0, max_value=len(_GOOD) - 1), mask=st.integers(min_value=1, max_value=255))
@settings(max_examples=300, deadline=None)
def test_any_flipped_byte_is_refused(pos, mask):
    blob = bytearray(_GOOD)
    blob[pos] ^= mask
    v = verify(bytes(blob))
    assert not v.ok
    assert v.code in sq.CODES


def test_verifier_uses_at_not_the_wall_clock():
    blob = quote(timestamp=1_000_000)
    assert verify(blob, at=datetime.fromtimestamp(1_000_100, timezone.utc)).ok
    assert verify(blob, at=datetime(2026, 1, 1, tzinfo=timezone.utc)).code == "quote-stale"


def test_dev_vendor_root_is_a_public_constant():
    assert sq.dev_vendor_root_pubkey() == pubkey_of(coincurve.PrivateKey(
        __import__("node.crypto", fromlist=["tagged_hash"]).tagged_hash("keyswitch/sim-vendor-root/1",
                                                                      sq.DEV_VENDOR_SEED)))
    assert sq.dev_vendor_root_pubkey().hex() in AttestationPolicy.dev().sim_vendor_roots


def test_measurement_is_reproducible_and_covers_the_enclave_code(tmp_path):
    from node.enclave.measure import project_root

    root = project_root()
    files = sq.measured_files(root)
    assert "node/enclave/core.py" in files and "node/crypto.py" in files
    for rel in files:
        dst = tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dst)
    assert sq.code_measurement(tmp_path) == sq.code_measurement()  # same source -> same measurement
    core = tmp_path / "node/enclave/core.py"
    core.write_bytes(core.read_bytes() + b"\n# changed\n")
    assert sq.code_measurement(tmp_path) != sq.code_measurement()
