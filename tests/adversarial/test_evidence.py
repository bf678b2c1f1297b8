"""Attacks on the attestation evidence parsers, driven as an attacker would: take a real public sample
(../shared/testdata/attestation), change its bytes, and hand it to ``verify_evidence`` (the entry point the
CLI and ``verify_attestation`` use) and, once per attack, to ``python -m node attest verify``.

Every mutated blob below is refused: ``genuine=False`` (exit 4) with a one-line reason.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from node.attest.evidence import verify_evidence
from node.attest.evidence.ias import pack_ias
from node.attest.policy import AttestationPolicy

ROOT = Path(__file__).resolve().parents[2]
T = ROOT.parent / "shared" / "testdata" / "attestation"
UTC = dt.timezone.utc

SGX, SGX_C = T / "intel-dcap/sgx_quote_v3.bin", T / "intel-dcap/sgx_quote_v3_collateral.json"
TDX, TDX_C = T / "intel-dcap/tdx_quote_v4.bin", T / "intel-dcap/tdx_quote_v4_collateral.json"
DCAP_AT = dt.datetime(2025, 7, 1, tzinfo=UTC)
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MRTD = ("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
        "de03ae6dc5f87f27428b2538873118b7")

NITRO = T / "aws-nitro/nitro_attestation.b64"
NITRO_DEBUG = T / "aws-nitro/nitro_attestation_debug.b64"
NITRO_AT = dt.datetime.fromtimestamp(1725719859.545, UTC)
NITRO_DEBUG_AT = dt.datetime.fromtimestamp(1725719886.508, UTC)
PCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
P384_N = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)

IAS = T / "intel-ias"
IAS_V5 = IAS / "avr_v5_body_sw_hardening_needed"
IAS_CHAIN = IAS / "avr_certificates_urlencoded.pem"
IAS_TS = dt.datetime(2023, 9, 27, 15, 51, 58, 44803, tzinfo=UTC)  # the v5 body's "timestamp"
IAS_MRENCLAVE = "d40c35b716c9ef1715d26100bb5e152d5045543017dacfcb492697028985cb7c"

SNP = T / "amd-sev-snp"
SNP_AT = dt.datetime(2023, 1, 1, tzinfo=UTC)
SNP_MEASUREMENT = ("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
                   "6bdf8a9ece31a5a608eb0cf2e4872b01")

pytestmark = pytest.mark.skipif(not T.exists(), reason=f"attestation samples not found at {T}")


def trusting(*measurements, allow_debug=False, max_quote_age=None):
    """A policy that trusts the sample's own build: so only the check under attack stands in the way."""
    import dataclasses

    pol = dataclasses.replace(AttestationPolicy.dev().with_measurements(*measurements), allow_debug=allow_debug)
    return pol if max_quote_age is None else dataclasses.replace(pol, max_quote_age=max_quote_age)


def refused(v):
    """The verdict the CLI turns into exit 4, with a one-line reason."""
    return not v.ok and not v.genuine and v.reason and "\n" not in v.reason


# ------------------------------------------------------------------ Intel DCAP (SGX v3, TDX v4)

def dcap_end(q: bytes) -> int:
    """Where the quote ends by its own length field (header, report body, u32 signature-data length, data)."""
    body = 384 if struct.unpack_from("<I", q, 4)[0] == 0 else 584
    return 48 + body + 4 + struct.unpack_from("<I", q, 48 + body)[0]


def sgx() -> bytes:
    return SGX.read_bytes()


def tdx() -> bytes:
    """The TDX quote exactly as long as it declares itself (the shared file carries zero padding after it)."""
    q = TDX.read_bytes()
    return q[:dcap_end(q)]


def dcap(blob: bytes, coll: Path, *measurements):
    return verify_evidence(blob, policy=trusting(*measurements), at=DCAP_AT, collateral=coll.read_bytes())


def test_the_unmutated_quotes_are_trusted():
    assert dcap(sgx(), SGX_C, MRENCLAVE).ok
    assert dcap(tdx(), TDX_C, MRTD).ok


@pytest.mark.parametrize("tail", [b"\x00", b"\x00" * 70, b"attacker chosen trailing data"])
def test_sgx_quote_with_trailing_bytes_is_refused(tail):
    v = dcap(sgx() + tail, SGX_C, MRENCLAVE)
    assert refused(v) and v.code == "malformed" and "trailing" in v.reason, v


@pytest.mark.parametrize("tail", [b"\x00", b"\x01", b"attacker chosen trailing data"])
def test_tdx_quote_with_trailing_bytes_is_refused(tail):
    v = dcap(tdx() + tail, TDX_C, MRTD)
    assert refused(v) and v.code == "malformed" and "trailing" in v.reason, v


def test_tdx_file_with_zero_padding_after_the_quote_is_refused():
    padded = TDX.read_bytes()
    assert len(padded) > dcap_end(padded) and not any(padded[dcap_end(padded):])  # the shared sample's padding
    v = dcap(padded, TDX_C, MRTD)
    assert refused(v) and v.code == "malformed" and "trailing" in v.reason, v


@pytest.mark.parametrize("cut", [1, 2, 40, 71])
def test_truncated_tdx_quote_is_refused(cut):
    for q in (tdx(), TDX.read_bytes()):  # as declared, and as the shared (padded) file
        v = dcap(q[:-cut], TDX_C, MRTD)
        assert refused(v) and v.code == "malformed", (cut, v)


@pytest.mark.parametrize("cut", [1, 2, 40])
def test_truncated_sgx_quote_is_refused(cut):
    v = dcap(sgx()[:-cut], SGX_C, MRENCLAVE)
    assert refused(v) and v.code == "malformed", v


def _sgx_offsets(q: bytes) -> dict:
    """Offsets of the (unsigned) length fields in an SGX v3 quote's signature data."""
    sig_len_at = 48 + 384
    auth_len_at = sig_len_at + 4 + 64 + 64 + 384 + 64
    auth_len = struct.unpack_from("<H", q, auth_len_at)[0]
    cert_type_at = auth_len_at + 2 + auth_len
    return dict(sig_len=sig_len_at, auth_len=auth_len_at, cert_type=cert_type_at, cert_size=cert_type_at + 2)


def _tdx_offsets(q: bytes) -> dict:
    sig_len_at = 48 + 584
    outer_type_at = sig_len_at + 4 + 64 + 64
    auth_len_at = outer_type_at + 6 + 384 + 64
    auth_len = struct.unpack_from("<H", q, auth_len_at)[0]
    inner_type_at = auth_len_at + 2 + auth_len
    return dict(sig_len=sig_len_at, outer_type=outer_type_at, outer_size=outer_type_at + 2, auth_len=auth_len_at,
                inner_type=inner_type_at, inner_size=inner_type_at + 2)


def _bump(q: bytes, at: int, fmt: str, delta: int) -> bytes:
    b = bytearray(q)
    struct.pack_into(fmt, b, at, struct.unpack_from(fmt, b, at)[0] + delta)
    return bytes(b)


@pytest.mark.parametrize("field,fmt", [("sig_len", "<I"), ("auth_len", "<H"), ("cert_size", "<I")])
@pytest.mark.parametrize("delta", [-1, 1])
def test_sgx_length_fields_that_disagree_with_the_buffer_are_refused(field, fmt, delta):
    q = sgx()
    v = dcap(_bump(q, _sgx_offsets(q)[field], fmt, delta), SGX_C, MRENCLAVE)
    assert refused(v) and v.code == "malformed", v


def test_sgx_cert_data_shrunk_to_leave_room_for_trailing_bytes_is_refused():
    """The PCK chain's declared size and the signature-data length both cover only part of the buffer."""
    q = sgx()
    o = _sgx_offsets(q)
    shrunk = _bump(_bump(q, o["cert_size"], "<I", -1), o["sig_len"], "<I", -1)  # last byte (a NUL) now outside
    v = dcap(shrunk, SGX_C, MRENCLAVE)
    assert refused(v) and v.code == "malformed" and "trailing" in v.reason, v


@pytest.mark.parametrize("field,fmt", [("sig_len", "<I"), ("outer_size", "<I"), ("auth_len", "<H"),
                                       ("inner_size", "<I")])
@pytest.mark.parametrize("delta", [-1, 1, 70])
def test_tdx_length_fields_that_disagree_with_the_buffer_are_refused(field, fmt, delta):
    padded = TDX.read_bytes()  # 70 zero bytes follow the quote: room for a length field to grow into
    for q in (tdx(), padded):
        v = dcap(_bump(q, _tdx_offsets(q)[field], fmt, delta), TDX_C, MRTD)
        assert refused(v) and v.code == "malformed", (field, delta, len(q), v)


def test_tdx_every_length_field_grown_over_the_padding_is_refused():
    """The three enclosing length fields grown by 70, so the structure nests exactly over the zero padding
    (the PCK chain then ends in 70 NULs): dcap-qvl found this genuine."""
    q = TDX.read_bytes()
    o = _tdx_offsets(q)
    for f, fmt in (("sig_len", "<I"), ("outer_size", "<I"), ("inner_size", "<I")):
        q = _bump(q, o[f], fmt, len(TDX.read_bytes()) - dcap_end(TDX.read_bytes()))
    v = dcap(q, TDX_C, MRTD)
    assert refused(v) and v.code == "malformed", v


@pytest.mark.parametrize("cert_type", [1, 4, 6, 7])
def test_sgx_certification_data_of_another_type_is_refused(cert_type):
    q = bytearray(sgx())
    struct.pack_into("<H", q, _sgx_offsets(bytes(q))["cert_type"], cert_type)
    v = dcap(bytes(q), SGX_C, MRENCLAVE)
    assert refused(v) and v.code == "malformed" and "certification data type" in v.reason, v


# ------------------------------------------------------------------ AWS Nitro (COSE_Sign1)

def nitro(path=NITRO) -> list:
    return cbor2.loads(base64.b64decode(path.read_bytes()))


def nitro_verify(doc, at=NITRO_AT, pol=None):
    blob = doc if isinstance(doc, bytes) else cbor2.dumps(doc)
    return verify_evidence(blob, policy=pol or trusting(PCR0), at=at)


def test_the_unmutated_nitro_document_is_trusted():
    assert nitro_verify(nitro()).ok


@pytest.mark.parametrize("unprotected", [
    {4: b"attacker key id"},  # kid
    {1: -7},  # an algorithm in the unprotected bucket
    {"x": "y"},
    {33: [b"\x30\x00"]},  # x5chain
])
def test_nitro_non_empty_unprotected_header_is_refused(unprotected):
    prot, _unprot, payload, sig = nitro()
    v = nitro_verify([prot, unprotected, payload, sig])
    assert refused(v) and v.code == "malformed" and "unprotected" in v.reason, v
    tagged = cbor2.dumps(cbor2.CBORTag(18, [prot, unprotected, payload, sig]))
    assert refused(nitro_verify(tagged))


@pytest.mark.parametrize("variant", ["long-length", "indefinite-array", "indefinite-map", "tagged-long-length"])
def test_nitro_non_shortest_cbor_encoding_is_refused(variant):
    """Same COSE_Sign1 values, other bytes: the signature covers none of the outer structure's encoding."""
    prot, unprot, payload, sig = nitro()
    head = cbor2.dumps([prot, unprot, payload])[1:]  # the first three items, without the array header
    blob = {
        "long-length": b"\x84" + head + b"\x59\x00\x60" + sig,  # 96-byte bstr with a 2-byte length
        "indefinite-array": b"\x9f" + head + cbor2.dumps(sig) + b"\xff",
        "indefinite-map": b"\x84" + cbor2.dumps(prot) + b"\xbf\xff" + cbor2.dumps(payload) + cbor2.dumps(sig),
        "tagged-long-length": b"\xd8\x12\x84" + head + b"\x59\x00\x60" + sig,  # tag 18 in two bytes
    }[variant]
    v = nitro_verify(blob)
    assert refused(v) and v.code == "malformed" and "shortest" in v.reason, v


B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.mark.parametrize("variant", ["inner-newline", "spaces", "padding-bits"])
def test_nitro_base64_in_another_spelling_is_refused(variant):
    tagged = b"\xd2" + base64.b64decode(NITRO.read_bytes())  # the genuine document, COSE-tagged
    text = base64.b64encode(tagged)
    assert text.endswith(b"==") and nitro_verify(text).ok  # the last data character carries 4 padding bits
    flipped = bytes([B64[B64.index(text[-3]) ^ 1]])
    blob = {"inner-newline": text[:76] + b"\n" + text[76:], "spaces": b"  " + text,
            "padding-bits": text[:-3] + flipped + b"=="}[variant]
    assert base64.b64decode(b"".join(blob.split())) == tagged  # the same bytes, decoded
    v = nitro_verify(blob)
    assert refused(v), v


@pytest.mark.parametrize("r_or_s", ["r", "s"])
@pytest.mark.parametrize("value", [0, P384_N, P384_N + 1, 2 ** 384 - 1])
def test_nitro_signature_scalars_out_of_range_are_refused(r_or_s, value):
    prot, unprot, payload, sig = nitro()
    enc = value.to_bytes(48, "big")
    sig = enc + sig[48:] if r_or_s == "r" else sig[:48] + enc
    v = nitro_verify([prot, unprot, payload, sig])
    assert refused(v) and v.code == "bad-signature", v


def _self_made_nitro(timestamp_ms: int) -> tuple[bytes, bytes]:
    """(document, root DER): a Nitro-shaped document signed under a throwaway P-384 root, as a test root
    stands in for AWS's (``verify_nitro(root_der=...)``): a signer that can pick the document's timestamp."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    root_key, leaf_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    window = dict(not_valid_before=dt.datetime(2020, 1, 1), not_valid_after=dt.datetime(2040, 1, 1))
    root = (x509.CertificateBuilder(subject_name=name("root"), issuer_name=name("root"),
                                    public_key=root_key.public_key(), serial_number=1, **window)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA384()))
    leaf = x509.CertificateBuilder(subject_name=name("leaf"), issuer_name=name("root"),
                                   public_key=leaf_key.public_key(), serial_number=2, **window) \
        .sign(root_key, hashes.SHA384())
    root_der = root.public_bytes(Encoding.DER)
    payload = cbor2.dumps({"module_id": "i-test", "digest": "SHA384", "timestamp": timestamp_ms,
                           "pcrs": {0: bytes.fromhex(PCR0)}, "certificate": leaf.public_bytes(Encoding.DER),
                           "cabundle": [root_der], "public_key": None, "user_data": None, "nonce": None})
    prot = cbor2.dumps({1: -35})
    der = leaf_key.sign(cbor2.dumps(["Signature1", prot, b"", payload]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    if s > P384_N // 2:
        s = P384_N - s
    return cbor2.dumps([prot, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")]), root_der


def test_nitro_document_signed_after_the_verification_time_is_refused():
    from node.attest.evidence.nitro import verify_nitro

    signed_at = dt.datetime(2030, 1, 1, 12, tzinfo=UTC)
    doc, root = _self_made_nitro(int(signed_at.timestamp() * 1000))
    pol = trusting(PCR0, max_quote_age=7 * 86400)
    assert verify_nitro(doc, policy=pol, at=signed_at, root_der=root).ok  # the document itself is fine
    assert verify_nitro(doc, policy=pol, at=signed_at - dt.timedelta(seconds=299), root_der=root).ok  # skew
    for early in (dt.timedelta(seconds=301), dt.timedelta(hours=1), dt.timedelta(days=300)):
        v = verify_nitro(doc, policy=pol, at=signed_at - early, root_der=root)
        assert refused(v) and v.code == "quote-from-future", (early, v)


# ------------------------------------------------------------------ Intel IAS

def ias_blob() -> bytes:
    return pack_ias((IAS_V5.with_suffix(".json")).read_bytes(), IAS_V5.with_suffix(".sig").read_bytes(),
                    IAS_CHAIN.read_bytes())


@pytest.mark.parametrize("before", [
    dt.timedelta(microseconds=1),
    dt.timedelta(milliseconds=44),  # 2023-09-27T15:51:58Z, the instant the samples' README suggests
    dt.timedelta(seconds=299),
    dt.timedelta(minutes=52),
    dt.timedelta(days=400),
])
def test_ias_report_verified_before_its_own_timestamp_is_refused(before):
    v = verify_evidence(ias_blob(), policy=trusting(IAS_MRENCLAVE, allow_debug=True), at=IAS_TS - before)
    assert refused(v) and v.code == "quote-from-future" and "after" in v.reason, v


def test_ias_report_verified_at_or_after_its_timestamp_is_trusted():
    for at in (IAS_TS, IAS_TS + dt.timedelta(minutes=1)):
        assert verify_evidence(ias_blob(), policy=trusting(IAS_MRENCLAVE, allow_debug=True), at=at).ok


def _ias_parts():
    return (IAS_V5.with_suffix(".json").read_bytes(), IAS_V5.with_suffix(".sig").read_bytes(),
            IAS_CHAIN.read_bytes())


def _plain_chain() -> bytes:
    import urllib.parse

    return urllib.parse.unquote_to_bytes(IAS_CHAIN.read_bytes())


@pytest.mark.parametrize("variant", ["junk-after-encoded", "junk-after-plain", "junk-before", "junk-between",
                                     "re-encoded", "extra-blank-line"])
def test_ias_chain_with_bytes_besides_the_certificates_is_refused(variant):
    """The chain is not signed: anything but the certificates in it would ride along a genuine report."""
    body, sig, chain = _ias_parts()
    plain = _plain_chain()
    end = plain.index(b"-----END CERTIFICATE-----\n") + len(b"-----END CERTIFICATE-----\n")
    chain = {
        "junk-after-encoded": chain + b"%0Ahello",
        "junk-after-plain": plain + b"hello world\n",
        "junk-before": b"junk\n" + plain,
        "junk-between": plain[:end] + b"between\n" + plain[end:],
        "re-encoded": chain.replace(b"-----BEGIN", b"%2D----BEGIN", 1),  # same PEM once URL-decoded
        "extra-blank-line": plain + b"\n",
    }[variant]
    v = verify_evidence(pack_ias(body, sig, chain), policy=trusting(IAS_MRENCLAVE, allow_debug=True),
                        at=IAS_TS + dt.timedelta(minutes=1))
    assert refused(v) and v.code == "malformed" and "chain" in v.reason, v


@pytest.mark.parametrize("variant", ["trailing-newline", "inner-whitespace", "padding-bits"])
def test_ias_signature_in_a_non_canonical_spelling_is_refused(variant):
    body, sig, chain = _ias_parts()
    assert sig.endswith(b"Q==")  # 'Q' carries 2 bits of the last byte and 4 zero padding bits
    sig = {"trailing-newline": sig + b"\n", "inner-whitespace": sig[:10] + b" " + sig[10:],
           "padding-bits": sig[:-3] + b"R=="}[variant]
    v = verify_evidence(pack_ias(body, sig, chain), policy=trusting(IAS_MRENCLAVE, allow_debug=True),
                        at=IAS_TS + dt.timedelta(minutes=1))
    assert refused(v) and v.code == "malformed" and "signature" in v.reason, v


def test_ias_chain_plain_or_as_intel_encodes_it_is_trusted():
    body, sig, chain = _ias_parts()
    for c in (chain, _plain_chain()):
        assert verify_evidence(pack_ias(body, sig, c), policy=trusting(IAS_MRENCLAVE, allow_debug=True),
                               at=IAS_TS + dt.timedelta(minutes=1)).ok


# ------------------------------------------------------------------ AMD SEV-SNP

def snp_verify(blob: bytes, fmt=None):
    coll = (SNP / "vcek.testcer").read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = x509.load_der_x509_certificate(coll).public_bytes(Encoding.PEM) if b"-----BEGIN" not in coll else coll
    return verify_evidence(blob, policy=trusting(SNP_MEASUREMENT, allow_debug=True), at=SNP_AT,
                           collateral=pem + (SNP / "milan.testcer").read_bytes(), format=fmt)


def test_the_unmutated_snp_report_is_trusted():
    assert snp_verify((SNP / "attestation.bin").read_bytes()).ok


@pytest.mark.parametrize("tail", [b"\x00", b"trailing"])
def test_snp_report_with_trailing_bytes_is_refused(tail):
    blob = (SNP / "attestation.bin").read_bytes() + tail
    for fmt in (None, "amd-sev-snp"):
        v = snp_verify(blob, fmt)
        assert refused(v) and v.code in ("malformed", "unsupported-format"), v


@pytest.mark.parametrize("offset", [0x2A0 + 144, 0x2A0 + 200, 0x49F])
def test_snp_unsigned_reserved_bytes_after_the_signature_must_be_zero(offset):
    b = bytearray((SNP / "attestation.bin").read_bytes())
    b[offset] = 0x5A  # outside the signed range [0, 0x2A0) and outside R, S: the signature still verifies
    v = snp_verify(bytes(b))
    assert refused(v) and v.code == "malformed" and "reserved" in v.reason, v


@pytest.mark.parametrize("offset", [0x2A0 + 48, 0x2A0 + 71, 0x2A0 + 72 + 48, 0x2A0 + 143])
def test_snp_signature_component_padding_must_be_zero(offset):
    b = bytearray((SNP / "attestation.bin").read_bytes())
    b[offset] = 0x01
    v = snp_verify(bytes(b))
    assert refused(v) and v.code in ("malformed", "bad-signature"), v


# ------------------------------------------------------------------ the CLI, once per attack

def _cli(tmp_path: Path, name: str, blob: bytes, *args) -> tuple[int, dict]:
    f = tmp_path / name
    f.write_bytes(blob)
    r = subprocess.run([sys.executable, "-m", "node", "attest", "verify", "--json", str(f), *map(str, args)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.returncode, json.loads(r.stdout)


def test_cli_exit_4_for_every_attack(tmp_path):
    sig_arg = ["--collateral", SGX_C, "--at", "2025-07-01T00:00:00Z", "--allow-measurement", MRENCLAVE]
    tdx_arg = ["--collateral", TDX_C, "--at", "2025-07-01T00:00:00Z", "--allow-measurement", MRTD]
    nitro_arg = ["--at", "2024-09-07T14:37:40Z", "--allow-measurement", PCR0]
    prot, _u, payload, sig = nitro()
    cases = [
        ("sgx-trailing.bin", sgx() + b"\x00", sig_arg),
        ("tdx-trailing.bin", tdx() + b"junk", tdx_arg),
        ("tdx-truncated.bin", TDX.read_bytes()[:-1], tdx_arg),
        ("nitro-unprotected.cbor", cbor2.dumps([prot, {4: b"kid"}, payload, sig]), nitro_arg),
        ("ias-early.json", (IAS_V5.with_suffix(".json")).read_bytes(),
         ["--signature", IAS_V5.with_suffix(".sig"), "--chain", IAS_CHAIN, "--at", "2023-09-27T15:51:58Z",
          "--allow-measurement", IAS_MRENCLAVE]),
    ]
    for name, blob, args in cases:
        rc, verdict = _cli(tmp_path, name, blob, *args)
        assert (rc, verdict["genuine"], verdict["ok"]) == (4, False, False), (name, rc, verdict)
        assert verdict["reason"] and "\n" not in verdict["reason"]
    # the same CLI still trusts the unmutated evidence (exit 0), so the refusals above are the attacks'
    rc, verdict = _cli(tmp_path, "sgx.bin", sgx(), *sig_arg)
    assert rc == 0 and verdict["ok"], verdict
