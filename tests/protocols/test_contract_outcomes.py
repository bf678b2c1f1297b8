"""Outcome reports and reputation from language contracts (``contract-run/1``): every received key, once its
claim settles, and every party that withheld a key the contract let it give us, is applied to the receiver's
reputation view and reported, signed by its enclave, with the release record its enclave accepted; a third
node accepts the reports and its reputation moves. Real enclaves, a real DevLedger, the in-memory harness of
``test_contract_run``."""

from __future__ import annotations


import coincurve
import pytest

from node import wire
from node.assets import address_for
from node.contracts.spec import ReleaseBody
from node.stores.offerbook import OfferBook
from node.protocols.base import GossipReceived, Publish, Result
from node.contracts.protocol.run import DONE, FAILED, WITHHELD
from node.protocols.outcomes import (
    OutcomeReport, OutcomesProtocol, check_record_of, validate_report,
)
from node.risk.engine import RiskEngine
from tests.protocols.contract_run_kit import NET, NOW, Plan, escrow_setup, stopped, swap_setup
from tests.protocols.outcomes_kit import dev, Reporting


def accepted(data: bytes, now: float) -> OutcomeReport:
    v, r = validate_report(data, net=NET, now=now, known_device=lambda d: True, seen=lambda b: False)
    assert v.result is Result.ACCEPT, v.reason
    return r


def third_node(*sides, **kw) -> OutcomesProtocol:
    """A node that knows the sides' devices, each with some standing of its own (a report of a reporter
    without standing weighs nothing); ``kw`` go to its ``OutcomesProtocol``."""
    from node.risk.reputation import Action

    eng = RiskEngine(OfferBook(None))
    for s in sides:
        eng.reputation.observe(dev(s), s.peer_id, "sim", 0.0)
        for _ in range(10):
            eng.reputation.apply(dev(s), Action.CLAIMED, NOW)
    return OutcomesProtocol(net=NET, engine=eng, **kw)


def score(proto: OutcomesProtocol, side, now: float) -> float:
    return proto.engine.reputation.score(dev(side), now)


def test_every_received_key_is_reported_claimed_with_its_record_and_feeds_reputation(tmp_path):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=3)
    ra, rb = Reporting(a), Reporting(b)
    net.run(done=stopped(cid, a, b))
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    ra.feed(net.now)
    rb.feed(net.now)
    watcher = third_node(a, b)
    before = score(watcher, b, net.now)
    for me, other, r in ((a, b, ra), (b, a, rb)):
        reports = r.reports()
        assert len(reports) == 3  # one per received chunk
        assert sorted(x.address for x in reports) == sorted(c.address for c in other.commits)
        for data, x in zip(r.published, reports):
            x = accepted(data, net.now)
            assert x.outcome == "claimed" and x.subject == dev(other) and x.contract_id == cid and x.txid
            assert x.reporter == me.binding.sign_pub
            seen = check_record_of(x)  # the release record the receiving enclave accepted, signed by the giver
            assert not isinstance(seen, str) and seen.contract_id == cid
            assert seen.recipient == me.binding.enc_pub
        assert r.score(other) > 0  # CLAIMED, three times
    for data in ra.published:
        cmds = watcher.handle(GossipReceived(watcher.topic, data, a.peer_id), net.now)
        assert any(getattr(c, "kind", "") == "outcome.applied" for c in cmds)
    assert score(watcher, b, net.now) > before
    # once per (contract, chunk): the same notifications again report nothing more
    ra.fed = 0
    ra.feed(net.now)
    assert len(ra.published) == 3


@pytest.mark.parametrize("step,phase", [(i, p) for i in range(1, 9) for p in ("before", "after")])
def test_a_crash_at_each_step_reports_every_received_chunk_once(tmp_path, step, phase):
    plan = Plan(step, phase)
    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=2, plans=(plan, None))
    ra = Reporting(a)
    plan.on_crash = lambda: ra.restart(net.now)  # a new process: a new reporter, the notifications so far fed
    net.run(done=stopped(cid, a, b))
    assert plan.fired, plan.log
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    ra.feed(net.now)
    got = [accepted(d, net.now) for d in ra.done()]
    assert sorted(x.address for x in got) == sorted(c.address for c in b.commits)  # each exactly once
    assert all(x.outcome == "claimed" and x.release for x in got)  # the record too (the giver resends it)


def test_a_withholder_is_reported_withheld_and_loses_standing(tmp_path):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=3)

    sent = []

    def withhold(src, cmd):  # B releases one chunk, then goes silent
        if src is b and wire.decode(cmd.data, wire.Signed).kind == "release":
            body = wire.decode(wire.decode(cmd.data, wire.Signed).body, ReleaseBody)
            if body.round not in sent:
                sent.append(body.round)
            return sent.index(body.round) >= 1
        return False

    net.drop = withhold
    ra = Reporting(a)
    net.run(until=100)
    assert a.proto.state(cid) == WITHHELD
    ra.feed(net.now)
    got = [accepted(d, net.now) for d in ra.published]
    assert [x.outcome for x in got] == ["claimed", "withheld"]
    w = got[1]
    assert w.subject == dev(b) and w.release == b"" and w.address == b.commits[1].address  # the chunk owed
    assert ra.score(b) < 0
    watcher = third_node(a, b)
    before = score(watcher, b, net.now)
    watcher.handle(GossipReceived(watcher.topic, ra.published[1], a.peer_id), net.now)
    assert score(watcher, b, net.now) < before


def test_an_escrow_waiting_for_its_arbiter_blames_no_one(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    rq = Reporting(payee)
    net.run(until=100)  # no approval: the payer owes the payee nothing yet
    assert payee.proto.state(cid) == WITHHELD
    withheld = [n for n in payee.notes if n.kind == "contract.withheld"]
    assert withheld and withheld[0].detail["owed"] == []
    rq.feed(net.now)
    assert rq.published == []


def test_an_approved_escrow_whose_payer_goes_silent_blames_the_payer(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    net.drop = lambda src, cmd: src is payer and wire.decode(cmd.data, wire.Signed).kind == "release"
    rq = Reporting(payee)
    net.call(arb, arb.proto.approve, spec, "release")  # now the contract lets the payer release to the payee
    net.run(until=100)
    assert payee.proto.state(cid) == WITHHELD
    rq.feed(net.now)
    [x] = [accepted(d, net.now) for d in rq.published]  # once for the payer, whatever it owes
    assert x.outcome == "withheld" and x.subject == dev(payer) and x.address in {c.address for c in payer.commits}
    assert rq.score(payer) < 0


def test_an_escrow_payee_reports_each_chunk_it_received(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    rq = Reporting(payee)
    net.call(arb, arb.proto.approve, spec, "release")
    net.run(done=stopped(cid, payer, payee))
    rq.feed(net.now)
    got = [accepted(d, net.now) for d in rq.published]
    assert [x.outcome for x in got] == ["claimed", "claimed"] and {x.subject for x in got} == {dev(payer)}
    assert all(x.release for x in got)


def test_a_double_spent_key_is_reported_with_the_spender_and_marks_the_giver(tmp_path):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    ch = a.commits[0]
    leaked = {r.pub: r.priv for r in a.raw._core.list_keys()}[ch.pubkey]  # a broken TEE: the key got out
    thief = address_for(ch.asset, coincurve.PrivateKey(b"\x09" * 32).public_key.format())
    winner = []

    def double_spend(src, cmd):
        if src is a and wire.decode(cmd.data, wire.Signed).kind == "release" and not winner:
            winner.append(ledger.sweep(ch.asset, leaked, thief))  # spent right after the release left

    net.on_send = double_spend
    rb = Reporting(b)
    net.run(done=stopped(cid, b))
    assert b.proto.state(cid) == FAILED
    rb.feed(net.now)
    [x] = [accepted(d, net.now) for d in rb.published]
    assert x.outcome == "double-spent" and x.subject == dev(a) and x.txid == winner[0] and x.release
    assert rb.engine.reputation.is_cheater(dev(a))
    watcher = third_node(a, b)
    cmds = watcher.handle(GossipReceived(watcher.topic, rb.published[0], b.peer_id), NOW + 200)
    assert any(getattr(c, "kind", "") == "outcome.applied" for c in cmds)
    assert not any(isinstance(c, Publish) for c in cmds)  # one record alone proves nothing


def test_a_claim_whose_record_never_comes_back_is_reported_without_it_after_the_grace(tmp_path):
    from node.contracts.desk.swaps import RECORD_GRACE

    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    net.run(done=stopped(cid, a, b))
    ra = Reporting(a)
    claim = [n for n in a.notes if n.kind == "contract.claim"]  # as if the record's notice died in a crash
    assert len(claim) == 1
    assert ra.reporter.on_contract_notify(claim[0], net.now) == []  # waits for the giver's resend
    assert ra.reporter.flush(net.now + RECORD_GRACE - 1) == []
    [data] = ra.reporter.flush(net.now + RECORD_GRACE)
    x = accepted(data, net.now + RECORD_GRACE)
    assert x.outcome == "claimed" and x.release == b"" and x.subject == dev(b)
    assert ra.reporter.flush(net.now + 10 * RECORD_GRACE) == [] and ra.published == [data]


def test_a_double_spent_report_with_the_release_to_its_reporter_is_a_proof_by_the_ledger(tmp_path):
    """A key the giver's enclave released to the reporter, spent elsewhere before the reporter's sweep: every
    node checks the spend on its own ledger and the record's recipient against the reporter's attested key."""
    from node.app.stack import ledger_check

    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    ch = a.commits[0]
    leaked = {r.pub: r.priv for r in a.raw._core.list_keys()}[ch.pubkey]  # a broken TEE: the key got out
    thief = address_for(ch.asset, coincurve.PrivateKey(b"\x09" * 32).public_key.format())
    winner = []

    def double_spend(src, cmd):
        if src is a and wire.decode(cmd.data, wire.Signed).kind == "release" and not winner:
            winner.append(ledger.sweep(ch.asset, leaked, thief))

    net.on_send = double_spend
    rb = Reporting(b)
    net.run(done=stopped(cid, b))
    rb.feed(net.now)
    [data] = rb.published
    check = lambda r: ledger_check(ledger, r)  # noqa: E731
    enc = {b.binding.sign_pub: b.binding.enc_pub}
    watcher = third_node(a, b, ledger_check=check, enc_key_of=enc.get)
    cmds = watcher.handle(GossipReceived(watcher.topic, data, b.peer_id), NOW + 200)
    assert watcher.engine.reputation.is_cheater(dev(a))
    assert [c.kind for c in cmds if hasattr(c, "kind")] == ["outcome.applied", "outcome.proof", "outcome.cheater"]
    assert watcher.stats["ledger_proofs"] == 1 and watcher.status()["ledger_proven"] == [dev(a).hex()]
    # the same report where the node does not know the reporter's attested key, or with a ledger that cannot
    # tell: weighed by the reporter's standing, within bounds, and no proof
    for kw in ({"ledger_check": check}, {"enc_key_of": enc.get}):
        w = third_node(a, b, **kw)
        w.handle(GossipReceived(w.topic, data, b.peer_id), NOW + 200)
        assert not w.engine.reputation.is_cheater(dev(a)) and w.engine.reputation.acceptable(dev(a), NOW + 200)
        assert w.stats["ledger_proofs"] == 0
