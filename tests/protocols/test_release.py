"""Tit-for-tat key release: swaps over an in-memory pair, every refusal reason, withholding, crash/restart at
each step, double-spend detection, and the proof of cheating. Real InProcessEnclaves in tmp dirs, a real
in-process DevLedger with funded deposits."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from pathlib import Path

import coincurve
import msgspec
import pytest

from node import wire
from node.assets import address_for
from node.crypto import ecies_encrypt
from node.ledger.devnet import FEES, DevLedger
from node.protocols.base import (
    LedgerCall, Notify, RequestReceived, Respond, Started,
)
from node.contracts.spec import ReleaseBody, release_context
from node.protocols.cheating import CheatingProof, verify_cheating_proof
from node.protocols.envelope import MAX_MESSAGE, VERSION, AckBody, ErrorBody
from node.protocols.release import DONE, FAILED, PROTOCOL_ID, RUNNING, WITHHELD, HelloBody, verify_signed_outcome
from node.protocols.schedule import (
    Chunk, Round, Schedule, contract_id, exposure, schedule_spec, swap_schedule, validate_schedule,
)
from node.protocols.testing import GossipNet
from node.protocols.interpret import LedgerAdapters, run_ledger_call
from node.tee.client import InProcessEnclave
from node.enclave.core import release_aad
from tests.protocols.release_kit import CrashPlan, NET, NOW, Pair, Side, both_stopped, exposed, setup_swap


def assert_swapped(ledger, a, b, cid):
    for me, other in ((a, b), (b, a)):
        assert me.proto.state(cid) == DONE, (me.name, me.proto.contracts[cid.hex()].rec.reason)
        out = me.proto.outcome(cid)
        assert out.status == "claimed" and out.lost == 0 and out.received == len(other.chunks)
        assert [c.status for c in out.chunks] == ["claimed"] * len(other.chunks)
        for ch in other.chunks:  # every chunk of the peer is now at a fresh address of our owner
            fee = FEES["utxo"]
            assert ledger.balance(ch.asset, me.owner_address(ch)).unconfirmed == ch.amount - fee
            assert ledger.balance(ch.asset, ch.address).unconfirmed == 0
        rel = me.journal_releases()  # each of our keys released exactly once, all to the peer
        assert sorted(rel) == sorted(c.pubkey for c in me.chunks)
        assert {k.state for k in me.raw.list_keys() if k.origin == "generated"} == {"released"}


# ---------------------------------------------------------------- schedule
def test_swap_schedule_alternates_and_bounds_exposure():
    ch = [Chunk("BTC-REG", f"addr{i}", bytes([2]) + bytes([i]) * 32, 1) for i in range(1, 8)]
    s = swap_schedule(ch[:3], ch[3:6])
    assert [(r.giver, r.chunk.address) for r in s.rounds] == [
        (0, "addr1"), (1, "addr4"), (0, "addr2"), (1, "addr5"), (0, "addr3"), (1, "addr6")]
    assert exposure(s) == [1, 0]
    with pytest.raises(ValueError, match="exposed to 2"):
        swap_schedule(ch[:3], ch[3:4])
    assert "appears twice" in validate_schedule(Schedule([Round(0, 1, ch[0]), Round(1, 0, ch[0])]))
    assert "two parties" in validate_schedule(Schedule([Round(0, 0, ch[0])]))


# ---------------------------------------------------------------- happy path
def test_three_chunk_swap_completes_and_each_side_sweeps(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    pair.run(done=both_stopped(a, b, cid))
    assert_swapped(ledger, a, b, cid)
    releases = [c for _, c in pair.sent if wire.decode(c.data, wire.Signed).kind == "release"]
    assert len(releases) == 6  # one message per round, nothing resent
    assert any(n.kind == "release.outcome" and n.detail["status"] == "claimed" for n in a.notes)
    # both sides say when their chunks became committed (the host takes them off its offer sheet then: the
    # enclave signs no sheet naming a committed key, I4), each exactly once
    for side in (a, b):
        assert [n.detail["contract"] for n in side.notes if n.kind == "release.agreed"] == [cid.hex()], side.peer_id


def test_the_spans_of_its_own_work_come_from_the_clock_it_is_given(tmp_path):
    # the protocol reads no clock itself (tests/test_layering.py): the daemon gives it time.perf_counter
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    ticks = itertools.count()
    a.proto.perf = lambda: float(next(ticks))  # every read is one second after the one before
    pair.run(done=both_stopped(a, b, cid))
    ca, cb = a.proto.contracts[cid.hex()], b.proto.contracts[cid.hex()]
    assert ca.writes > 0 and ca.spent["store"] == ca.writes  # one second per record written: read before, after
    assert ca.spent["enclave"] >= 3 and ca.keys_in_at >= NOW + 1.0  # the call that took the last key: 1 s
    assert cb.spent.get("store", 0.0) == cb.spent.get("enclave", 0.0) == 0.0  # no clock given: every span is 0
    assert cb.keys_in_at >= NOW


class CountingEnclave:
    """Delegates to an enclave, counting every call by name."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, Counter()

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kw):
            self.calls[name] += 1
            return attr(*args, **kw)

        return call


def test_each_enclave_opens_the_contract_once_and_signs_its_id_once(tmp_path):
    """The initiator's enclave opens the contract once (with the responder's signature) and its signature
    over the id is kept for the cosign; the responder's opens it on the hello and is handed the initiator's
    signature once (the cosign), which the enclave takes without decoding or checking the spec again."""
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    for side in (a, b):
        side.proto.enclave = CountingEnclave(side.proto.enclave)
    pair.run(done=both_stopped(a, b, cid))
    assert_swapped(ledger, a, b, cid)
    assert a.proto.enclave.calls["contract_open"] == 1
    assert b.proto.enclave.calls["contract_open"] == 2
    for side in (a, b):  # the signature the peer got is the enclave's own over the contract id
        assert side.proto.contracts[cid.hex()].terms_sig == side.raw.contract_open(
            schedule_spec(sched, [a.binding, b.binding]).encode()).sig


def test_each_enclave_verifies_its_peers_quote_once_per_contract(tmp_path):
    """The initiator's enclave verified the responder's quote on the agree, then again when the same agree was
    taken up once the responder's funds were seen (one more enclave round trip per swap on the initiator's one
    contract worker: ``benchmarks.request`` counted 12 ``AttestPeer`` for 6 swaps)."""
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    for side in (a, b):
        side.proto.enclave = CountingEnclave(side.proto.enclave)
    hellos = {"n": 0}
    on_hello = b.proto._on_hello

    def counted(ev, env, h, now, funds_checked=False):
        hellos["n"] += not funds_checked
        return on_hello(ev, env, h, now, funds_checked)

    b.proto._on_hello = counted
    pair.run(done=both_stopped(a, b, cid))
    assert_swapped(ledger, a, b, cid)
    assert a.proto.enclave.calls["attest_peer"] == 1
    # the responder: once per copy of the hello (here the hello is resent while its funds check runs), no longer
    # once more when the check ends
    assert b.proto.enclave.calls["attest_peer"] == hellos["n"]


def test_release_rounds_call_the_ledger_in_tasks_funds_checked_before_the_next_release_swept_after(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path, plans=(CrashPlan(), CrashPlan()))
    # agreed: the offered funds were checked (A's restart on Started resent its hello: a second agree's check too)
    while not (a.proto.state(cid) == b.proto.state(cid) == RUNNING) or \
            any(isinstance(ev, LedgerCall) for _, _, ev in pair.queue):
        assert pair.step()
    for side in (a, b):  # from here on, in the release rounds:
        check, claim = side.proto.check_funds, side.proto.claim

        def checked(asset, addr, side=side, check=check):
            assert pair.in_task, "a funds check inside handle"
            side.plan.log.append("funds")
            return check(asset, addr)

        def claimed(chunk, claim=claim):
            assert pair.in_task, "a sweep inside handle"
            return claim(chunk)

        side.proto.check_funds, side.proto.claim = checked, claimed
    pair.run(done=both_stopped(a, b, cid))
    assert_swapped(ledger, a, b, cid)
    # B: the funds of round 0 are seen, then one enclave call takes its key (checked inside) and releases
    # round 1; the sweep comes after
    assert b.plan.log[:4] == ["funds", "contract_step", "claim", "export_to_owner"]
    assert a.plan.log[:3] == ["contract_release", "funds", "contract_step"]
    assert "contract_accept" not in a.plan.log + b.plan.log  # every key taken by a step (A's last: no release)
    # one sweep per received key, one funds check per received key a release of ours follows, nothing repeated
    assert (a.plan.log.count("funds"), a.plan.log.count("claim")) == (2, 3)  # A releases nothing after round 5
    assert (b.plan.log.count("funds"), b.plan.log.count("claim")) == (3, 3)


def test_swap_over_gossipnet(tmp_path):
    ledger = DevLedger(None, automine=True)
    a2 = Side("A", tmp_path, ledger)
    b2 = Side("B", tmp_path, ledger)
    sched = swap_schedule(a2.chunks, b2.chunks)
    b2.expect(a2.peer_id, sched)
    net = GossipNet()
    net.add(a2.peer_id, a2.proto, now=NOW)
    net.add(b2.peer_id, b2.proto, now=NOW)
    net.call(a2.peer_id, a2.proto, a2.proto.propose(b2.peer_id, sched, NOW), NOW)
    assert_swapped(ledger, a2, b2, contract_id(sched, [a2.binding, b2.binding]))


def test_keep_policy_keeps_keys_in_the_enclave(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path, n=2, policy="keep")
    pair.run(done=both_stopped(a, b, cid))
    for me, other in ((a, b), (b, a)):
        out = me.proto.outcome(cid)
        assert me.proto.state(cid) == DONE and out.status == "claimed"
        assert [c.status for c in out.chunks] == ["kept", "kept"]
        states = {k.pubkey: k.state for k in me.raw.list_keys()}
        assert all(states[c.pubkey] == "received" for c in other.chunks)  # held in the enclave, not swept


# ---------------------------------------------------------------- validation
def _running(tmp_path):
    """A contract agreed on both sides, with A's releases held back so we can talk to B directly."""
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    pair.drop = lambda src, cmd: src is a and wire.decode(cmd.data, wire.Signed).kind == "release"
    pair.run(until=1)
    assert b.proto.state(cid) == RUNNING and a.proto.state(cid) == RUNNING
    return ledger, a, b, sched, cid, pair


def _ask(side: Side, data: bytes, peer: str = "12D3KooA"):
    cmds = side.proto.handle(RequestReceived(PROTOCOL_ID, peer, 77, data), NOW + 1)
    resp = [c for c in cmds if isinstance(c, Respond)]
    assert len(resp) == 1
    env = wire.decode(resp[0].data, wire.Signed)
    if env.kind == "error":
        body = wire.decode(env.body, ErrorBody)
        return body.code, body.reason
    return env.kind, ""


def _ask_through_tasks(side: Side, data: bytes, peer: str = "12D3KooA"):
    """``_ask`` for a release our own release follows: its answer comes once the ledger task (the funds of
    the key) is done, as the runtime would run it."""
    cmds = side.proto.handle(RequestReceived(PROTOCOL_ID, peer, 77, data), NOW + 1)
    while not any(isinstance(c, Respond) for c in cmds):
        (task,) = [c for c in cmds if isinstance(c, LedgerCall)]
        cmds = side.proto.handle(run_ledger_call(task, LedgerAdapters.of(side.proto)), NOW + 1)
    (resp,) = [c for c in cmds if isinstance(c, Respond)]
    body = wire.decode(wire.decode(resp.data, wire.Signed).body, ErrorBody)
    return body.code, body.reason


def _signed(enclave, kind: str, body, *, net=NET, version=VERSION, signer=None) -> bytes:
    """A message signed by ``enclave``'s key; a "release" record (which only the enclave's contract release
    signs) is forged here with the core's key, as a peer whose enclave misbehaves would."""
    from node.crypto import sign_digest, tagged_hash

    raw = wire.encode(body)
    digest = wire.signing_digest(version, net, kind, raw)
    if kind == "release":
        sig = sign_digest(enclave._core._sign, tagged_hash("keyswitch/release", digest))
    else:
        sig = enclave.sign("release-msg", digest)
    signer = signer if signer is not None else enclave.info().sign_pub
    return wire.encode(wire.Signed(version, net, kind, raw, signer, sig))


def test_every_malformed_or_out_of_order_message_gets_its_reason(tmp_path):
    ledger, a, b, sched, cid, pair = _running(tmp_path)
    enc_b = b.binding.enc_pub
    a_priv = {r.pub: r.priv for r in a.raw._core.list_keys()}
    ch0 = sched.rounds[0].chunk

    def rel(rnd=0, pub=ch0.pubkey, recipient=enc_b, ct=None, cid_=cid, **kw):
        if ct is None:  # a genuine-looking ciphertext of the right key for that round
            ct = ecies_encrypt(enc_b, a_priv.get(pub, b"\x01" * 32), release_aad(pub, release_context(cid_, rnd)))
        return _signed(a.raw, "release", ReleaseBody(cid_, rnd, pub, recipient, ct), **kw)

    good = rel()
    env = wire.decode(good, wire.Signed)
    cases = {
        "malformed": [b"", b"\xc1garbage", b"\x00" * (MAX_MESSAGE + 1),
                      wire.encode(wire.Signed(VERSION, NET, "release", b"\x93\x01", env.signer, env.sig))],
        "version": [rel(version=2)],
        "network": [rel(net="main")],
        "kind": [_signed(a.raw, "bogus", AckBody(cid, 0))],
        "signature": [wire.encode(wire.Signed(VERSION, NET, "release", env.body, env.signer, b"\x00" * 64)),
                      wire.encode(wire.Signed(VERSION, NET, "release", env.body, b.binding.sign_pub, env.sig)),
                      _signed(b.raw, "release", wire.decode(env.body, ReleaseBody))],  # signed by a stranger
        "unknown-contract": [rel(cid_=b"\x07" * 32)],
        "wrong-peer": [],
        "wrong-round": [rel(rnd=99), rel(rnd=1, pub=sched.rounds[1].chunk.pubkey)],
        "wrong-key": [rel(rnd=0, pub=sched.rounds[2].chunk.pubkey)],
        "wrong-recipient": [rel(recipient=a.binding.enc_pub)],
        "out-of-order": [rel(rnd=2, pub=sched.rounds[2].chunk.pubkey), _signed(a.raw, "ack", AckBody(cid, 0)),
                         _signed(a.raw, "agree", AckBody(cid, 0))],
    }
    for code, msgs in cases.items():
        for m in msgs:
            got, reason = _ask(b, m)
            assert got == code, (code, got, reason)
            assert reason
    assert _ask(b, good, peer="12D3KooMallory")[0] == "wrong-peer"
    assert b.proto.state(cid) == RUNNING  # none of that moved or stopped the contract
    # hellos: unexpected, from a peer its binding does not name, a bad schedule
    hello = _signed(a.raw, "hello", HelloBody(swap_schedule(a.chunks[:1], b.chunks[:1]), a.binding, a.quote))
    assert _ask(b, hello)[0] == "not-expected"
    assert _ask(b, hello, peer="12D3KooMallory")[0] == "wrong-peer"
    bad = Schedule([Round(0, 1, a.chunks[0]), Round(0, 1, a.chunks[1])])
    assert _ask(b, _signed(a.raw, "hello", HelloBody(bad, a.binding, a.quote)))[0] == "schedule"
    # a resent hello of the running contract is answered with the same agreement
    assert _ask(b, _signed(a.raw, "hello", HelloBody(sched, a.binding, a.quote)))[0] == "agree"
    # the right round and key but a ciphertext that is not that key: the enclave refuses it, the contract stops
    got, reason = _ask_through_tasks(b, rel(ct=ecies_encrypt(enc_b, b"\x05" * 32,
                                                             release_aad(ch0.pubkey, release_context(cid, 0)))))
    assert got == "wrong-key" and "wrong-key" in reason
    assert b.proto.state(cid) == FAILED and b.proto.outcome(cid).status == "failed"
    assert _ask(b, good)[0] == "stopped"
    # and a resent hello of the stopped contract is not agreed again (A would release into a dead contract)
    assert _ask(b, _signed(a.raw, "hello", HelloBody(sched, a.binding, a.quote)))[0] == "stopped"
    assert b.journal_releases() == []  # B released nothing


# ---------------------------------------------------------------- withholding
@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_a_withholding_peer_costs_at_most_one_chunk(tmp_path, stop_at):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)

    def withhold(src, cmd):  # B sends nothing from its round `stop_at` on (neither the release nor resends)
        env = wire.decode(cmd.data, wire.Signed)
        return src is b and env.kind == "release" and wire.decode(env.body, ReleaseBody).round >= stop_at

    pair.drop = withhold
    pair.run(done=lambda: a.proto.state(cid) in (WITHHELD, FAILED, DONE))
    assert a.proto.state(cid) == WITHHELD
    out = a.proto.outcome(cid)
    assert out.status == "withheld" and out.lost == 1 and out.released == out.received + 1
    assert [c.status for c in out.chunks] == ["claimed"] * (stop_at // 2) + ["withheld"] * (3 - stop_at // 2)
    note = next(n for n in a.notes if n.kind == "release.withheld")
    assert note.detail["lost"] == 1 and note.detail["peer"] == b.peer_id
    assert len(a.journal_releases()) == stop_at // 2 + 1  # A stopped releasing after the silent round


def test_a_silent_peer_before_agreement_costs_nothing(tmp_path):
    ledger2 = DevLedger(None, automine=True)
    a2, b2 = Side("A", tmp_path / "2", ledger2), Side("B", tmp_path / "2", ledger2)
    p2 = Pair(a2, b2)
    p2.drop = lambda src, cmd: True
    p2.run(until=0)
    s2 = swap_schedule(a2.chunks, b2.chunks)
    p2.call(a2, a2.proto.propose, b2.peer_id, s2)
    p2.run(until=100)
    (c,) = a2.proto.contracts.values()
    assert c.rec.state == WITHHELD and c.outcome.lost == 0 and a2.journal_releases() == []


# ---------------------------------------------------------------- crash / restart
def _count_steps(tmp_path):
    plans = (CrashPlan(), CrashPlan())
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path / "count", plans=plans)
    pair.run(done=both_stopped(a, b, cid))
    assert_swapped(ledger, a, b, cid)
    return plans[0].n, plans[1].n


STEPS_PER_SIDE = (10, 9)  # 3 chunks each, per side 3 exports and 3 claims (sweeps), and A: 1 release, 2 steps
# (take a key, release the next), 1 accept (the last key); B: 3 steps


def crash_points():
    return [(side, i, phase) for side in (0, 1) for i in range(1, STEPS_PER_SIDE[side] + 1)
            for phase in ("before", "after")]


@pytest.mark.parametrize("side,step,phase", crash_points())
def test_crash_at_each_step_finishes_the_swap_without_double_release_or_loss(tmp_path, side, step, phase):
    plans = [CrashPlan(), CrashPlan()]
    plans[side] = CrashPlan(step, phase)
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path, plans=tuple(plans))
    pair.run(done=both_stopped(a, b, cid))
    assert plans[side].fired, f"step {step} never happened ({plans[side].log})"
    assert pair.crashes == 1
    assert_swapped(ledger, a, b, cid)


def test_the_crash_points_cover_every_step(tmp_path):
    na, nb = _count_steps(tmp_path)
    assert (na, nb) == STEPS_PER_SIDE  # so crash_points() visits each of them


# ---------------------------------------------------------------- double spend
def test_double_spend_after_release_is_detected_and_reported(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    ch0 = sched.rounds[0].chunk
    leaked = {r.pub: r.priv for r in a.raw._core.list_keys()}[ch0.pubkey]  # a broken TEE: the key got out
    thief = address_for(ch0.asset, coincurve.PrivateKey(b"\x09" * 32).public_key.format())
    winner = []

    def double_spend(src, cmd):
        env = wire.decode(cmd.data, wire.Signed)
        if src is a and env.kind == "release" and not winner:
            winner.append(ledger.sweep(ch0.asset, leaked, thief))  # spent right after the release left

    pair.on_send = double_spend
    pair.run(done=both_stopped(a, b, cid))
    assert b.proto.state(cid) == FAILED
    out = b.proto.outcome(cid)
    assert out.status == "double-spent" and out.lost == 0
    assert out.chunks[0].status == "double-spent" and winner[0] in out.chunks[0].detail  # names the winning tx
    assert any(n.kind == "release.outcome" and n.detail["status"] == "double-spent" for n in b.notes)
    assert out.device == hashlib.sha256(a.binding.sign_pub).digest()  # the device to blame
    signed = b.proto.signed_outcome(cid)  # the report B would gossip, signed by B's enclave
    assert verify_signed_outcome(signed, net=NET) == (out, b.binding.sign_pub)
    env = wire.decode(signed, wire.Signed)
    forged = wire.encode(wire.Signed(env.version, env.net, env.kind, wire.encode(
        msgspec.structs.replace(out, status="claimed")), env.signer, env.sig))
    assert verify_signed_outcome(forged, net=NET) == "bad enclave signature"
    assert "not an outcome" in verify_signed_outcome(signed, net="main")
    assert b.journal_releases() == []  # B never released anything to the cheater
    assert a.proto.state(cid) == FAILED and "double-spent" in a.proto.contracts[cid.hex()].rec.reason


def test_double_spend_of_the_last_chunk_is_found_by_the_sweep_and_reported(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    last = sched.rounds[5].chunk  # B's last chunk: A acknowledges it at once (nothing of A's waits for it)
    leaked = {r.pub: r.priv for r in b.raw._core.list_keys()}[last.pubkey]
    thief = address_for(last.asset, coincurve.PrivateKey(b"\x07" * 32).public_key.format())
    winner = []

    def double_spend(src, cmd):
        env = wire.decode(cmd.data, wire.Signed)
        if src is b and env.kind == "release" and wire.decode(env.body, ReleaseBody).round == 5 and not winner:
            winner.append(ledger.sweep(last.asset, leaked, thief))

    pair.on_send = double_spend
    pair.run(done=both_stopped(a, b, cid))
    out = a.proto.outcome(cid)
    assert a.proto.state(cid) == FAILED and out.status == "double-spent"
    assert [c.status for c in out.chunks] == ["claimed", "claimed", "double-spent"]
    assert winner[0] in out.chunks[2].detail  # names the winning transaction
    assert b.proto.state(cid) == DONE  # B got its acknowledgement; A's report (signed, gossiped) names B's device
    assert verify_signed_outcome(a.proto.signed_outcome(cid), net=NET)[0].device == hashlib.sha256(
        b.binding.sign_pub).digest()


# ---------------------------------------------------------------- proof of cheating
class DoubleReleasingEnclaveForTests:
    """TEST-ONLY stand-in for a BROKEN enclave: it releases a deposit key again to anyone who asks,
    which an honest enclave (``node.enclave.core``) refuses. Everything else is the real enclave."""

    def __init__(self, datadir: Path) -> None:
        self.inner = InProcessEnclave(datadir)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def list_keys(self):  # the broken device also lies about what it released
        from node.tee.client import KeyStatus

        return [KeyStatus(k.pubkey, "held", b"", k.origin) if k.state == "released" else k
                for k in self.inner.list_keys()]

    # the broken device takes a contract over a key it already released, and releases that key again
    _specs: dict = {}

    def contract_open(self, spec: bytes, sigs=()):
        from node.contracts.spec import decode_spec, spec_id
        from node.crypto import sign_digest, tagged_hash
        from node.tee.client import EnclaveRefused
        from node.enclave.contracts import OpenResult

        try:
            return self.inner.contract_open(spec, sigs)
        except EnclaveRefused as exc:
            if exc.code != "not-held":
                raise
        s = decode_spec(spec)
        cid = spec_id(s)
        self._specs[cid] = s
        core = self.inner._core
        me = next(k for k, p in enumerate(s.parties) if p.binding.sign_pub == core.sign_pub)
        return OpenResult(cid, me, sign_digest(core._sign, tagged_hash("keyswitch/contract-terms", cid)), [])

    def contract_release(self, cid: bytes, index: int, receiver: int) -> bytes:
        from node.contracts.spec import release_context

        if cid not in self._specs:
            return self.inner.contract_release(cid, index, receiver)
        s, core = self._specs[cid], self.inner._core
        me = next(k for k, p in enumerate(s.parties) if p.binding.sign_pub == core.sign_pub)
        pub, step = s.parties[me].chunks[index].pubkey, s.step_of(me, index)
        recipient = s.parties[receiver].binding.enc_pub
        priv = next(r.priv for r in core.list_keys() if r.pub == pub)
        ct = ecies_encrypt(recipient, priv, release_aad(pub, release_context(cid, step)))
        return core.contracts._record(s, cid, step, pub, recipient, ct)


def test_cheating_proof_verifies_and_a_tampered_one_does_not(tmp_path):
    ledger = DevLedger(None, automine=True)
    a = Side("A", tmp_path, ledger, 1, enclave_factory=DoubleReleasingEnclaveForTests)
    b = Side("B", tmp_path, ledger, 1)
    c = Side("C", tmp_path, ledger, 1)
    pair = Pair(a, b, c)
    pair.run(until=0)
    releases = []
    pair.on_send = lambda src, cmd: releases.append(cmd.data) if (
        src is a and wire.decode(cmd.data, wire.Signed).kind == "release") else None
    for other in (b, c):  # the same chunk of A sold to two counterparties
        s = swap_schedule(a.chunks, other.chunks)
        other.expect(a.peer_id, s)
        pair.call(a, a.proto.propose, other.peer_id, s)
    pair.run(until=100)
    assert len(releases) == 2
    proof = CheatingProof(releases[0], releases[1])
    device = verify_cheating_proof(proof, net=NET)
    assert device == hashlib.sha256(a.binding.sign_pub).digest()
    assert verify_cheating_proof(wire.decode(wire.encode(proof), CheatingProof)) == device  # it travels

    # tampered: a flipped signature byte, a changed recipient, the same record twice, two different signers
    env = wire.decode(releases[1], wire.Signed)
    flipped = wire.encode(wire.Signed(env.version, env.net, env.kind, env.body, env.signer,
                                      bytes([env.sig[0] ^ 1]) + env.sig[1:]))
    body = wire.decode(env.body, ReleaseBody)
    moved = wire.encode(wire.Signed(env.version, env.net, env.kind, wire.encode(
        ReleaseBody(body.contract_id, body.round, body.deposit_pub, b.binding.enc_pub, body.ciphertext)),
        env.signer, env.sig))
    assert "bad enclave signature" in verify_cheating_proof(CheatingProof(releases[0], flipped))
    assert "bad enclave signature" in verify_cheating_proof(CheatingProof(releases[0], moved))
    assert "resend" in verify_cheating_proof(CheatingProof(releases[0], releases[0]))
    assert "malformed" in verify_cheating_proof(CheatingProof(releases[0], b"\x00"))
    assert "wrong network" in verify_cheating_proof(proof, net="main")
    b_rel = [d for _, cmd in pair.sent if (d := cmd.data) and wire.decode(d, wire.Signed).kind == "release"
             and wire.decode(d, wire.Signed).signer != a.binding.sign_pub]
    assert b_rel and "different enclaves" in verify_cheating_proof(CheatingProof(releases[0], b_rel[0]))

    # gossiped as a revocation notice, the proof is believed from anyone: the device is dropped at once
    from node.stores.offerbook import OfferBook
    from node.peerkey import PeerSigner
    from node.protocols.base import GossipReceived, Result
    from node.protocols.revocation import (
        RevocationNotice, RevocationProtocol, TrustConfig, cheating_proof_checker, make_notice,
    )
    from node.risk.engine import RiskEngine

    anyone = PeerSigner(bytes(32))
    notice = RevocationNotice(1, NET, "device", device.hex(), "released one key twice", "cheating-proof",
                              wire.encode(proof), anyone.peer_id, 0.0)
    eng = RiskEngine(OfferBook(None))
    rp = RevocationProtocol(net=NET, engine=eng, trust=TrustConfig(checkers={"cheating-proof":
                                                                             cheating_proof_checker(NET)}))
    data = make_notice(notice, anyone.sign)
    assert rp.validate(rp.topic, data, "x", 1.0).result is Result.ACCEPT
    rp.handle(GossipReceived(rp.topic, data, "x"), 1.0)
    assert eng.reputation.is_cheater(device)
    wrong = make_notice(RevocationNotice(1, NET, "device", "ab" * 32, "slander", "cheating-proof",
                                         wire.encode(proof), anyone.peer_id, 0.0), anyone.sign)
    v = rp.validate(rp.topic, wrong, "x", 1.0)
    assert v.result is Result.REJECT and "names another device" in v.reason


def test_an_honest_enclave_refuses_the_second_release(tmp_path):
    ledger = DevLedger(None, automine=True)
    a, b, c = (Side(n, tmp_path, ledger, 1) for n in "ABC")
    pair = Pair(a, b, c)
    pair.run(until=0)
    cids = []
    for other in (b, c):
        s = swap_schedule(a.chunks, other.chunks)
        other.expect(a.peer_id, s)
        pair.call(a, a.proto.propose, other.peer_id, s)
        cids.append(contract_id(s, [a.binding, other.binding]))
    pair.run(until=100)
    # one contract ran; the other failed: A's enclave will not take a contract over a key it released (or,
    # had it taken both before the first release, will not release the key a second time)
    recs = sorted((c.rec.state, c.rec.reason) for c in a.proto.contracts.values())
    assert [st for st, _ in recs] == [DONE, FAILED]
    why = recs[1][1]
    assert "not-held" in why or "already-released" in why, why
    assert len(a.journal_releases()) == 1


# ---------------------------------------------------------------- agreement checks
def test_an_untrusted_quote_is_refused_on_either_side(tmp_path):
    # B answers with a quote that does not commit to its binding: A refuses the agreement, releases nothing
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path / "1")
    assert a.proto.state(cid) is None  # the hello is still in flight
    b.proto.quote = a.quote
    pair.run(until=100)
    (c,) = a.proto.contracts.values()
    assert c.rec.state == FAILED and c.outcome.lost == 0 and a.journal_releases() == []
    assert c.rec.reason.startswith("attestation: ") and "binding-mismatch" in c.rec.reason
    assert any(code == "attestation" and "binding-mismatch" in why for code, why in a.proto.refusals)
    # A's hello carries a quote of another enclave: B refuses it with the reason
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path / "2")
    bad = _signed(a.raw, "hello", HelloBody(sched, a.binding, b.quote))
    b.proto.contracts.clear()
    b.proto.expect(a.peer_id, sched)
    code, reason = _ask(b, bad)
    assert code == "attestation" and "binding-mismatch" in reason


def test_agreement_needs_the_counterpartys_funds_on_the_ledger(tmp_path):
    ledger = DevLedger(None, automine=True)
    a, b = Side("A", tmp_path, ledger), Side("B", tmp_path, ledger)
    leaked = {r.pub: r.priv for r in a.raw._core.list_keys()}[a.chunks[1].pubkey]
    ledger.sweep(a.chunks[1].asset, leaked, a.owner_address(a.chunks[1]))  # A's second chunk is gone already
    sched = swap_schedule(a.chunks, b.chunks)
    b.expect(a.peer_id, sched)
    pair = Pair(a, b)
    asked = []

    def check(asset, addr, real=b.proto.check_funds):  # the ledger is asked in a task, never inside handle
        asked.append(pair.in_task)
        return real(asset, addr)

    b.proto.check_funds = check
    pair.run(until=0)
    pair.call(a, a.proto.propose, b.peer_id, sched)
    pair.run(until=100)
    assert asked and all(asked)
    assert any(code == "funds" for code, _ in b.proto.refusals)
    (c,) = a.proto.contracts.values()
    assert c.rec.state == FAILED and "funds" in c.rec.reason and a.journal_releases() == []
    assert b.proto.contracts == {} and b.journal_releases() == []


def test_the_initiator_checks_the_offered_funds_as_the_hello_goes_out_once_and_fails_when_they_are_gone(tmp_path):
    """The schedule names the responder's chunks: their funds are checked alongside the hello (and the
    responder's check of ours), not after the agree; the agree uses that check (once per chunk); a chunk
    whose funds are gone fails the contract before anything is released."""
    for gone in (False, True):
        ledger = DevLedger(None, automine=True)
        a, b = Side("A", tmp_path / str(gone), ledger), Side("B", tmp_path / str(gone), ledger)
        if gone:  # B's second chunk is swept away before the proposal
            leaked = {r.pub: r.priv for r in b.raw._core.list_keys()}[b.chunks[1].pubkey]
            ledger.sweep(b.chunks[1].asset, leaked, b.owner_address(b.chunks[1]))
        sched = swap_schedule(a.chunks, b.chunks)
        b.expect(a.peer_id, sched)
        pair = Pair(a, b)
        asked = []

        def check(asset, addr, real=a.proto.check_funds):
            asked.append(addr)
            return real(asset, addr)

        a.proto.check_funds = check
        while pair.queue:  # Started, on both sides
            pair.step()
        cmds = a.proto.propose(b.peer_id, sched, pair.now)
        assert [c.name.split(":")[0] for c in cmds if isinstance(c, LedgerCall)] == ["release.offered"]
        pair.carry(a, cmds)
        (c,) = a.proto.contracts.values()
        pair.run(until=100, done=lambda: c.rec.state != "proposed")
        assert sorted(asked) == sorted(ch.address for ch in b.chunks)  # each of B's chunks, once
        if gone:
            assert c.rec.state == FAILED and "funds" in c.rec.reason and a.journal_releases() == []
        else:
            assert a.proto.state(contract_id(sched, [a.binding, b.binding])) == RUNNING


def test_mutated_messages_never_crash_the_protocol(tmp_path):
    import random

    ledger, a, b, sched, cid, pair = _running(tmp_path)
    a_priv = {r.pub: r.priv for r in a.raw._core.list_keys()}
    ch0 = sched.rounds[0].chunk
    ct = ecies_encrypt(b.binding.enc_pub, a_priv[ch0.pubkey], release_aad(ch0.pubkey, release_context(cid, 0)))
    seeds = [_signed(a.raw, "release", ReleaseBody(cid, 0, ch0.pubkey, b.binding.enc_pub, ct)),
             _signed(a.raw, "hello", HelloBody(sched, a.binding, a.quote))]
    rng = random.Random(7)
    for i in range(400):
        m = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(m))
            if op < 0.6:
                m[pos] ^= 1 << rng.randrange(8)
            elif op < 0.8:
                del m[pos]
            else:
                m.insert(pos, rng.randrange(256))
        cmds = b.proto.handle(RequestReceived(PROTOCOL_ID, a.peer_id, 1000 + i, bytes(m)), NOW + 1)
        assert sum(isinstance(c, Respond) for c in cmds) == 1
    assert b.journal_releases() == []


def test_a_corrupt_contract_record_is_reported_not_fatal(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    pair.run(done=both_stopped(a, b, cid))
    (rec,) = (a.dir / "contracts").glob("*.rec")
    rec.write_bytes(b"\x00garbage")
    a.restart()
    cmds = a.proto.handle(Started(a.peer_id), NOW)
    assert [c.kind for c in cmds if isinstance(c, Notify)] == ["release.store-error"]


# ---------------------------------------------------------------- a lossy, duplicating, reordering network
@pytest.mark.parametrize("seed", range(6))
def test_under_loss_duplication_and_reordering_no_side_is_ever_exposed_to_more_than_one_chunk(tmp_path, seed):
    import random

    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    pair.chaos(random.Random(seed))
    while pair.now < NOW + 600 and pair.step():
        assert exposed(a) <= 1 and exposed(b) <= 1
        if both_stopped(a, b, cid)():
            break
    # retries (every 2 s, well inside the 30 s deadline) carry the swap through: it completes every time
    assert_swapped(ledger, a, b, cid)


@pytest.mark.parametrize("step", [1, 2])  # A's steps: contract_release, contract_step (takes a key, releases), ...
def test_sigkill_of_the_enclave_process_after_a_release_then_restart_finishes_the_swap(tmp_path, step):
    """The enclave as its own OS process, SIGKILLed right after it journaled a release (the ciphertext never
    left): after a restart from the same directory the swap completes, the key released once."""
    from node.tee.client import SubprocessEnclave

    holder = {}
    plan = CrashPlan(step, "after", on_crash=lambda: holder["a"].raw.kill())
    ledger = DevLedger(None, automine=True)
    a = holder["a"] = Side("A", tmp_path, ledger, 3, plan, enclave_factory=lambda d: SubprocessEnclave(d))
    b = Side("B", tmp_path, ledger, 3)
    sched = swap_schedule(a.chunks, b.chunks)
    b.expect(a.peer_id, sched)
    pair = Pair(a, b)
    pair.run(until=0)
    pair.call(a, a.proto.propose, b.peer_id, sched)
    cid = contract_id(sched, [a.binding, b.binding])
    try:
        pair.run(done=both_stopped(a, b, cid))
        assert plan.fired and plan.log[step - 1] == ("contract_release", "contract_step")[step - 1]
        assert pair.crashes == 1
        assert_swapped(ledger, a, b, cid)
    finally:
        a.raw.close()


def test_a_claim_that_fails_on_our_own_ledger_is_retried_and_blames_no_one(tmp_path):
    from node.ledger.base import LedgerUnreachable

    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    real, failures = b.proto.claim, []

    def flaky(chunk):  # B's ledger is down for the first 20 s (virtual); longer than A's deadline would be
        if pair.now < NOW + 20:  # indistinguishable, to A, from B withholding its next key
            failures.append(pair.now)
            raise LedgerUnreachable("connection refused")
        return real(chunk)

    b.proto.claim = flaky
    pair.run(done=both_stopped(a, b, cid))
    assert len(failures) > 5  # retried every 2 s; B neither stops nor blames A meanwhile
    assert any(n.kind == "release.claim-retry" for n in b.notes)
    assert_swapped(ledger, a, b, cid)


def test_a_last_release_never_acknowledged_still_ends_done(tmp_path):
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path)
    pair.drop_response = lambda src, cmd: src is a and wire.decode(cmd.data, wire.Signed).kind == "ack" and \
        wire.decode(wire.decode(cmd.data, wire.Signed).body, AckBody).round == 5  # B's last round
    pair.run(done=both_stopped(a, b, cid))
    assert "never acknowledged" in b.proto.contracts[cid.hex()].rec.reason
    assert_swapped(ledger, a, b, cid)


def test_a_proposal_resumed_after_a_restart_that_changed_our_binding_is_agreed_by_a_responder_that_agreed_before(
        tmp_path):
    """The initiator A proposes; B agrees, and A dies before B's agree reaches it. A restarts with another binding
    (its enclave holds other keys now: the binding's ``keys_root`` changed, as a daemon's does once a key of a
    contract running meanwhile was released). The resumed hello carried the new binding, so it named another
    contract id, and B, which had agreed to the first, refused it ("not-expected"): the swap failed. The hello
    carries the binding the proposal was made with, and the swap completes."""
    ledger, a, b, sched, cid, pair = setup_swap(tmp_path, n=2)
    pair.drop_response = lambda src, cmd: src is b  # B's agree never reaches A
    pair.run(until=1, done=lambda: b.proto.state(cid) is not None)
    assert b.proto.state(cid) == RUNNING
    a.raw.generate_keys(1)  # A's enclave now holds another key: its binding is another after the restart
    old = a.binding
    a.binding = a.raw.binding_for(NET, a.peer_id)
    a.quote = a.raw.quote(a.binding, now=NOW)
    assert a.binding != old
    pair.drop_response = lambda src, cmd: False
    pair.crash(a)
    pair.run(until=200, done=both_stopped(a, b, cid))
    for me, other in ((a, b), (b, a)):
        assert me.proto.state(cid) == DONE, (me.name, [c.rec.reason for c in me.proto.contracts.values()])
        out = me.proto.outcome(cid)
        assert out.status == "claimed" and out.lost == 0 and out.received == len(other.chunks)
        assert sorted(me.journal_releases()) == sorted(c.pubkey for c in me.chunks)


def test_a_responder_slower_than_the_retry_interval_gets_one_hello_and_its_late_answer_is_taken(tmp_path):
    """A loaded machine: the responder answers 9 s after the hello (its event queue is long). The initiator sent a
    copy every 2 s (``retry_interval``), each with a 2 s timeout, so the runtime threw every answer later than 2 s
    away; each copy cost both enclaves work and queued ahead of the answers, and agreements came ~29 s late
    against the 30 s round timeout (the request functional test and benchmarks.request under load). Now one
    request per contract is in flight at a time, and it waits ``request_timeout`` for its answer."""
    ledger = DevLedger(None, automine=True)
    a, b = Side("A", tmp_path, ledger, 2), Side("B", tmp_path, ledger, 2)
    sched = swap_schedule(a.chunks, b.chunks)
    b.expect(a.peer_id, sched)
    pair = Pair(a, b)
    while pair.queue:  # both sides started
        pair.step()
    pair.drop = lambda src, cmd: True  # what A sends waits in B's queue
    pair.call(a, a.proto.propose, b.peer_id, sched)
    while pair.queue or min(pair.timers.values()) <= NOW + 9:  # the first 9 s (timers due by then)
        pair.step()
    pair.now = NOW + 9
    hellos = [c for src, c in pair.sent if src == a.peer_id]
    assert len(hellos) == 1, f"{len(hellos)} copies of the hello in 9 s while the first awaited its answer"
    assert hellos[0].timeout >= 9.0  # the runtime gives up a request after its timeout: a 9 s answer counts
    pair.drop = lambda src, cmd: False
    pair.carry(a, hellos)  # B takes the hello now, 9 s late, and answers it
    after = len(pair.sent)
    cid = contract_id(sched, [a.binding, b.binding])
    pair.run(until=200, done=both_stopped(a, b, cid))
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    assert not [c for src, c in pair.sent[after:] if src == a.peer_id and b"hello" in c.data[:12]]  # no copy
