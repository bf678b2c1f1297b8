"""The enclave key vault through its client interface (in-process and as a separate process)."""

from __future__ import annotations

import os
from pathlib import Path
from datetime import datetime, timezone

import coincurve
import msgspec
import pytest

from node.crypto import ecies_decrypt, pubkey_of, tagged_hash
from node.attest import simquote
from node.attest.binding import Binding, keys_root
from node.tee.client import (
    Enclave,
    EnclaveRefused,
    EnclaveUnavailable,
    InProcessEnclave,
    SubprocessEnclave,
    verify_domain_sig,
    verify_offer_sheet_sig,
)
from node.enclave import messages as m
from node.enclave.core import release_aad
from node.enclave.sealed import JOURNAL_FILE, SEALED_FILE
from node.attest.policy import AttestationPolicy
from tests.sheetbody import sheet_body
from tests.tee.testbuild import RawOps, RawOpsSubprocess  # the test build: raw release/resend/accept


@pytest.fixture(params=["inprocess", "subprocess"])
def enc(request, tmp_path):
    cls = RawOps if request.param == "inprocess" else RawOpsSubprocess
    e = cls(tmp_path / "node")
    yield e
    e.close()


@pytest.fixture
def peer(tmp_path):
    with RawOps(tmp_path / "peer") as e:
        yield e


def refused(code, fn, *args):
    with pytest.raises(EnclaveRefused) as exc:
        fn(*args)
    assert exc.value.code == code, exc.value
    assert exc.value.reason
    return exc.value


def test_implements_the_backend_interface(enc):
    assert isinstance(enc, Enclave)
    i = enc.info()
    assert i.simulated and len(i.device_id) == 32 and len(i.sign_pub) == 33 and len(i.enc_pub) == 33
    assert i.measurement == simquote.code_measurement()


def test_generate_list_and_quote(enc):
    pubs = enc.generate_keys(5)
    assert len(set(pubs)) == 5 and all(len(p) == 33 and p[0] in (2, 3) for p in pubs)
    assert [k.pubkey for k in enc.list_keys()] == pubs
    assert all(k.state == "held" for k in enc.list_keys())
    b = enc.binding_for("dev", "12D3KooWtest")
    assert b.keys_root == keys_root(pubs)
    blob = enc.quote(b, nonce=b"challenge", now=1_800_000_000)
    v = simquote.verify_sim_quote(blob, policy=AttestationPolicy.dev(), at=datetime.fromtimestamp(1_800_000_060, timezone.utc))
    assert v.ok, v
    assert v.report_data == b.report_data().hex()
    assert v.device_id == enc.info().device_id.hex()
    assert simquote.decode_quote(blob).body.nonce == b"challenge"


def test_quote_refuses_a_binding_it_cannot_vouch_for(enc, peer):
    enc.generate_keys(2)
    b = enc.binding_for("dev", "p")
    other = peer.info()
    refused("foreign-keys", enc.quote, Binding(net="dev", peer_id="p", sign_pub=other.sign_pub, enc_pub=b.enc_pub,
                                               keys_root=b.keys_root))
    refused("keys-root-mismatch", enc.quote, Binding(net="dev", peer_id="p", sign_pub=b.sign_pub,
                                                     enc_pub=b.enc_pub, keys_root=b"\x00" * 32))
    refused("bad-binding", enc.quote, Binding(net="dev", peer_id="p", sign_pub=b"\x02" * 3, enc_pub=b.enc_pub))


def test_offer_sheets(enc, recipient_key=coincurve.PrivateKey()):
    a, b, c = enc.generate_keys(3)
    sign_pub = enc.info().sign_pub
    sheets = [(sheet_body([a]), [a]), (sheet_body([b, a]), [a, b])]  # the host's list in any order
    sigs = enc.sign_offer_sheets(sheets)
    assert all(verify_offer_sheet_sig(sign_pub, s, sig) for (s, _), sig in zip(sheets, sigs))
    assert not verify_offer_sheet_sig(sign_pub, sheet_body([c]), sigs[0])
    assert verify_offer_sheet_sig(sign_pub, sheet_body([a]), enc.sign_offer_sheet(sheet_body([a]), [a]))
    refused("keys-mismatch", enc.sign_offer_sheet, sheet_body([a]), [b])
    refused("unknown-key", enc.sign_offer_sheet, sheet_body([pubkey_of(recipient_key)]), [pubkey_of(recipient_key)])
    refused("sheet-unreadable", enc.sign_offer_sheet, b"offer:" + a, [a])
    # a sheet offering no key (a retraction) is signed: it claims nothing
    assert verify_offer_sheet_sig(sign_pub, sheet_body([]), enc.sign_offer_sheet(sheet_body([]), []))
    enc.release_key(c, pubkey_of(recipient_key), b"ctx")
    refused("key-not-held", enc.sign_offer_sheet, sheet_body([c]), [c])
    # all or nothing: a batch with one bad item signs nothing
    refused("key-not-held", enc.sign_offer_sheets, [(sheet_body([a]), [a]), (sheet_body([c]), [c])])


def test_domain_signing_allow_list(enc):
    d = tagged_hash("test", b"x")
    sign_pub = enc.info().sign_pub
    for domain in ("outcome", "rfp", "revocation", "proposal", "release-msg", "approval"):
        assert verify_domain_sig(sign_pub, domain, d, enc.sign(domain, d))
    assert not verify_domain_sig(sign_pub, "rfp", d, enc.sign("outcome", d))
    # release records and contract ids are signed only inside the enclave, never for its host
    refused("domain-not-allowed", enc.sign, "release", d)
    refused("domain-not-allowed", enc.sign, "contract-terms", d)
    refused("domain-not-allowed", enc.sign, "offer-sheet", d)
    refused("domain-not-allowed", enc.sign, "anything", d)
    refused("bad-request", enc.sign, "outcome", b"short")


def test_release_accept_export_between_two_enclaves(enc, peer):
    (k,) = enc.generate_keys(1)
    ctx = b"contract-1/round-0"
    ct = enc.release_key(k, peer.info().enc_pub, ctx)
    assert k.hex().encode() not in ct
    refused("undecryptable", peer.accept_key, ct, b"other context", k)
    refused("undecryptable", peer.accept_key, ct, ctx, enc.generate_keys(1)[0])  # aad binds the key too
    assert peer.accept_key(ct, ctx, k) == k
    refused("duplicate-key", peer.accept_key, ct, ctx, k)
    st = {s.pubkey: s for s in peer.list_keys()}[k]
    assert (st.state, st.origin) == ("received", "received")
    # a received key can be offered and exported to the owner (the one cleartext exit)
    assert verify_offer_sheet_sig(peer.info().sign_pub, sheet_body([k]), peer.sign_offer_sheet(sheet_body([k]), [k]))
    priv = peer.export_to_owner(k)
    assert pubkey_of(coincurve.PrivateKey(priv)) == k
    assert peer.export_to_owner(k) == priv  # idempotent for the owner
    refused("key-not-held", peer.release_key, k, enc.info().enc_pub, b"x")
    # the releasing side: never twice, to nobody
    refused("already-released", enc.release_key, k, peer.info().enc_pub, ctx)
    refused("already-released", enc.release_key, k, pubkey_of(coincurve.PrivateKey()), ctx)
    refused("already-released", enc.export_to_owner, k)
    states = {s.pubkey: s for s in enc.list_keys()}
    assert states[k].state == "released" and states[k].recipient == peer.info().enc_pub


def test_resend_returns_the_journaled_ciphertext_only(enc, recipient=coincurve.PrivateKey()):
    (k,) = enc.generate_keys(1)
    rpub = pubkey_of(recipient)
    refused("not-released", enc.resend_release, k, rpub, b"c")
    ct = enc.release_key(k, rpub, b"c")
    assert enc.resend_release(k, rpub, b"c") == ct
    refused("already-released", enc.resend_release, k, rpub, b"other")
    refused("already-released", enc.resend_release, k, pubkey_of(coincurve.PrivateKey()), b"c")
    assert pubkey_of(coincurve.PrivateKey(ecies_decrypt(recipient, ct, release_aad(k, b"c")))) == k


def test_bad_requests_are_refused_with_reasons(enc):
    (k,) = enc.generate_keys(1)
    refused("bad-recipient", enc.release_key, k, b"\x02" + b"\xff" * 32, b"c")  # x >= p: not a point
    refused("bad-recipient", enc.release_key, k, b"nope", b"c")
    refused("unknown-key", enc.release_key, b"\x03" * 33, pubkey_of(coincurve.PrivateKey()), b"c")
    refused("bad-request", enc.release_key, k, pubkey_of(coincurve.PrivateKey()), b"c" * 5000)
    refused("bad-request", enc.generate_keys, 0)
    refused("unknown-key", enc.export_to_owner, b"\x02" * 33)
    refused("undecryptable", enc.accept_key, b"garbage", b"", k)


def test_state_survives_a_restart(tmp_path):
    d = tmp_path / "n"
    with RawOpsSubprocess(d) as e:
        pubs = e.generate_keys(4)
        info = e.info()
        e.release_key(pubs[0], pubkey_of(coincurve.PrivateKey()), b"c")
    with RawOpsSubprocess(d) as e:
        again = e.info()
        assert (again.sign_pub, again.enc_pub, again.device_id) == (info.sign_pub, info.enc_pub, info.device_id)
        assert [k.pubkey for k in e.list_keys()] == pubs
        assert [k.state for k in e.list_keys()] == ["released", "held", "held", "held"]
        assert again.counter > info.counter
        refused("already-released", e.release_key, pubs[0], pubkey_of(coincurve.PrivateKey()), b"c")


def test_sealed_state_is_encrypted_and_tamper_evident(tmp_path):
    d = tmp_path / "n"
    with SubprocessEnclave(d) as e:
        (k,) = e.generate_keys(1)
        priv = e.export_to_owner(k)
    sealed = d / "enclave" / SEALED_FILE
    blob = sealed.read_bytes()
    assert priv not in blob and k not in blob
    assert (sealed.stat().st_mode & 0o777) == 0o600
    assert (os.stat(d / "enclave" / "sealing.secret").st_mode & 0o777) == 0o600
    bad = bytearray(blob)
    bad[-5] ^= 1
    sealed.write_bytes(bytes(bad))
    with pytest.raises(EnclaveUnavailable, match="does not authenticate"):
        SubprocessEnclave(d)
    sealed.write_bytes(blob)
    with SubprocessEnclave(d) as e:
        assert e.list_keys()[0].state == "exported"


def test_rollback_to_an_older_sealed_state_is_detected(tmp_path):
    d = tmp_path / "n"
    sealed = [d / "enclave" / SEALED_FILE, d / "enclave" / JOURNAL_FILE]
    with RawOps(d) as e:
        (k,) = e.generate_keys(1)
        old = [p.read_bytes() if p.exists() else b"" for p in sealed]
        e.release_key(k, pubkey_of(coincurve.PrivateKey()), b"c")
    released = [p.read_bytes() for p in sealed]
    for p, blob in zip(sealed, old):  # the host replays the pre-release state (snapshot and journal)
        p.write_bytes(blob)
    with pytest.raises(EnclaveUnavailable, match="rollback detected"):
        InProcessEnclave(d)
    sealed[1].write_bytes(released[1][:-1])  # or cuts the release's record short
    with pytest.raises(EnclaveUnavailable, match="rollback detected"):
        InProcessEnclave(d)
    sealed[1].write_bytes(released[1])
    with InProcessEnclave(d) as e:
        assert [k.state for k in e.list_keys()] == ["released"]


def test_another_sealing_secret_cannot_open_the_vault(tmp_path):
    d = tmp_path / "n"
    with InProcessEnclave(d) as e:
        e.generate_keys(1)
    (d / "enclave" / "sealing.secret").write_bytes(os.urandom(32))
    with pytest.raises(EnclaveUnavailable, match="does not authenticate"):
        InProcessEnclave(d)


def test_second_process_on_the_same_vault_is_refused(tmp_path):
    with SubprocessEnclave(tmp_path / "n"):
        with pytest.raises(EnclaveUnavailable, match="in use"):
            SubprocessEnclave(tmp_path / "n")


def test_no_private_key_in_reprs_or_errors(tmp_path):
    from node.enclave.core import EnclaveCore
    from node.enclave.measure import code_measurement

    core = EnclaveCore(None, measurement=code_measurement())
    (k,) = core.generate_keys(1)
    rec = core.list_keys()[0]
    texts = [repr(rec), str(rec), repr(core._state), repr(core.info())]
    for t in texts:
        assert rec.priv.hex() not in t and repr(rec.priv) not in t
    assert core._state.sign_priv.hex() not in repr(core._state)


# -- the protocol boundary -----------------------------------------------------


def test_malformed_requests_get_error_replies(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from node.enclave.core import EnclaveCore
    from node.enclave.measure import code_measurement

    core = EnclaveCore(None, measurement=code_measurement())
    dec = msgspec.msgpack.Decoder(m.Response)

    @given(st.binary(max_size=300))
    @settings(max_examples=300, deadline=None)
    def check(payload):
        r = dec.decode(m.handle(core, payload))
        if not r.ok:
            assert r.code and r.reason

    check()
    enc = msgspec.msgpack.encode
    r = dec.decode(m.handle(core, b"\x93\x01"))
    assert not r.ok and r.code == "malformed"
    r = dec.decode(m.handle(core, enc(m.Request(99, 7, m.Hello()))))
    assert (r.ok, r.code, r.id) == (False, "unsupported-version", 7)
    r = dec.decode(m.handle(core, enc([1, 3, ["no-such-op"]])))
    assert not r.ok and r.code == "malformed"
    r = dec.decode(m.handle(core, enc(m.Request(1, 4, m.GenerateKeys("x")))))
    assert not r.ok and r.code == "malformed"


def test_the_process_survives_garbage_frames(proc_enclave):
    p = proc_enclave._proc
    dec = msgspec.msgpack.Decoder(m.Response)
    for junk in (b"", b"\xc1", b"\x00" * 100, os.urandom(1000)):
        p.stdin.write(m.encode_frame(junk))
        n = int.from_bytes(p.stdout.read(4), "big")
        r = dec.decode(p.stdout.read(n))
        assert not r.ok and r.code == "malformed"
    # an oversized frame is discarded and answered
    big = m.MAX_FRAME + 1
    p.stdin.write(big.to_bytes(4, "big"))
    chunk = b"\x00" * (1 << 20)
    left = big
    while left:
        p.stdin.write(chunk[: min(left, len(chunk))])
        left -= min(left, len(chunk))
    n = int.from_bytes(p.stdout.read(4), "big")
    r = dec.decode(p.stdout.read(n))
    assert not r.ok and "over limit" in r.reason
    assert proc_enclave.generate_keys(1)  # still serving


@pytest.fixture
def proc_enclave(tmp_path):
    e = SubprocessEnclave(tmp_path / "proc")
    yield e
    e.close()


def test_a_dead_process_is_reported_unavailable(proc_enclave):
    proc_enclave.kill()
    with pytest.raises(EnclaveUnavailable):
        proc_enclave.generate_keys(1)
    proc_enclave.start()
    assert proc_enclave.generate_keys(1)


def test_seeded_memory_enclaves_are_reproducible():
    a, b, c = (InProcessEnclave(seed=s) for s in (b"sim-1", b"sim-1", b"sim-2"))
    assert a.info().sign_pub == b.info().sign_pub != c.info().sign_pub
    assert a.generate_keys(3) == b.generate_keys(3) != c.generate_keys(3)
    with pytest.raises(ValueError):
        InProcessEnclave(Path("/nonexistent"), seed=b"x")


def test_verify_attestation_checks_the_binding(enc):
    pytest.importorskip("node.attest.evidence", reason="the evidence dispatcher (helper EVIDENCE) is not there yet")
    from node.attest.binding import verify_attestation

    enc.generate_keys(2)
    b = enc.binding_for("dev", "12D3KooWpeer")
    blob = enc.quote(b, now=1_800_000_000)
    at = datetime.fromtimestamp(1_800_000_010, timezone.utc)
    v = verify_attestation(blob, b, policy=AttestationPolicy.dev(), at=at)
    assert v.ok, v
    other = Binding(net="dev", peer_id="12D3KooWsomeoneelse", sign_pub=b.sign_pub, enc_pub=b.enc_pub,
                    keys_root=b.keys_root)
    v = verify_attestation(blob, other, policy=AttestationPolicy.dev(), at=at)
    assert not v.ok and v.code == "binding-mismatch" and v.genuine


def test_in_process_and_subprocess_share_the_vault_lock(tmp_path):
    with InProcessEnclave(tmp_path / "n") as e:
        e.generate_keys(1)
        with pytest.raises(EnclaveUnavailable, match="in use"):
            SubprocessEnclave(tmp_path / "n")
        with pytest.raises(EnclaveUnavailable, match="in use"):
            InProcessEnclave(tmp_path / "n")
    with pytest.raises(EnclaveUnavailable, match="closed"):
        e.generate_keys(1)
    with SubprocessEnclave(tmp_path / "n") as p:
        assert len(p.list_keys()) == 1


def test_the_client_counts_each_kind_of_call_and_its_time(enc):
    """``call_stats``: per request kind, the calls, their round trips' seconds and the seconds spent waiting
    behind another call (``benchmarks.request`` prints them for the requester)."""
    before = enc.call_stats().get("GenerateKeys", {"calls": 0})["calls"]
    enc.generate_keys(2)
    enc.generate_keys(1)
    enc.list_keys()
    stats = enc.call_stats()
    assert stats["GenerateKeys"]["calls"] == before + 2
    assert stats["ListKeys"]["calls"] >= 1
    assert stats["GenerateKeys"]["call_s"] > 0 and stats["GenerateKeys"]["wait_s"] >= 0
