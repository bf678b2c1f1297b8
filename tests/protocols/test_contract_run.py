"""Language contracts run between real enclaves over /keyswitch/contract-run/1 (no network: an in-memory
ConnectionPair-style harness): escrow, option, a withholding peer in a swap, a three-party ring, every
message validated, a crash at each step. Real InProcessEnclaves in tmp dirs, a real DevLedger."""

from __future__ import annotations

import hashlib

import pytest

from node import wire
from node.contracts import stdlib
from node.contracts.spec import ReleaseBody, approval_digest, make_spec
from node.ledger.devnet import DevLedger
from node.protocols.base import RequestReceived, Respond
from node.contracts.protocol.run import (
    DONE, PROTOCOL_ID, RUNNING, WITHHELD, AckBody, ApproveBody, OpenBody,
)
from node.contracts.protocol.cheating import CheatingProof
from node.contracts.protocol.envelope import VERSION, ErrorBody
from node.contracts.protocol.cheating import verify_cheating_proof
from tests.protocols.contract_run_kit import Plan
from tests.protocols.contract_run_kit import (
    AMOUNT, escrow_setup, every_second, FEE, NET, NOW, ring_net, running, Side, start, stopped, swap_setup,
)


# ---------------------------------------------------------------- escrow


def test_escrow_releases_to_the_payee_only_on_the_arbiters_signed_approval(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    net.run(until=10)
    assert payer.proto.state(cid) == RUNNING and payer.journal_releases() == []  # signed, opened, waiting
    # an approval signed by the payee in the arbiter's name is refused, by the host and by the enclave
    forged = ApproveBody(cid, 2, "release", payee.raw.sign("approval", approval_digest(cid, "release")))
    code, reason = ask(payer, payee, "approve", forged)
    assert code == "signature" and "party 2" in reason
    from node.tee.client import EnclaveRefused

    with pytest.raises(EnclaveRefused) as exc:
        payer.raw.contract_approve(cid, 2, "release", forged.sig)
    assert exc.value.code == "bad-signature"
    assert payer.journal_releases() == []
    net.call(arb, arb.proto.approve, spec, "release")  # the arbiter's node signs and delivers it
    net.run(done=stopped(cid, payer, payee))
    assert payer.proto.state(cid) == DONE and payee.proto.state(cid) == DONE
    for c in payer.commits:  # both chunks at fresh addresses of the payee's owner
        assert payee.balance(c) == AMOUNT - FEE and ledger.balance(c.asset, c.address).unconfirmed == 0
    assert sorted(payer.journal_releases()) == sorted(c.pubkey for c in payer.commits)


def test_an_arbiters_approval_lost_on_the_way_is_sent_again_until_each_runner_acknowledges_it(tmp_path):
    """An approval went out once and was never sent again: lost on a link down for a while (or refused as an
    unknown contract by a runner not started yet), the escrow waited for its refund height though the arbiter
    had approved (a daemon test failed 1 run in 8 that way under load). Now the arbiter's node sends it again
    every ``retry_interval`` until each runner acknowledged it, then stops."""
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    net.run(until=10)
    lost = []

    def link_down(src, cmd):  # the first four of the arbiter's requests never arrive (a cut link, a dead dial)
        if src is arb and len(lost) < 4:
            lost.append(cmd)
            return True
        return False

    net.drop = link_down
    net.call(arb, arb.proto.approve, spec, "release")
    net.run(until=120, done=stopped(cid, payer, payee))
    assert len(lost) == 4
    assert payer.proto.state(cid) == DONE and payee.proto.state(cid) == DONE
    for c in payer.commits:
        assert payee.balance(c) == AMOUNT - FEE
    delivered = [n.detail for n in arb.notes if n.kind == "contract.approval-delivered"]
    assert sorted(d["party"] for d in delivered) == [0, 1] and all(d["contract"] == cid.hex() for d in delivered)
    sent = sum(1 for src, _ in net.sent if src == arb.peer_id)
    net.run(until=300)
    assert sum(1 for src, _ in net.sent if src == arb.peer_id) == sent  # acknowledged: nothing more goes out


def test_an_approval_no_runner_ever_acknowledges_is_given_up_after_approve_for_and_said(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    net.run(until=10)
    net.drop = lambda src, cmd: src is arb  # the arbiter never reaches anyone
    arb.proto.approve_for = 60.0
    net.call(arb, arb.proto.approve, spec, "release")
    net.run(until=200)
    undelivered = [n.detail for n in arb.notes if n.kind == "contract.approval-undelivered"]
    assert sorted(d["party"] for d in undelivered) == [0, 1]
    sent = sum(1 for src, _ in net.sent if src == arb.peer_id)
    assert 2 < sent <= 2 * (60 / arb.proto.retry_interval + 1)  # sent again, at most every retry_interval
    net.run(until=400)
    assert sum(1 for src, _ in net.sent if src == arb.peer_id) == sent  # given up: nothing more goes out


def test_escrow_refunds_the_payer_at_the_refund_height(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    net.run(until=10)
    net.height("BTC-REG", 199)
    net.run(until=20)
    assert payer.journal_releases() == [] and payer.proto.summary(cid)["refunded"] == []
    net.height("BTC-REG", 200)
    net.run(until=40, done=stopped(cid, payer))
    s = payer.proto.summary(cid)
    assert payer.proto.state(cid) == DONE and s["refunded"] == [0, 1] and s["released"] == []
    for c in payer.commits:  # the enclave handed each key back; the host swept it to the owner's address
        assert payer.balance(c) == AMOUNT - FEE and payee.balance(c) == 0
    assert [st for _, st, _ in s["claims"]] == ["refunded", "refunded"]
    net.call(arb, arb.proto.approve, spec, "release")  # too late: nothing is left to release
    net.run(until=60)
    assert payer.journal_releases() == []


# ---------------------------------------------------------------- option
def option_setup(tmp_path, plans=(None, None)):
    ledger = DevLedger(None, automine=True)
    buyer = Side("B", tmp_path, ledger, "LTC", 3, plans[0])
    writer = Side("W", tmp_path, ledger, "BTC-REG", 2, plans[1])
    spec = make_spec(NET, stdlib.source("option"), {"height_asset": "BTC-REG", "premium_chunks": 1,
                                                    "premium_by": 110, "expiry": 150},
                     [buyer.party(), writer.party()])
    return (ledger, buyer, writer, spec) + running(spec, buyer, writer)


def test_option_premium_then_exercise_chunk_for_chunk(tmp_path):
    ledger, buyer, writer, spec, cid, net = option_setup(tmp_path)
    net.run(until=10)
    assert buyer.proto.summary(cid)["released"] == [(0, 1)]  # the premium, and nothing else
    assert writer.proto.summary(cid)["released"] == []  # the underlying is held for the buyer
    net.call(buyer, buyer.proto.approve, spec, "exercise")
    net.run(done=stopped(cid, buyer, writer))
    assert buyer.proto.state(cid) == DONE and writer.proto.state(cid) == DONE
    assert buyer.proto.summary(cid)["released"] == [(0, 1), (1, 1), (2, 1)]
    assert buyer.proto.summary(cid)["received"] == [(1, 0), (1, 1)]
    for c in writer.commits:
        assert buyer.balance(c) == AMOUNT - FEE
    for c in buyer.commits:
        assert writer.balance(c) == AMOUNT - FEE


def test_option_not_exercised_expires_and_both_sides_get_their_chunks_back(tmp_path):
    ledger, buyer, writer, spec, cid, net = option_setup(tmp_path)
    net.run(until=10)
    net.height("BTC-REG", 150)
    net.run(done=stopped(cid, buyer, writer))
    assert buyer.proto.summary(cid)["refunded"] == [1, 2] and writer.proto.summary(cid)["refunded"] == [0, 1]
    assert writer.balance(buyer.commits[0]) == AMOUNT - FEE  # the premium stays paid
    for c in buyer.commits[1:]:
        assert buyer.balance(c) == AMOUNT - FEE
    for c in writer.commits:
        assert writer.balance(c) == AMOUNT - FEE
    # the exercise comes too late: the enclave allows nothing more
    net.call(buyer, buyer.proto.approve, spec, "exercise")
    net.run(until=100)
    assert buyer.proto.summary(cid)["released"] == [(0, 1)]


def test_an_unpaid_premium_refunds_at_premium_by(tmp_path):
    ledger, buyer, writer, spec, cid, net = option_setup(tmp_path)
    net.drop = lambda src, cmd: src is buyer and wire.decode(cmd.data, wire.Signed).kind == "release"
    net.run(until=10)
    net.drop = lambda src, cmd: False
    net.height("BTC-REG", 110)
    net.run(until=60)
    # the writer saw no premium by premium_by: its chunks go home. The premium had left the buyer's enclave
    # (its view: paid), so the buyer's strike chunks wait for the expiry; the premium arrives on a resend
    assert writer.proto.summary(cid)["refunded"] == [0, 1]
    assert writer.proto.summary(cid)["received"] == [(0, 0)]
    assert buyer.proto.summary(cid)["refunded"] == [] and buyer.proto.summary(cid)["released"] == [(0, 1)]
    net.height("BTC-REG", 150)
    net.run(until=200, done=stopped(cid, buyer, writer))
    assert buyer.proto.summary(cid)["refunded"] == [1, 2] and buyer.proto.state(cid) == DONE


# ---------------------------------------------------------------- withholding, time-locks


def test_a_swap_in_the_language_completes(tmp_path):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path)
    net.run(done=stopped(cid, a, b))
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    for c in b.commits:
        assert a.balance(c) == AMOUNT - FEE
    for c in a.commits:
        assert b.balance(c) == AMOUNT - FEE


def test_a_swap_in_the_language_claims_in_ledger_tasks_not_inside_handle(tmp_path):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path)
    claims = []
    for side in (a, b):
        claim = side.proto.claim

        def in_task(chunk, claim=claim):
            assert net.in_task, "a sweep inside handle"
            claims.append(chunk.address)
            return claim(chunk)

        side.proto.claim = in_task
    net.run(done=stopped(cid, a, b))
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    assert sorted(claims) == sorted(c.address for c in a.commits + b.commits)  # each received key swept once


@pytest.mark.parametrize("stop_after", [0, 1, 2])
def test_a_withholder_costs_at_most_one_chunk_and_the_rest_goes_home_at_the_height(tmp_path, stop_after):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path)
    sent = []

    def withhold(src, cmd):  # B releases ``stop_after`` chunks, then goes silent
        if src is b and wire.decode(cmd.data, wire.Signed).kind == "release":
            body = wire.decode(wire.decode(cmd.data, wire.Signed).body, ReleaseBody)
            if body.round not in sent:
                sent.append(body.round)
            return sent.index(body.round) >= stop_after
        return False

    net.drop = withhold
    net.run(until=100)
    assert a.proto.state(cid) == WITHHELD
    assert any(n.kind == "contract.withheld" for n in a.notes)
    s = a.proto.summary(cid)
    assert len(s["released"]) == stop_after + 1 and len(s["received"]) == stop_after  # one chunk exposed
    net.height("BTC-REG", 300)
    net.run(until=200, done=stopped(cid, a))
    s = a.proto.summary(cid)
    assert a.proto.state(cid) == DONE
    assert s["refunded"] == list(range(stop_after + 1, 3))  # every unmoved chunk went home
    gave = sum(1 for c in a.commits if b.balance(c) == AMOUNT - FEE)  # on the ledger: A's chunks B swept
    got = sum(1 for c in b.commits if a.balance(c) == AMOUNT - FEE)
    assert gave - got == 1 and len(s["released"]) - len(s["received"]) == 1  # exactly one chunk lost
    assert all(a.balance(c) == AMOUNT - FEE for c in a.commits[stop_after + 1:])


# ---------------------------------------------------------------- ring


def test_a_three_party_ring_runs_as_pairwise_channels(tmp_path):
    sides, spec, net = ring_net(tmp_path, 2)
    cid = start(net, spec, *sides)
    pairs = set()
    net.drop = lambda src, cmd: (wire.decode(cmd.data, wire.Signed).kind == "release"
                                 and pairs.add((src.name, cmd.peer)) and False)
    net.run(done=stopped(cid, *sides))
    assert [s.proto.state(cid) for s in sides] == [DONE] * 3
    assert pairs == {("C", "12D3KooD"), ("D", "12D3KooE"), ("E", "12D3KooC")}  # only pred -> succ
    for k, s in enumerate(sides):
        succ = sides[(k + 1) % 3]
        assert s.proto.summary(cid)["released"] == [(0, (k + 1) % 3), (1, (k + 1) % 3)]
        for c in s.commits:
            assert succ.balance(c) == AMOUNT - FEE


def test_a_release_lost_in_a_cut_is_resent_though_heights_arrive_every_second(tmp_path):
    """Every release of a ring is lost for 5 s (a cut link), while the host hands in a new height every second,
    as the daemon does on a ledger mining a block a second. Each drive used to set the retry timer 2 s ahead
    again, so it never fired: nothing was resent, the round timeout ended the contract "done" with every key
    released and none delivered (found by the fault trials, tests/faults: a ring, links cut 3.5 s)."""
    sides, spec, net = ring_net(tmp_path, 1)
    cut = {"on": True}
    net.drop = lambda src, cmd: cut["on"] and wire.decode(cmd.data, wire.Signed).kind == "release"
    cid = start(net, spec, *sides)
    every_second(net, 40, lambda t: cut.update(on=t <= 5))  # the cut mended after 5 s
    assert [s.proto.state(cid) for s in sides] == [DONE] * 3
    for k, s in enumerate(sides):
        assert len(s.proto.summary(cid)["received"]) == 1, (s.name, s.proto.summary(cid))
        for c in s.commits:
            assert sides[(k + 1) % 3].balance(c) == AMOUNT - FEE


def test_a_ring_party_that_has_not_verified_every_runner_yet_waits_and_fails_nothing(tmp_path):
    """E hears from C first (C's open) while D's quote is still on its way (the opens between D and E are lost
    for 5 s). E's enclave releases only when it verified every runner (I3): E used to ask it at once, took the
    refusal ("unattested") for a final one and failed the contract, then refused the key D had released to it:
    D's chunk lost (the fault trials, tests/faults, seed 100: a ring under load, no fault needed)."""
    sides, spec, net = ring_net(tmp_path, 1)
    c, d, e = sides
    slow = {"on": True}
    net.drop = lambda src, cmd: slow["on"] and {src.peer_id, cmd.peer} == {d.peer_id, e.peer_id} and \
        wire.decode(cmd.data, wire.Signed).kind == "open"
    cid = start(net, spec, *sides)
    every_second(net, 40, lambda t: slow.update(on=t <= 5))
    assert [s.proto.state(cid) for s in sides] == [DONE] * 3, [s.notes[-1:] for s in sides]
    for k, s in enumerate(sides):
        for ch in s.commits:
            assert sides[(k + 1) % 3].balance(ch) == AMOUNT - FEE


def test_a_ring_whose_third_party_never_opens_it_sends_every_chunk_home_at_the_deadline(tmp_path):
    """E agreed to the ring and crashed before it opened it (its agreement was in memory only): it never signs.
    C and D must get their chunks back at the refund height, which needs no runner's signature (I1); the host
    stopped looking at the contract's moves while a signature was missing, so neither refunded and both stayed
    "running" for ever with their chunks committed (the fault trials, tests/faults, seed 1: B killed just after
    the ring was agreed)."""
    sides, spec, net = ring_net(tmp_path, 1)
    c, d, e = sides
    cid = start(net, spec, c, d)  # E never starts it
    every_second(net, 230, lambda t: None)  # heights 101..330: the deadline is 300
    assert [c.proto.state(cid), d.proto.state(cid)] == [DONE, DONE]
    for s in (c, d):
        assert s.proto.summary(cid)["refunded"] == [0], s.proto.summary(cid)
        assert s.balance(s.commits[0]) == AMOUNT - FEE  # swept home to its owner's claim address


# ---------------------------------------------------------------- validation
def signed(side: Side, kind: str, body, *, net=NET, version=VERSION) -> bytes:
    raw = wire.encode(body)
    sig = side.raw.sign("release-msg", wire.signing_digest(version, net, kind, raw))
    return wire.encode(wire.Signed(version, net, kind, raw, side.binding.sign_pub, sig))


def ask(to: Side, frm: Side, kind: str | None, body=None, data: bytes | None = None) -> tuple[str, str]:
    data = data if data is not None else signed(frm, kind, body)
    cmds = to.proto.handle(RequestReceived(PROTOCOL_ID, frm.peer_id, 999, data), NOW)
    resp = next(c for c in cmds if isinstance(c, Respond))
    env = wire.decode(resp.data, wire.Signed)
    if env.kind != "error":
        return env.kind, ""
    e = wire.decode(env.body, ErrorBody)
    return e.code, e.reason


def test_every_message_is_validated_with_a_reason(tmp_path):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path)
    net.run(until=10)
    other = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 999},
                      [payer.party(), payee.party(), arb.party(runner=False)])
    good_sig = arb.raw.sign("approval", approval_digest(cid, "release"))
    rec = payer.raw._core.contracts  # a release record of a chunk that is not the sender's
    cases = [
        ("malformed", None, None, b"\x00\x01"),
        ("version", "ack", AckBody(cid, 0), signed(payer, "approve", ApproveBody(cid, 2, "release", good_sig),
                                                  version=2)),
        ("network", "ack", AckBody(cid, 0), signed(payer, "approve", ApproveBody(cid, 2, "release", good_sig),
                                                  net="main")),
        ("kind", "bogus", AckBody(cid, 0), None),
        ("out-of-order", "ack", AckBody(cid, 0), None),
        ("unknown-contract", "approve", ApproveBody(b"\x07" * 32, 2, "release", good_sig), None),
        ("not-expected", "open", OpenBody(other.encode(), payer.quote, []), None),
        ("spec", "open", OpenBody(b"\x01\x02", payer.quote, []), None),
        ("wrong-peer", "approve", ApproveBody(cid, 9, "release", good_sig), None),
        ("signature", "approve", ApproveBody(cid, 2, "release", b"\x00" * 64), None),
    ]
    third = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 777},
                      [payer.party(), payee.party(), arb.party(runner=False)])
    payee.proto.expect(third)  # expected, but the opener's quote is another enclave's
    cases.append(("attestation", "open", OpenBody(third.encode(), payee.quote, []), None))
    # a quote for the sender's current binding is fine, but not for a binding naming other enclave keys
    cases.append(("attestation", "open", OpenBody(third.encode(), payee.quote, [], payee.binding), None))
    for code, kind, body, data in cases:
        frm = payer
        got, reason = ask(payee, frm, kind, body, data)
        assert got == code and reason, (code, got, reason)
    # a signature byte flipped
    env = wire.decode(signed(payer, "approve", ApproveBody(cid, 2, "release", good_sig)), wire.Signed)
    bad = wire.encode(wire.Signed(env.version, env.net, env.kind, env.body, env.signer, bytes([env.sig[0] ^ 1])
                                  + env.sig[1:]))
    assert ask(payee, payer, None, data=bad)[0] == "signature"
    # a release record forged by a host (not made by its enclave's contract release) is refused by the enclave
    forged = ReleaseBody(cid, 0, payer.commits[0].pubkey, payee.binding.enc_pub, b"\x00" * 80)
    code, reason = ask(payee, payer, None, data=wire.encode(wire.Signed(
        VERSION, NET, "release", wire.encode(forged), payer.binding.sign_pub, payer.raw.sign(
            "release-msg", wire.signing_digest(VERSION, NET, "release", wire.encode(forged))))))
    assert code == "signature"  # not in the release domain, which only the enclave signs in
    assert payee.proto.state(cid) == RUNNING and rec is not None


def test_mutated_messages_never_crash(tmp_path):
    import random

    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=2)
    net.run(done=stopped(cid, a, b))
    msgs = [cmd.data for _, cmd in net.sent]
    rng = random.Random(7)
    for _ in range(300):
        m = bytearray(rng.choice(msgs))
        for _ in range(rng.randint(1, 4)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        for side in (a, b):
            cmds = side.proto.handle(RequestReceived(PROTOCOL_ID, "12D3KooA", 1, bytes(m)), net.now)
            assert any(isinstance(c, Respond) for c in cmds)
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE


# ---------------------------------------------------------------- crash at each step
def _count(tmp_path):
    plans = (Plan(), Plan())
    ledger, buyer, writer, spec, cid, net = option_setup(tmp_path / "count", plans)
    net.run(until=10)
    net.call(buyer, buyer.proto.approve, spec, "exercise")
    net.run(done=stopped(cid, buyer, writer))
    return plans[0].n, plans[1].n


STEPS = (10, 12)


def test_the_option_crash_points_cover_every_step(tmp_path):
    # buyer: 3 releases, 1 approval, 2 accepts, 2 claims (each a claim and the enclave's export) = 10;
    # writer: 2 releases, 1 approval, 3 accepts, 3 claims x 2 = 12 (a fourth accept was a copy of a release
    # resent by the retry timer while the first still awaited its ack: no copy goes out while one is in flight)
    assert _count(tmp_path) == STEPS


@pytest.mark.parametrize("side,step,phase", [(s, i, p) for s in (0, 1) for i in range(1, STEPS[s] + 1)
                                             for p in ("before", "after")])
def test_a_crash_at_each_step_of_an_option_finishes_with_no_key_released_twice(tmp_path, side, step, phase):
    plans = [Plan(), Plan()]
    plans[side] = Plan(step, phase)
    ledger, buyer, writer, spec, cid, net = option_setup(tmp_path, tuple(plans))
    net.run(until=10)
    net.call(buyer, buyer.proto.approve, spec, "exercise")
    net.run(until=120)
    if buyer.proto.state(cid) != DONE:  # the crash took the approval with it: the buyer's owner asks again
        net.call(buyer, buyer.proto.approve, spec, "exercise")
    net.run(until=300, done=stopped(cid, buyer, writer))
    assert plans[side].fired, plans[side].log
    assert buyer.proto.state(cid) == DONE and writer.proto.state(cid) == DONE
    for s in (buyer, writer):  # each key released exactly once
        rel = s.journal_releases()
        assert sorted(rel) == sorted(c.pubkey for c in s.commits)
    for c in writer.commits:
        assert buyer.balance(c) == AMOUNT - FEE
    for c in buyer.commits:
        assert writer.balance(c) == AMOUNT - FEE


# ---------------------------------------------------------------- proofs still work on these records
def test_release_records_of_a_language_contract_make_cheating_proofs(tmp_path):
    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    net.run(done=stopped(cid, a, b))
    recs = [cmd.data for src, cmd in net.sent if src == a.peer_id and wire.decode(cmd.data, wire.Signed).kind ==
            "release"]
    assert recs
    assert "resend" in verify_cheating_proof(CheatingProof(recs[0], recs[0]), net=NET)
    # a second record of the same key to someone else: only a broken enclave could sign it
    env = wire.decode(recs[0], wire.Signed)
    body = wire.decode(env.body, ReleaseBody)
    from node.crypto import sign_digest, tagged_hash

    other = wire.encode(ReleaseBody(body.contract_id, body.round, body.deposit_pub, a.binding.enc_pub,
                                    body.ciphertext))
    sig = sign_digest(a.raw._core._sign, tagged_hash("keyswitch/release",
                                                     wire.signing_digest(VERSION, NET, "release", other)))
    second = wire.encode(wire.Signed(VERSION, NET, "release", other, env.signer, sig))
    assert verify_cheating_proof(CheatingProof(recs[0], second), net=NET) == hashlib.sha256(
        a.binding.sign_pub).digest()


def _refund_run(tmp_path, plan):
    ledger, payer, payee, arb, spec, cid, net = escrow_setup(tmp_path, (plan, None))
    net.run(until=10)
    net.height("BTC-REG", 200)
    net.run(until=100, done=stopped(cid, payer))
    if payer.proto.state(cid) != DONE:  # a crash ate the height event: the ledger client hands it in again
        net.height("BTC-REG", 201)
        net.run(until=200, done=stopped(cid, payer))
    return ledger, payer, payee, cid


def test_the_refund_crash_points_cover_every_step(tmp_path):
    plan = Plan()
    _refund_run(tmp_path, plan)
    # both keys are refunded first; their sweeps run after, as ledger tasks
    assert plan.log == ["contract_refund"] * 2 + ["claim", "export_to_owner"] * 2


@pytest.mark.parametrize("step,phase", [(i, p) for i in range(1, 7) for p in ("before", "after")])
def test_a_crash_at_each_step_of_a_refund_sends_every_chunk_home_once(tmp_path, step, phase):
    plan = Plan(step, phase)
    ledger, payer, payee, cid = _refund_run(tmp_path, plan)
    assert plan.fired
    assert payer.proto.state(cid) == DONE and payer.proto.summary(cid)["refunded"] == [0, 1]
    for c in payer.commits:  # swept home exactly once, nothing to the payee
        assert payer.balance(c) == AMOUNT - FEE and payee.balance(c) == 0
    exports = [e.pub for e in payer.raw._core.journal() if e.op == "export"]
    assert sorted(exports) == sorted(c.pubkey for c in payer.commits) and payer.journal_releases() == []
