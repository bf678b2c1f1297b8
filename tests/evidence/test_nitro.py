"""Real AWS Nitro Enclaves attestation documents (../shared/testdata/attestation/aws-nitro),
verified as of their own timestamps (the leaf certificates live 3 hours)."""

import base64
import dataclasses
import datetime as dt
import hashlib
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings, strategies as st

from node.attest.evidence.nitro import (
    CODES,
    ROOT_SHA256,
    ChainError,
    check_chain,
    looks_like_nitro,
    parse_document,
    pinned_root_der,
    verify_nitro,
)
from node.attest.policy import AttestationPolicy
from node.attest.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT.parent / "shared" / "testdata" / "attestation"
D = TESTDATA / "aws-nitro"
PROD, DEBUG = D / "nitro_attestation.b64", D / "nitro_attestation_debug.b64"
UTC = dt.timezone.utc
AT = dt.datetime.fromtimestamp(1725719859.545, UTC)  # the production document's timestamp
AT_DEBUG = dt.datetime.fromtimestamp(1725719886.508, UTC)
PCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"

pytestmark = pytest.mark.skipif(not PROD.exists(), reason=f"Nitro samples not found at {D}")


def raw(path=PROD) -> bytes:
    return base64.b64decode(path.read_bytes())


def policy(*allowed):
    return AttestationPolicy.dev().with_measurements(*allowed)


def verify(blob, at=AT, pol=None, **kw):
    return verify_nitro(blob, policy=pol or policy(), at=at, **kw)


def rebuild(blob: bytes, **changes) -> bytes:
    """The document with payload fields replaced (None deletes); the old signature is kept."""
    prot, unprot, payload, sig = cbor2.loads(blob)
    p = cbor2.loads(payload)
    for k, v in changes.items():
        if v is None:
            p.pop(k, None)
        else:
            p[k] = v
    return cbor2.dumps([prot, unprot, cbor2.dumps(p), sig])


def test_production_sample_is_genuine_and_trusted_with_its_pcr0():
    v = verify(raw())
    assert v.genuine and not v.ok and v.code == "measurement-not-allowed" and v.allowed_build is False
    assert v.vendor == "aws-nitro" and v.measurement == PCR0 and v.debug is False
    assert v.verified_at == AT.isoformat()
    d = v.details
    assert d["module_id"] == "i-0a22e5c5f24d22174-enc0191cceb4289903f" and d["timestamp_ms"] == 1725719859545
    assert d["pcrs"]["0"] == PCR0 and d["pcrs"]["3"] == "00" * 48 and d["chain_length"] == 5
    # 1024 bytes each is the CDDL maximum, and real NSM produces it: accepted
    assert d["user_data"] == d["nonce"] == d["public_key"] == "01" * 1024
    assert v.report_data == d["user_data"]
    trusted = verify(raw(), pol=policy(PCR0.upper()))
    assert trusted.ok and trusted.code == "ok" and trusted.allowed_build is True and trusted.genuine
    assert "TRUSTED" in trusted.headline()


@pytest.mark.parametrize("at", [
    dt.datetime(2024, 9, 7, 14, 37, 37, tzinfo=UTC),  # leaf not_before + 1 s (the timestamp is 2.5 s later)
    dt.datetime(2024, 9, 7, 17, 37, 39, tzinfo=UTC),  # the leaf's not_after
    dt.datetime(2024, 9, 7, 16, 0),  # naive datetimes are UTC
])
def test_anywhere_inside_the_window(at):
    assert verify(raw(), at=at, pol=policy(PCR0)).ok


def test_base64_text_and_tagged_cose_are_accepted():
    assert verify(PROD.read_bytes(), pol=policy(PCR0)).ok
    assert verify(PROD.read_text() + "\n", pol=policy(PCR0)).ok
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(raw())))
    assert tagged[0] == 0xD2 and verify(tagged, pol=policy(PCR0)).ok
    assert verify(cbor2.dumps(cbor2.CBORTag(17, cbor2.loads(raw())))).code == "malformed"


def test_debug_sample_is_genuine_but_refused_as_debug():
    v = verify(raw(DEBUG), at=AT_DEBUG)
    assert v.genuine and not v.ok and v.code == "debug-not-allowed" and v.debug is True
    assert v.measurement == "00" * 48 and v.details["pcrs"]["1"] == v.details["pcrs"]["2"] == "00" * 48
    # even with the all-zero PCR0 on the allow-list, debug is refused unless the policy allows debug
    assert verify(raw(DEBUG), at=AT_DEBUG, pol=policy("00" * 48)).code == "debug-not-allowed"
    lax = dataclasses.replace(policy(), allow_debug=True)
    assert verify(raw(DEBUG), at=AT_DEBUG, pol=lax).code == "measurement-not-allowed"
    assert verify(raw(DEBUG), at=AT_DEBUG, pol=dataclasses.replace(lax, allowed_measurements=frozenset({"00" * 48}))).ok


@pytest.mark.parametrize("at, words", [
    (dt.datetime(2024, 9, 7, 17, 37, 40, tzinfo=UTC), "expired at 2024-09-07T17:37:39"),  # leaf just expired
    (dt.datetime(2024, 9, 7, 14, 37, 35, tzinfo=UTC), "not valid until 2024-09-07T14:37:36"),  # leaf not yet valid
    (dt.datetime(2026, 11, 26, tzinfo=UTC), "expired"),  # today: intermediates long expired too
    (dt.datetime(2019, 1, 1, tzinfo=UTC), "not valid until 2019-10-28"),  # before the root itself
])
def test_outside_the_window_is_expired(at, words):
    v = verify(raw(), at=at, pol=policy(PCR0))
    assert not v.ok and not v.genuine and v.code == "expired" and words in v.reason, v.reason
    assert v.measurement == PCR0  # the facts are still reported


def test_a_flipped_payload_byte_is_a_bad_signature():
    doc = bytearray(raw())
    i = bytes(doc).find(b"\x01" * 1024)  # inside a 1024-byte field: the payload still parses
    assert i > 0
    doc[i + 100] ^= 0x40
    v = verify(bytes(doc), pol=policy(PCR0))
    assert not v.genuine and not v.ok and v.code == "bad-signature"
    sig_flipped = bytearray(raw())
    sig_flipped[-7] ^= 0x01  # the last 96 bytes are r||s
    assert verify(bytes(sig_flipped), pol=policy(PCR0)).code == "bad-signature"


def test_a_substituted_user_data_is_a_bad_signature():
    # a valid-looking document claiming a different binding, with the original signature
    v = verify(rebuild(raw(), user_data=b"\x02" * 64), pol=policy(PCR0))
    assert not v.genuine and v.code == "bad-signature" and v.report_data == "02" * 64


def _throwaway_p384_root(cn="aws.nitro-enclaves"):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # same name, wrong key
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2019, 1, 1)).not_valid_after(dt.datetime(2049, 1, 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))
    return cert.public_bytes(Encoding.DER)


def test_a_different_pinned_root_is_untrusted():
    v = verify(raw(), pol=policy(PCR0), root_der=_throwaway_p384_root())
    assert not v.genuine and not v.ok and v.code == "untrusted-root"


def test_the_pinned_root_is_aws_nitro_root_g1():
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = pinned_root_der()
    assert hashlib.sha256(der).hexdigest() == ROOT_SHA256
    shared = x509.load_pem_x509_certificate((D / "AWS_NitroEnclaves_Root-G1.pem").read_bytes())
    assert shared.public_bytes(Encoding.DER) == der
    assert parse_document(raw()).cabundle[0] == der


def test_a_bundle_whose_first_certificate_is_not_the_root_is_untrusted():
    doc = parse_document(raw())
    v = verify(rebuild(raw(), cabundle=list(doc.cabundle[1:])), pol=policy(PCR0))
    assert not v.genuine and v.code == "untrusted-root"
    # a forger who also sends a root of its own still does not chain to the pinned one
    v = verify(rebuild(raw(), cabundle=[_throwaway_p384_root(), *doc.cabundle[1:]]), pol=policy(PCR0))
    assert v.code == "untrusted-root"


@pytest.mark.parametrize("keep", [slice(0, 4 - 1), slice(0, 1), [0, 2, 3], [0, 1, 3], [0, 3, 2, 1]])
def test_a_truncated_or_reordered_cabundle_is_refused(keep):
    doc = parse_document(raw())
    bundle = [doc.cabundle[i] for i in keep] if isinstance(keep, list) else list(doc.cabundle[keep])
    with pytest.raises(ChainError) as err:
        check_chain(doc.certificate, bundle, at=AT)
    assert err.value.code == "bad-chain", err.value.reason
    v = verify(rebuild(raw(), cabundle=bundle), pol=policy(PCR0))
    assert not v.genuine and not v.ok and v.code == "bad-chain", v.reason
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = check_chain(doc.certificate, doc.cabundle, at=AT)  # the untouched chain passes
    assert leaf.public_bytes(Encoding.DER) == doc.certificate


def test_the_leaf_certificate_cannot_be_swapped():
    debug_leaf = parse_document(raw(DEBUG)).certificate  # genuine, same chain, other enclave
    both_valid = dt.datetime(2024, 9, 7, 15, tzinfo=UTC)
    v = verify(rebuild(raw(), certificate=debug_leaf), at=both_valid, pol=policy(PCR0))
    assert not v.genuine and v.code in ("bad-signature", "bad-chain"), v.reason


@pytest.mark.parametrize("changes, words", [
    ({"digest": "SHA256"}, "digest"),
    ({"pcrs": None}, "pcrs"),
    ({"pcrs": {1: b"\x00" * 48}}, "PCR0"),
    ({"pcrs": {0: b"\x00" * 47}}, "PCR0"),
    ({"module_id": ""}, "module_id"),
    ({"timestamp": -1}, "timestamp"),
    ({"timestamp": True}, "timestamp"),
    ({"timestamp": 2**62}, "timestamp"),  # past any datetime: refused, not an error
    ({"certificate": b""}, "certificate"),
    ({"cabundle": []}, "cabundle"),
    ({"cabundle": ["not bytes"]}, "cabundle"),
    ({"user_data": b"\x01" * 1025}, "user_data"),
    ({"nonce": "text"}, "nonce"),
    ({"public_key": b""}, "public_key"),
])
def test_malformed_fields_are_named(changes, words):
    v = verify(rebuild(raw(), **changes), pol=policy(PCR0))
    assert not v.ok and not v.genuine and v.code == "malformed" and words in v.reason, v.reason


def test_malformed_cose():
    prot, unprot, payload, sig = cbor2.loads(raw())
    cases = {
        "wrong alg": cbor2.dumps([cbor2.dumps({1: -7}), unprot, payload, sig]),
        "short sig": cbor2.dumps([prot, unprot, payload, sig[:64]]),
        "3 items": cbor2.dumps([prot, payload, sig]),
        "trailing": raw() + b"\x00",
        "payload not map": cbor2.dumps([prot, unprot, cbor2.dumps([1, 2]), sig]),
        "bad cert": rebuild(raw(), certificate=b"\x30\x03\x02\x01\x01"),
        "empty": b"",
        "truncated": raw()[:4000],
    }
    for name, blob in cases.items():
        v = verify(blob, pol=policy(PCR0))
        assert v.code == "malformed" and not v.genuine and v.reason and "\n" not in v.reason, (name, v)


def test_freshness_against_the_policy():
    stale = dataclasses.replace(policy(PCR0), max_quote_age=60.0)
    v = verify(raw(), at=AT + dt.timedelta(minutes=5), pol=stale)
    assert v.genuine and not v.ok and v.code == "quote-stale"
    assert verify(raw(), at=AT + dt.timedelta(seconds=30), pol=stale).ok


def test_format_detection():
    assert looks_like_nitro(raw()) and looks_like_nitro(PROD.read_bytes()) and looks_like_nitro(raw(DEBUG))
    assert looks_like_nitro(cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(raw()))))
    for other in (b"", b"junk", b"\x84", cbor2.dumps([1, 2, 3, 4]), b"KSSIMQ" + bytes(100)):
        assert not looks_like_nitro(other)
    for path in (TESTDATA / "intel-dcap" / "sgx_quote_v3.bin", TESTDATA / "amd-sev-snp" / "attestation.bin"):
        if path.exists():
            assert not looks_like_nitro(path.read_bytes())


def _checked(v) -> Verdict:
    assert isinstance(v, Verdict) and v.vendor == "aws-nitro"
    assert v.code in CODES and v.code != "internal-error", v
    assert v.reason and "\n" not in v.reason
    return v


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_give_a_verdict(blob):
    v = _checked(verify(blob, pol=policy(PCR0)))
    assert not v.ok and not v.genuine
    assert isinstance(looks_like_nitro(blob), bool)


_SAMPLE = raw() if PROD.exists() else b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, max(len(_SAMPLE) - 1, 0)), st.integers(1, 255)), min_size=1, max_size=4,
                unique_by=lambda flip: flip[0]),
       st.one_of(st.none(), st.integers(0, max(len(_SAMPLE) - 1, 0))))
def test_mutated_samples_give_a_verdict_and_are_never_genuine(flips, cut):
    doc = bytearray(_SAMPLE)
    for i, x in flips:
        doc[i] ^= x
    if cut is not None:
        doc = doc[:cut]
    v = _checked(verify(bytes(doc), pol=policy(PCR0)))
    assert not v.genuine and not v.ok


P384_N = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)


def test_aws_signs_with_high_s_so_high_s_is_not_refused():
    """Why a high-S (r, n - s) signature is accepted (issue #17 item 10 asked to refuse it): AWS's own signer
    does not normalise S. The shared debug document, genuine, has a high S; refusing high S would refuse about
    half of all genuine Nitro documents. The flipped form carries nothing new: every checked byte but S is the
    same, so it yields the very same verdict (the one thing it changes is the blob's hash, i.e. one extra
    cache entry per document)."""
    _p, _u, _pl, debug_sig = cbor2.loads(raw(DEBUG))
    assert int.from_bytes(debug_sig[48:], "big") > P384_N // 2  # AWS signed it so
    assert verify(raw(DEBUG), at=AT_DEBUG).genuine
    prot, unprot, payload, sig = cbor2.loads(raw())
    flipped = sig[:48] + (P384_N - int.from_bytes(sig[48:], "big")).to_bytes(48, "big")
    a = verify(raw(), pol=policy(PCR0))
    b = verify(cbor2.dumps([prot, unprot, payload, flipped]), pol=policy(PCR0))
    assert a.ok and b == a
