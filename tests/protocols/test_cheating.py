"""Proof of cheating assembled from outcome reports: a broken enclave releases one key to two victims, their
reports meet at every node, the proof is built, applied and gossiped once per node; forged, mismatched or lone
records prove nothing. Real enclaves (one of them the broken simulation), real signatures, GossipNet."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import wire
from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, make_spec
from node.stores.offerbook import OfferBook, device_id_of
from node.peerkey import PeerSigner
from node.protocols.base import Publish, Result
from node.protocols.outcomes import (
    OutcomeReport, OutcomesProtocol, ReleaseRecords, make_report, report_for_outcome,
    validate_report,
)
from node.contracts.spec import ReleaseBody, release_context
from node.contracts.protocol.cheating import CheatingProof, verify_cheating_proof
from node.protocols.revocation import RevocationProtocol, TrustConfig, cheating_proof_checker
from node.protocols.testing import GossipNet
from node.stores.release_records import ReleaseRecordsDB
from node.risk.engine import RiskEngine
from node.tee.broken import BrokenEnclave, check_mode
from node.tee.client import EnclaveRefused, InProcessEnclave
from tests.tee.testbuild import RawOps, attest  # the test build: raw release/resend/accept; attestation


class RawBroken(BrokenEnclave, RawOps):
    """The broken enclave over the test build (its raw release override reaches the raw call)."""


NET, NOW = "testnet", 50_000.0


def record(enclave, recipient, pub: bytes) -> tuple[bytes, bytes]:
    """A release record as the release protocol sends it, and its contract id: ``enclave`` opens a one-chunk
    contract (the stdlib ``turns``, the giver first) giving ``pub`` to ``recipient`` (an enclave that only
    receives), and releases it; the enclave itself signs the record."""
    attest(enclave, recipient)  # (I3: the giver's enclave verified the taker's quote itself)
    spec = make_spec(NET, stdlib.source("turns"), {}, [
        PartySpec(enclave.binding_for(NET, "giver"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
        PartySpec(recipient.binding_for(NET, "taker"), [], runner=False)])
    cid = enclave.contract_open(spec.encode()).cid
    return enclave.contract_release(cid, 0, 1), cid


@pytest.fixture(scope="module")
def world():
    """A broken device that released one BTC-REG key to two victims, and an honest device with one release."""
    cheat = RawBroken(None, mode="double-release")
    honest = RawOps(None)
    v1, v2, w = RawOps(None), RawOps(None), RawOps(None)
    (key,) = cheat.generate_keys(1)
    (hkey,) = honest.generate_keys(1)
    r1, c1 = record(cheat, v1, key)
    r2, c2 = record(cheat, v2, key)
    hr, c3 = record(honest, v1, hkey)
    yield dict(cheat=cheat, honest=honest, v1=v1, v2=v2, w=w, key=key, hkey=hkey, r1=r1, r2=r2, hr=hr,
               c1=c1, c2=c2, c3=c3)
    for e in (cheat, honest, v1, v2, w):
        e.close()


def dev(e) -> bytes:
    return device_id_of(e.info().sign_pub)


def report(reporter, subject, *, key, rec, cid, outcome="claimed", txid="ab" * 32, asset="BTC-REG",
           issued_at=NOW, address=None) -> bytes:
    r = OutcomeReport(2, NET, cid, reporter.info().sign_pub, dev(subject), outcome, asset,
                      address or address_for(asset, key), txid if outcome != "withheld" else "", issued_at, rec)
    return make_report(r, reporter.sign)


def check(data):
    return validate_report(data, net=NET, now=NOW, known_device=lambda d: True, seen=lambda b: False)[0]


# ------------------------------------------------------------------ the broken enclave itself
def test_the_broken_enclave_releases_twice_and_an_honest_one_refuses(world):
    cheat, honest, v2 = world["cheat"], world["honest"], world["v2"]
    assert cheat.releases == 1  # the second release in the fixture
    with pytest.raises(EnclaveRefused) as exc:  # an honest enclave commits a released key to no new contract
        record(honest, v2, world["hkey"])
    assert exc.value.code == "not-held"
    # it lies to its host (the key looks held, so the host sells it again) but quotes what it really holds
    assert [k.state for k in cheat.list_keys()] == ["held"]
    assert cheat.held_pubkeys() == []
    proof = CheatingProof(world["r1"], world["r2"])
    assert verify_cheating_proof(proof, net=NET) == dev(cheat)
    with pytest.raises(ValueError, match="must be one of"):
        check_mode("lenient")


def test_the_sweep_after_release_mode_exports_a_released_key():
    e = RawBroken(None, mode="sweep-after-release")
    honest = RawOps(None)
    try:
        for enc in (e, honest):
            (k,) = enc.generate_keys(1)
            enc.release_key(k, honest.info().enc_pub, b"ctx")
            if enc is honest:
                with pytest.raises(EnclaveRefused, match="released to a peer"):
                    enc.export_to_owner(k)
            else:
                import coincurve

                assert coincurve.PrivateKey(enc.export_to_owner(k)).public_key.format() == k
                assert e.releases == 1 and "BROKEN SIMULATED TEE" in e.banner()
    finally:
        e.close()
        honest.close()


# ------------------------------------------------------------------ validation of the record in a report
def test_a_report_carrying_its_release_record_is_accepted(world):
    assert check(report(world["v1"], world["cheat"], key=world["key"], rec=world["r1"], cid=world["c1"])).result \
        is Result.ACCEPT
    assert check(report(world["v2"], world["cheat"], key=world["key"], rec=world["r2"], cid=world["c2"],
                        outcome="double-spent")).result is Result.ACCEPT


def test_a_forged_or_mismatched_record_is_rejected_with_its_reason(world):
    v1, cheat, key, r1 = world["v1"], world["cheat"], world["key"], world["r1"]
    env = wire.decode(r1, wire.Signed)
    flipped = wire.encode(wire.Signed(env.version, env.net, env.kind, env.body, env.signer,
                                      bytes([env.sig[0] ^ 1]) + env.sig[1:]))
    other_net = wire.encode(wire.Signed(env.version, "main", env.kind, env.body, env.signer, env.sig))
    cases = [
        (dict(rec=flipped, cid=world["c1"]), "release record: signature"),
        (dict(rec=other_net, cid=world["c1"]), "release record: network"),
        (dict(rec=b"\xc1", cid=world["c1"]), "release record: malformed"),
        (dict(rec=b"x" * 3000, cid=world["c1"]), "release record: over size"),
        (dict(rec=r1, cid=b"9" * 32), "another contract"),
        (dict(rec=world["hr"], cid=world["c3"]), "another enclave than the report's subject"),
        (dict(rec=r1, cid=world["c1"], key=world["hkey"]), "another deposit key"),
        (dict(rec=r1, cid=world["c1"], asset="NOPE", address="x"), "cannot derive"),
        (dict(rec=r1, cid=world["c1"], outcome="withheld"), "withheld report carries no release record"),
    ]
    for kw, reason in cases:
        kw.setdefault("key", key)
        got = check(report(v1, cheat, **kw))
        assert got.result is Result.REJECT and reason in got.reason, (reason, got)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_altered_record_is_rejected(world, data):
    r1 = world["r1"]
    i = data.draw(st.integers(0, len(r1) - 1))
    bit = data.draw(st.integers(0, 7))
    altered = r1[:i] + bytes([r1[i] ^ (1 << bit)]) + r1[i + 1:]
    got = check(report(world["v1"], world["cheat"], key=world["key"], rec=altered, cid=world["c1"]))
    assert got.result is Result.REJECT and got.reason.startswith(("release record", "malformed")), got


# ------------------------------------------------------------------ the proof, assembled on a network
def node(net: GossipNet, seed: int, devices):
    """A node with the outcomes and revocation protocols over one risk engine that knows ``devices``."""
    signer = PeerSigner(bytes([seed]) * 32)
    eng = RiskEngine(book_with_offers_of(devices[0]))
    for d in devices[1:]:
        eng.reputation.observe(d, "peer", "sim", 0.0)
    rev = RevocationProtocol(net=NET, engine=eng, sign=signer.sign,
                             trust=TrustConfig(checkers={"cheating-proof": cheating_proof_checker(NET)}))
    out = OutcomesProtocol(net=NET, engine=eng, on_proof=rev.publish_proof, on_proof_timer=rev.handle)
    peer = net.add(signer.peer_id, out, rev, now=NOW)
    return peer, out, rev, eng


def book_with_offers_of(sign_pub: bytes) -> OfferBook:
    """A book holding two offers of the device with enclave key ``sign_pub`` (its reputation record comes
    from the risk engine's first look at the book)."""
    from node.protocols.offers import Offer, SheetBody, offers_root
    from node.attest.binding import Binding

    book = OfferBook(None)
    offers = [Offer("BTC-REG", f"addr{i}", bytes([2]) + bytes([i + 1]) * 32, 1000, 5_000, "50000", NOW, NOW + 999)
              for i in range(2)]
    book.apply_sheet(SheetBody(1, NET, "cheater", 1, NOW, offers, [], offers_root(offers), b"q",
                               Binding(NET, "cheater", sign_pub, bytes([3]) * 33)), now=NOW)
    return book


def network(world, n=4):
    g = GossipNet()
    devices = [world["cheat"].info().sign_pub] + [dev(world[k]) for k in ("v1", "v2", "w")]
    nodes = [node(g, i + 1, devices) for i in range(n)]
    return g, nodes


def notices(g: GossipNet, rev) -> list[tuple[str, Publish]]:
    return [(p, c) for p, c in g.published if c.topic == rev.topic]


def test_two_victims_reports_meet_and_every_node_drops_the_cheater_once(world):
    g, nodes = network(world)
    cheat = dev(world["cheat"])
    (p1, out1, _, _), (p2, out2, rev2, _) = nodes[0], nodes[1]
    assert all(e.book.count(now=NOW) == 2 for *_, e in nodes)
    a = report(world["v1"], world["cheat"], key=world["key"], rec=world["r1"], cid=world["c1"])
    g.call(p1.peer_id, out1, out1.publish(a, NOW), NOW)
    assert not any(e.reputation.is_cheater(cheat) for *_, e in nodes)  # one record alone proves nothing
    assert notices(g, rev2) == []
    b = report(world["v2"], world["cheat"], key=world["key"], rec=world["r2"], cid=world["c2"], outcome="double-spent")
    g.call(p2.peer_id, out2, out2.publish(b, NOW + 1), NOW + 1)
    # every node holds both records now: each assembles the proof and drops the device at once
    for peer, out, rev, eng in nodes:
        assert eng.reputation.is_cheater(cheat), peer.peer_id
        assert cheat in rev.proven and out.stats["proofs"] == 1
        assert any(n.kind == "revocation.applied" and n.detail["evidence"] == "cheating-proof" for n in peer.notes)
        assert eng.book.count(now=NOW) == 0
    assert notices(g, rev2) == []
    # each would gossip its proof after its own delay; the first one out reaches the others, who then do not
    t = NOW + 1
    while t < NOW + 1 + rev2.proof_delay + 0.1:
        t += 0.01
        g.advance(t)
    sent = notices(g, rev2)
    assert len(sent) == 1, [p for p, _ in sent]
    assert sum(rev.proofs_published for _, _, rev, _ in nodes) == 1
    assert all(not rev._pending_proofs and not peer.timers for peer, _, rev, _ in nodes)
    # the gossiped notice is self-contained: a fresh node with no trusted signers verifies it
    fresh = RevocationProtocol(net=NET, engine=RiskEngine(OfferBook(None)),
                               trust=TrustConfig(checkers={"cheating-proof": cheating_proof_checker(NET)}))
    assert fresh.validate(fresh.topic, sent[0][1].data, "x", NOW + 2).result is Result.ACCEPT
    # the same reports again change nothing and publish nothing new
    n_before = len(g.published)
    for (peer, out, *_), data in ((nodes[2], a), (nodes[3], b)):
        g.call(peer.peer_id, out, out.publish(data, NOW + 3), NOW + 3)
    assert len(notices(g, rev2)) == 1 and len(g.published) == n_before + 2


def test_an_observer_assembles_the_proof_when_the_victims_do_not_talk_to_each_other(world):
    # the victims' own protocols are left out: only the observers hear both reports
    g, nodes = network(world, n=3)
    a = report(world["v1"], world["cheat"], key=world["key"], rec=world["r1"], cid=world["c1"])
    b = report(world["v2"], world["cheat"], key=world["key"], rec=world["r2"], cid=world["c2"], outcome="double-spent")
    p0, out0, rev0, _ = nodes[0]
    from node.protocols.base import GossipReceived

    cmds = out0.handle(GossipReceived(out0.topic, a, "v1"), NOW) + out0.handle(GossipReceived(out0.topic, b, "v2"), NOW)
    g.call(p0.peer_id, out0, cmds, NOW)
    assert out0.stats["proofs"] == 1 and eng_is_cheater(nodes[0], world)
    assert not any(eng_is_cheater(n, world) for n in nodes[1:])  # not yet gossiped
    g.advance(NOW + rev0.proof_delay)
    assert rev0.proofs_published == 1
    assert all(eng_is_cheater(n, world) for n in nodes)


def test_the_proof_timer_set_through_the_outcomes_protocol_comes_back_to_it(world):
    """A driver fires a timer at the protocol whose commands set it (node.runtime.driver): the gossip of a
    proof, scheduled by the revocation protocol from the outcomes protocol's handler, must work from there."""
    from node.protocols.base import GossipReceived, SetTimer, Started, TimerFired

    signer = PeerSigner(bytes([9]) * 32)
    eng = RiskEngine(OfferBook(None))
    for k in ("v1", "v2"):
        eng.reputation.observe(dev(world[k]), "peer", "sim", 0.0)
    rev = RevocationProtocol(net=NET, engine=eng, sign=signer.sign,
                             trust=TrustConfig(checkers={"cheating-proof": cheating_proof_checker(NET)}))
    out = OutcomesProtocol(net=NET, engine=eng, on_proof=rev.publish_proof, on_proof_timer=rev.handle)
    rev.handle(Started(signer.peer_id), NOW)
    cmds = []
    for rec, cid, rep in ((world["r1"], world["c1"], "v1"), (world["r2"], world["c2"], "v2")):
        cmds += out.handle(GossipReceived(out.topic, report(world[rep], world["cheat"], key=world["key"], rec=rec,
                                                            cid=cid), "x"), NOW)
    (timer,) = [c for c in cmds if isinstance(c, SetTimer)]
    assert not any(isinstance(c, Publish) for c in cmds)
    sent = out.handle(TimerFired(timer.name), timer.at)
    assert [c.topic for c in sent] == [rev.topic] and rev.proofs_published == 1
    assert out.handle(TimerFired(timer.name), timer.at) == []  # once


def eng_is_cheater(n, world) -> bool:
    return n[3].reputation.is_cheater(dev(world["cheat"]))


def test_the_same_record_in_two_reports_is_not_a_proof(world):
    g, nodes = network(world, n=2)
    p0, out0, rev0, eng0 = nodes[0]
    from node.protocols.base import GossipReceived

    a = report(world["v1"], world["cheat"], key=world["key"], rec=world["r1"], cid=world["c1"])
    replay = report(world["w"], world["cheat"], key=world["key"], rec=world["r1"], cid=world["c1"],
                    outcome="double-spent")
    for data in (a, replay):
        assert out0.validate(out0.topic, data, "x", NOW).result is Result.ACCEPT
        out0.handle(GossipReceived(out0.topic, data, "x"), NOW)
    assert out0.stats["proofs"] == 0 and not eng0.reputation.is_cheater(dev(world["cheat"]))
    assert rev0.proven == set()


def test_without_a_revocation_protocol_the_proof_is_still_applied_locally(world):
    eng = RiskEngine(OfferBook(None))
    for k in ("v1", "v2"):
        eng.reputation.observe(dev(world[k]), "peer", "sim", 0.0)
    out = OutcomesProtocol(net=NET, engine=eng)
    from node.protocols.base import GossipReceived

    cmds = []
    for rec, cid, rep in ((world["r1"], world["c1"], "v1"), (world["r2"], world["c2"], "v2")):
        data = report(world[rep], world["cheat"], key=world["key"], rec=rec, cid=cid)
        cmds += out.handle(GossipReceived(out.topic, data, "x"), NOW)
    assert eng.reputation.is_cheater(dev(world["cheat"]))
    assert [c.kind for c in cmds if c.kind.startswith("outcome.") and c.kind != "outcome.applied"] == [
        "outcome.proof", "outcome.cheater"]
    assert out.status()["proven"] == [dev(world["cheat"]).hex()]


# ------------------------------------------------------------------ building reports from outcomes
def test_report_for_outcome_names_the_spender_and_carries_the_received_record(world):
    records = ReleaseRecords(NET)  # fed with the record our enclave accepted (the desk, on ``contract.received``)
    assert records.observe(world["r2"]) is True
    assert records.observe(b"garbage") is False  # not a record: nothing kept
    key, cid = world["key"], world["c2"]
    spender = "cd" * 32
    d = {"contract_id": cid.hex(), "device": dev(world["cheat"]).hex(), "status": "double-spent", "chunks": [
        {"round": 0, "deposit_pub": key.hex(), "asset": "BTC-REG", "address": address_for("BTC-REG", key),
         "status": "double-spent", "txid": "", "detail": f"deposit x already spent by {spender}"}]}
    r = report_for_outcome(d, net=NET, reporter=world["v2"].info().sign_pub, now=NOW, records=records)
    assert r.txid == spender and r.release == world["r2"] and r.version == 2
    assert check(make_report(r, world["v2"].sign)).result is Result.ACCEPT
    withheld = report_for_outcome(dict(d, status="withheld"), net=NET, reporter=b"\x02" * 33, now=NOW,
                                  records=records)
    assert withheld.release == b"" and withheld.txid == ""
    assert report_for_outcome(dict(d, status="failed"), net=NET, reporter=b"", now=NOW) is None


# ------------------------------------------------------------------ the switch
def test_only_the_explicit_switch_selects_the_broken_tee(tmp_path, capsys):
    from node import config
    from node.app.stack import make_offer_stack
    from node.identity import peer_id

    pid = peer_id(tmp_path)
    stack = make_offer_stack(tmp_path, NET, pid, broken="double-release", in_process=True)
    try:
        assert isinstance(stack.enclave, BrokenEnclave) and stack.enclave.mode == "double-release"
        assert "BROKEN SIMULATED TEE (double-release)" in capsys.readouterr().err
    finally:
        stack.close()
    stack = make_offer_stack(tmp_path / "honest", NET, pid, in_process=True)
    try:
        assert not isinstance(stack.enclave, BrokenEnclave)
    finally:
        stack.close()
    with pytest.raises(config.ConfigError, match="tee.broken"):
        make_offer_stack(tmp_path / "hw", NET, pid, broken="double-release", backend="gramine")


def test_the_first_release_of_a_key_released_again_can_still_be_resent():
    """A retry after a lost ack resends the first release (same recipient and context): nothing new leaves."""
    e, a, b = RawBroken(None, mode="double-release"), RawOps(None), RawOps(None)
    try:
        (k,) = e.generate_keys(1)
        first = e.release_key(k, a.info().enc_pub, b"ctx-a")
        second = e.release_key(k, b.info().enc_pub, b"ctx-b")
        assert e.resend_release(k, a.info().enc_pub, b"ctx-a") == first
        assert e.resend_release(k, b.info().enc_pub, b"ctx-b") == second
        assert a.accept_key(first, b"ctx-a", k) == k and b.accept_key(second, b"ctx-b", k) == k  # both work
        with pytest.raises(EnclaveRefused):
            e.resend_release(k, a.info().enc_pub, b"ctx-other")
    finally:
        for x in (e, a, b):
            x.close()


def test_under_contracts_the_first_release_of_a_key_released_again_can_still_be_resent():
    """The same through the contract calls the daemons use: two contracts over one key, both records signed
    by the enclave, and a resend of the first gives back the first record, not a third release."""
    e, a, b = RawBroken(None, mode="double-release"), RawOps(None), RawOps(None)
    try:
        (k,) = e.generate_keys(1)
        (r1, c1), (r2, c2) = record(e, a, k), record(e, b, k)
        assert c1 != c2 and e.releases == 1
        assert e.contract_resend(c1, 0) == r1 and e.contract_resend(c2, 0) == r2
        assert verify_cheating_proof(CheatingProof(r1, r2), net=NET) == dev(e)
        for rec, who in ((r1, a), (r2, b)):
            body = wire.decode(wire.decode(rec, wire.Signed).body, ReleaseBody)
            assert who.accept_key(body.ciphertext, release_context(body.contract_id, body.round), k) == k
    finally:
        for x in (e, a, b):
            x.close()


def test_the_records_received_survive_a_restart(world, tmp_path):
    path = tmp_path / "release-records.sqlite"
    records = ReleaseRecords(NET, store=ReleaseRecordsDB(path), max_records=2)
    assert records.observe(world["r1"]) and records.observe(world["r2"]) and not records.observe(b"junk")
    assert records.observe(world["r1"]) and len(records) == 2  # the same record again: kept once
    records.close()
    again = ReleaseRecords(NET, store=ReleaseRecordsDB(path), max_records=2)
    assert again.get(world["c1"], world["key"]) == world["r1"] and again.get(world["c2"], world["key"]) == world["r2"]
    assert again.observe(world["hr"]) and len(again) == 2  # bounded: the oldest goes
    assert again.get(world["c1"], world["key"]) == b""
    again.close()
    third = ReleaseRecords(NET, store=ReleaseRecordsDB(path))
    assert len(third) == 2 and third.get(world["c3"], world["hkey"]) == world["hr"]
    third.close()


@pytest.fixture(scope="module")
def pool():
    """Release records: the broken device releases key k1 twice (to A in contract 1, to B in contract 2) and
    k2 once; an honest device releases k3 once. Each entry: (record, contract id, key, signing enclave)."""
    bad, good = RawBroken(None, mode="double-release"), RawOps(None)
    a, b, rep = RawOps(None), RawOps(None), RawOps(None)
    k1, k2 = bad.generate_keys(2)
    (k3,) = good.generate_keys(1)
    entries = [(*record(bad, a, k1), k1, bad), (*record(bad, b, k1), k1, bad), (*record(bad, a, k2), k2, bad),
               (*record(good, b, k3), k3, good)]
    yield entries, rep, bad, good
    for e in (bad, good, a, b, rep):
        e.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 3), max_size=8))
def test_a_proof_is_assembled_exactly_when_one_key_was_released_to_two_places(pool, picks):
    from node.protocols.base import GossipReceived

    entries, reporter, bad, good = pool
    eng = RiskEngine(OfferBook(None))
    eng.reputation.observe(dev(reporter), "peer", "sim", 0.0)
    out = OutcomesProtocol(net=NET, engine=eng)
    for i, j in enumerate(picks):  # each report a new one (its time differs); records may repeat
        rec, cid, key, signer = entries[j]
        data = report(reporter, signer, key=key, rec=rec, cid=cid, issued_at=NOW - i)
        assert out.validate(out.topic, data, "x", NOW).result is Result.ACCEPT
        out.handle(GossipReceived(out.topic, data, "x"), NOW)
    expect = {0, 1} <= set(picks)
    assert (dev(bad) in out.proven) is expect and eng.reputation.is_cheater(dev(bad)) is expect
    assert dev(good) not in out.proven and not eng.reputation.is_cheater(dev(good))
    assert out.stats["proofs"] == int(expect)
