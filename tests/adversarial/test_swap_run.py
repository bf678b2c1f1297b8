"""The swap as ``SwapDesk`` runs it over /keyswitch/contract-run/1 (issue #19): the initiator learns the peer's
attested binding, offers the ``turns`` spec of the schedule over /keyswitch/contract/1, the responder agrees and
opens it first (as release/1's responder signed first), the initiator's enclave takes it with the responder's
signature. Real nodes in process (offer stacks, enclaves, the switchboard, the swap desk) on the in-memory
network; what the daemon's driver hands the desks (``on_notify``) is handed to them here. The attacks: a
proposer that makes the responder give first, one that offers a contract other than the stdlib turns, and a
responder whose open the initiator's enclave refuses (the proposal must end, not wait for ever), a responder whose
own start fails (the proposer is told at once), a third peer that tries to cancel someone else's swap, and a
proposer that agrees and never opens (the responder's committed chunk must come home)."""

from __future__ import annotations

import hashlib
import time

import pytest

from node.contracts import stdlib
from node.contracts.spec import PartySpec, make_spec, spec_id
from node.ledger.devnet import DevLedger
from node.protocols.testing import GossipNet
from tests.adversarial.deskkit import NET, DrainedLedger, connect, deliver, make_node


@pytest.fixture
def world(tmp_path):
    now = time.time()
    ledger = DevLedger(None, automine=True)
    alice = make_node(tmp_path, "alice", ledger, "BTC-REG", 3, now)
    bob = make_node(tmp_path, "bob", ledger, "BTC-REG", 3, now)
    net = GossipNet()
    connect(net, now, alice, bob)
    for s in (alice, bob):
        _host(net, s, now)
    yield net, alice, bob, now
    for s in (alice, bob):
        s.close()


def _host(net, stack, now: float) -> None:
    """The daemon's host as the desk sees it: a submitted call's commands go to the in-memory network."""

    class Driver:
        def submit(self, proto, fn):
            net.call(stack.peer_id, proto, fn(now), now)

    stack.desk.node = type("Host", (), {"driver": Driver()})()


def _device(stack) -> bytes:
    return hashlib.sha256(stack.protocol.own.binding.sign_pub).digest()


def _propose(net, alice, bob, spec, now: float) -> tuple[bool, str]:
    """Alice's desk expects ``spec`` and offers it to bob over /keyswitch/contract/1, as ``NodeServices`` does."""
    net.call(alice.peer_id, alice.desk.run, alice.desk.swaps.propose(spec, now), now)
    rid, cmds = alice.rfp.offer_contract(bob.peer_id, "swap", spec.encode(), now)
    net.call(alice.peer_id, alice.rfp, cmds, now)
    return alice.rfp.contract_answers[rid]


def _plan(alice, bob, n: int):
    alice.desk.run.known[bob.peer_id] = bob.protocol.own.binding  # (NodeServices asks it with who)
    spec, _summary = alice.desk.plan_swap(bob.peer_id, "BTC-REG", "BTC-REG", n)
    return spec


def _proposed_to_a_silent_peer(net, alice, bob, now: float):
    """(spec, ended): alice's one-chunk swap, held and agreed by bob, who opens nothing; ``ended``: the outcomes
    alice's watchers hear."""
    bob.rfp.on_contract = lambda peer, offer, t: None  # agrees, opens nothing
    ended: list[dict] = []
    alice.desk.watchers.append(ended.append)
    spec = _plan(alice, bob, 1)
    assert alice.desk.reserve_plan(bob.peer_id, spec, now) is None
    assert _propose(net, alice, bob, spec, now) == (True, "")
    deliver(net, alice, bob)
    return spec, ended


def test_a_swap_over_contract_run_completes_each_side_reports_it_once_and_the_holds_go(world):
    net, alice, bob, now = world
    ended: list[dict] = []
    alice.desk.watchers.append(ended.append)
    spec = _plan(alice, bob, 2)
    assert alice.desk.is_swap(spec) and spec.ids == (alice.peer_id, bob.peer_id)
    assert [c.usd_cents for c in spec.parties[1].chunks] == [5_000, 5_000]  # declared: every enclave signs them
    assert alice.desk.reserve_plan(bob.peer_id, spec, now) is None
    assert _propose(net, alice, bob, spec, now) == (True, "")
    cid = spec_id(spec)
    assert alice.desk.run.state(cid) is None  # nothing of alice's committed before bob's enclave signed
    assert {r["contract"]: r for r in alice.desk.contracts()}[cid.hex()]["state"] == "proposed"
    deliver(net, alice, bob)  # bob's desk opens it once its answer is out; alice's enclave takes it, they run
    for s in (alice, bob):
        assert s.desk.run.state(cid) == "done", s.desk.run.runs[cid.hex()].rec.reason
    out = alice.desk.run.outcome(cid)
    assert (out.status, out.released, out.received, out.lost) == ("claimed", 2, 2, 0)
    assert [d["status"] for d in ended] == ["claimed"]  # the request desk hears the swap end once
    rows = {r["contract"]: r for r in alice.desk.contracts()}
    row = rows[cid.hex()]
    assert (row["kind"], row["peer"], row["role"], row["rounds"]) == ("swap", bob.peer_id, "initiator", 4)
    assert row["outcome"]["status"] == "claimed"
    for s in (alice, bob):  # every key due to each side is in: when its enclave took the last (benchmarks.swap)
        assert {r["contract"]: r for r in s.desk.contracts()}[cid.hex()]["keys_in_at"] >= now
    # one report per swap, as release/1 (not one per claim)
    assert alice.outcomes.records.reported(cid.hex()) and not alice.outcomes.records.reported(f"{cid.hex()}:1")
    assert alice.engine.holds == {} and bob.engine.holds == {}
    assert alice.engine.reputation.record(_device(bob)) is not None


def test_a_proposer_that_makes_the_responder_give_first_is_refused(world):
    net, alice, bob, now = world
    spec = _plan(alice, bob, 1)
    flipped = make_spec(NET, spec.source, {}, [spec.parties[1], spec.parties[0]], [(1, 0), (0, 0)])
    accepted, reason = _propose(net, alice, bob, flipped, now)
    assert not accepted and "party 0" in reason
    deliver(net, alice, bob)
    assert bob.desk.run.runs == {} and bob.engine.holds == {}


def test_a_swap_offer_of_another_contract_than_the_stdlib_turns_is_refused(world):
    net, alice, bob, now = world
    spec = _plan(alice, bob, 1)
    gift = stdlib.source("turns").replace("sent_count(a, b) <= sent_count(b, a)", "true")
    other = make_spec(NET, gift, {}, list(spec.parties), spec.order)
    accepted, reason = _propose(net, alice, bob, other, now)
    assert not accepted and "must carry the stdlib turns contract" in reason
    deliver(net, alice, bob)
    assert bob.desk.run.runs == {}


def test_a_proposal_whose_open_our_enclave_refuses_ends_failed_at_once(world):
    """Between the agreement and bob's open, alice's chunk left her enclave (here: exported to her owner): her
    enclave refuses the contract. The proposal ends failed with that reason, for the request desk, at once (before:
    it waited for an outcome that never came), and its hold goes."""
    net, alice, bob, now = world
    ended: list[dict] = []
    alice.desk.watchers.append(ended.append)
    spec = _plan(alice, bob, 1)
    assert alice.desk.reserve_plan(bob.peer_id, spec, now) is None
    net.call(alice.peer_id, alice.desk.run, alice.desk.swaps.propose(spec, now), now)
    alice.enclave.export_to_owner(spec.parties[0].chunks[0].pubkey)
    rid, cmds = alice.rfp.offer_contract(bob.peer_id, "swap", spec.encode(), now)
    net.call(alice.peer_id, alice.rfp, cmds, now)
    assert alice.rfp.contract_answers[rid] == (True, "")
    deliver(net, alice, bob)
    assert alice.desk.run.state(spec_id(spec)) is None
    assert [(d["status"], d["lost"]) for d in ended] == [("failed", 0)], ended
    assert "refused the contract" in ended[0]["reason"]
    assert [c["status"] for c in ended[0]["chunks"]] == ["not-received"]
    assert alice.engine.holds == {}
    assert bob.desk.run.state(spec_id(spec)) == "failed"
    row = {r["contract"]: r for r in alice.desk.contracts()}[spec_id(spec).hex()]  # (keyswitch contracts shows it)
    assert (row["state"], row["role"], row["peer"], row["outcome"]["status"]) == ("failed", "initiator", bob.peer_id,
                                                                                "failed")


def test_a_proposal_the_peer_agrees_to_and_never_opens_ends_failed_and_frees_its_hold(world):
    """A hostile responder agrees to every offer and never opens the contract: the proposal holds its exposure on
    the peer's device for ``RESERVE_TTL``, then ends failed for the request desk (before: it waited for an
    outcome that never came, ``SWAP_LIMIT``) and its hold goes. Nothing of ours was committed."""
    from node.contracts.desk.swaps import RESERVE_TTL

    net, alice, bob, now = world
    spec, ended = _proposed_to_a_silent_peer(net, alice, bob, now)
    alice.desk.tick(now + 1)
    assert ended == [] and alice.engine.caps.exposure.by_device.get(_device(bob), 0) == 5_000
    alice.desk.tick(now + RESERVE_TTL + 1)
    assert [(d["status"], d["lost"]) for d in ended] == [("failed", 0)] and "did not open" in ended[0]["reason"]
    assert alice.engine.holds == {}
    assert {o.pubkey for o in alice.protocol.own.offers} >= {c.pubkey for c in spec.parties[0].chunks}


def test_a_proposal_resumed_after_a_restart_with_the_wall_clock_stepped_back_lapses_on_time(world, tmp_path):
    """Alice proposed a swap bob agreed to and never opens; her host restarts with the wall clock stepped back an
    hour (an NTP step; the host is hostile). The proposal comes back from the runner's agreement store with its
    wall-clock time: counted on the wall, it held bob's device (and expected his open) an hour and a minute past the
    restart. Now it lapses ``RESERVE_TTL`` after the restart at the latest, on the monotonic clock."""
    from node.app.stack import add_switchboard
    from node.clock import ManualClock
    from node.contracts.desk.swaps import RESERVE_TTL, SwapDesk

    net, alice, bob, now = world
    spec, _ = _proposed_to_a_silent_peer(net, alice, bob, now)
    clock = ManualClock(now + 1)
    clock.step(-3600)
    alice.engine.reputation.close()
    add_switchboard(alice, tmp_path / "alice")  # the restart: a new risk engine (no holds) and desk
    alice.desk = SwapDesk(alice, clock=clock)
    net.add(alice.peer_id, alice.protocol, alice.rfp, alice.desk.run, now=clock.now())
    _host(net, alice, clock.now())
    alice.desk.tick(clock.now())
    assert list(alice.desk.swaps.proposed) == [spec_id(spec).hex()]
    assert alice.engine.caps.exposure.by_device.get(_device(bob), 0) == 5_000  # held again after the restart
    clock.advance(RESERVE_TTL)
    alice.desk.tick(clock.now())
    assert alice.desk.swaps.proposed == {}, "a wall clock stepped back kept the proposal past RESERVE_TTL"
    assert alice.engine.caps.exposure.by_device.get(_device(bob), 0) == 0
    assert not alice.desk.run.expects(spec_id(spec))
    assert "did not open" in alice.desk.contracts()[-1]["reason"]


def test_a_node_started_on_a_data_directory_with_a_release1_swap_in_flight_migrates_it_before_its_runner_starts(
        tmp_path):
    """The desk opens its stores through ``open_run_stores``: a release/1 record in ``contracts/`` (what a node of
    before issue #19 left, a swap in flight) is a contract-run record of the same id in ``runs/`` before the
    runner resumes, so the swap goes on over contract-run/1; a proposal never agreed is dropped (nothing moved).
    (That the migrated record resumes to the end with no key released twice: tests/protocols/test_contract_swap.)"""
    from node.protocols.base import Started
    from node.contracts.protocol.swap import ContractRecord
    from node.contracts.protocol.schedule import Chunk, contract_id, swap_schedule
    from node.stores.contracts import ContractStore
    from node.contracts.desk.swaps import SwapDesk
    from tests.adversarial.deskkit import Clock

    now = time.time()
    ledger = DevLedger(None, automine=True)
    alice = make_node(tmp_path, "alice", ledger, "BTC-REG", 2, now)
    bob = make_node(tmp_path, "bob", ledger, "BTC-REG", 2, now)
    try:
        chunks = [[Chunk(o.asset, o.address, o.pubkey, o.amount) for o in s.protocol.own.offers] for s in (alice, bob)]
        sched = swap_schedule(chunks[0][:1], chunks[1][:1])
        bindings = [alice.protocol.own.binding, bob.protocol.own.binding]
        old = ContractStore(alice.datadir / "contracts")
        running = ContractRecord(NET, 0, bob.peer_id, sched, bindings, [b"q0", b"q1"], "running", acked=0)
        cid = contract_id(sched, bindings)
        old.put(cid.hex(), running)
        old.put("p-" + "cd" * 16, ContractRecord(NET, 0, bob.peer_id, sched, bindings[:1], [b"q0"], "proposed"))
        desk = SwapDesk(alice, clock=Clock(now))  # the node (re)starts on this data directory
        done = dict(desk.migrated)
        assert len(done) == 2 and done[cid.hex()] == "migrated", done
        assert done["p-" + "cd" * 16].startswith("dropped: "), done
        assert [k for k, _ in desk.run.store.items()] == [cid.hex()]  # in the runner's store, same contract id
        assert ContractStore(alice.datadir / "contracts").items() == []  # and gone from the old one
        rec = dict(desk.run.store.items())[cid.hex()]
        assert rec.state == "running" and rec.acked == [0]
        desk.run.handle(Started(alice.peer_id), now)  # the runner starts: it resumes the swap
        assert desk.run.state(cid) == "running" and desk.is_swap(desk.run.runs[cid.hex()].spec)
    finally:
        alice.close()
        bob.close()


def test_a_responder_whose_own_start_fails_tells_the_proposer_at_once(world):
    """Bob agrees to alice's swap, then his own start fails (his ledger shows alice's chunk gone). Before, alice
    learnt nothing until her proposal lapsed, ``RESERVE_TTL`` (60 s) later: her hold on bob's device stayed all
    that time, and a request waited a minute before asking another provider for that share. Bob's runner now
    declines the contract to alice at once (``decline`` over contract-run/1, signed by his enclave): her proposal
    ends failed with his reason, her hold goes, and she no longer expects the contract."""
    net, alice, bob, now = world
    ended: list[dict] = []
    alice.desk.watchers.append(ended.append)
    spec = _plan(alice, bob, 1)
    cid = spec_id(spec)
    assert alice.desk.reserve_plan(bob.peer_id, spec, now) is None
    bob.ledger = DrainedLedger(bob.ledger, [c.address for c in spec.parties[0].chunks])
    assert _propose(net, alice, bob, spec, now) == (True, "")
    deliver(net, alice, bob)  # bob's desk starts it once its answer is out: the start fails
    assert bob.desk.run.state(cid) is None and alice.desk.run.state(cid) is None
    assert [(d["status"], d["lost"]) for d in ended] == [("failed", 0)], ended
    assert "the peer could not start the contract" in ended[0]["reason"] and "funds" in ended[0]["reason"], ended
    assert alice.engine.holds == {} and bob.engine.holds == {}
    assert not alice.desk.run.expects(cid)
    row = {r["contract"]: r for r in alice.desk.contracts()}[cid.hex()]
    assert (row["state"], row["role"]) == ("failed", "initiator")


def test_a_decline_from_a_peer_that_is_not_a_runner_of_the_swap_is_refused(world, tmp_path):
    """Carol, no party to alice's swap with bob, sends alice a ``decline`` of it (signed by her own enclave): alice
    refuses it ("wrong-peer") and still expects bob's open; only a runner's enclave can decline a contract."""
    net, alice, bob, now = world
    carol = make_node(tmp_path, "carol", alice.ledger, "BTC-REG", 1, now)
    try:
        net.add(carol.peer_id, carol.protocol, carol.rfp, carol.desk.run, now=now)
        spec, ended = _proposed_to_a_silent_peer(net, alice, bob, now)
        net.call(carol.peer_id, carol.desk.run, carol.desk.run.decline(spec, "forged", now), now)
        assert any(n.kind == "contract.refused" and n.detail["code"] == "wrong-peer"
                   for n in net.peers[alice.peer_id].notes), net.peers[alice.peer_id].notes
        deliver(net, alice, bob)
        assert alice.desk.run.expects(spec_id(spec)) and ended == []
        assert alice.engine.caps.exposure.by_device.get(_device(bob), 0) == 5_000
    finally:
        carol.close()


def _opened_by_bob_only(net, alice, bob, now: float):
    """(contract id, bob's chunk): alice offers bob a one-chunk swap she never expects (her runner answers bob's
    open "not-expected"); bob agrees and opens it (his chunk committed); past the runner's deadline it is withheld."""
    spec = _plan(alice, bob, 1)
    cid, pub = spec_id(spec), spec.parties[1].chunks[0].pubkey
    rid, cmds = alice.rfp.offer_contract(bob.peer_id, "swap", spec.encode(), now)  # offered, never expected
    net.call(alice.peer_id, alice.rfp, cmds, now)
    assert alice.rfp.contract_answers[rid] == (True, "")
    deliver(net, alice, bob)  # bob opens it: his chunk is committed
    assert bob.desk.run.state(cid) == "running" and pub not in bob.enclave.offerable_pubkeys()
    _seconds(net, alice, bob, now + bob.desk.run.round_timeout + 1, 1)
    assert bob.desk.run.state(cid) == "withheld" and pub not in bob.enclave.offerable_pubkeys()
    return cid, pub


def _seconds(net, alice, bob, t: float, n: int) -> None:
    """``n`` seconds of the daemons' timers from ``t`` (a retry re-arms the runner's deadline), notices delivered."""
    for k in range(n):
        bob.desk.clock.t = alice.desk.clock.t = t + k
        net.advance(t + k)
        deliver(net, alice, bob)


def test_the_responders_chunk_in_a_swap_the_proposer_never_opens_comes_home_when_the_contract_is_dropped(world):
    """Issue 18 (c). Alice offers bob a swap and never opens it (she does not even expect it: her runner answers
    bob's open "not-expected"). Bob agreed and opened first, as a responder does: his enclave committed his chunk.
    After the runner's deadline his side is withheld: his hold on alice's device goes and he reports her device.
    But ``turns`` has no time-lock, and an enclave counts a contract not every runner signed as never ended: bob's
    chunk stayed committed for good (never offered again, not even exportable by his owner). Now, ``drop_after``
    (600 s) with no progress and alice's signature still missing, bob's runner has his enclave drop the contract
    (nothing moved under it, and no release is possible before every runner signed): his chunk is his again and
    back on his sheet."""
    net, alice, bob, now = world
    cid, pub = _opened_by_bob_only(net, alice, bob, now)
    bob.desk.tick(now + bob.desk.run.round_timeout + 1)
    assert bob.engine.holds == {}  # the exposure bob held on alice's device is released
    assert bob.outcomes.records.reported(cid.hex())  # alice's device reported (withheld)
    t = now + bob.desk.run.drop_after + 1
    _seconds(net, alice, bob, t, 3)
    assert bob.desk.run.state(cid) == "failed" and "never signed" in bob.desk.run.runs[cid.hex()].rec.reason
    assert pub in bob.enclave.offerable_pubkeys(), "the responder's chunk is still committed"
    bob.refresh_offers(t + 3)
    assert pub in {o.pubkey for o in bob.protocol.own.offers}  # offered again
    row = {r["contract"]: r for r in bob.desk.contracts()}[cid.hex()]  # (keyswitch contracts still shows it)
    assert (row["state"], row["status"], row["released"]) == ("failed", "dropped", [])


def test_a_contract_the_enclave_refuses_to_drop_is_asked_once_and_runs_on(world):
    """Where our enclave refuses the drop (our keys escrowed under the contract: it runs until its time-lock), the
    runner asks once, not every second, and the contract stays withheld with our chunk committed."""
    from node.tee.client import EnclaveRefused

    net, alice, bob, now = world
    cid, pub = _opened_by_bob_only(net, alice, bob, now)
    asked = []

    def refuse(c: bytes) -> None:
        asked.append(c)
        raise EnclaveRefused("our chunks' keys are escrowed under the contract", "escrowed")

    bob.enclave.contract_drop = refuse
    _seconds(net, alice, bob, now + bob.desk.run.drop_after + 1, 10)
    assert asked == [cid]
    assert bob.desk.run.state(cid) == "withheld" and pub not in bob.enclave.offerable_pubkeys()


def test_a_contract_every_runner_signed_is_never_dropped(world):
    """I1 holds: a host may ask its enclave to drop only a contract some runner never signed. Bob's host asks his
    enclave to drop a swap both enclaves signed: refused ("signed"), whatever moved stays moved."""
    from node.tee.client import EnclaveRefused

    net, alice, bob, now = world
    spec = _plan(alice, bob, 1)
    assert alice.desk.reserve_plan(bob.peer_id, spec, now) is None
    assert _propose(net, alice, bob, spec, now) == (True, "")
    deliver(net, alice, bob)
    cid = spec_id(spec)
    assert bob.desk.run.state(cid) == "done"
    for s in (alice, bob):
        with pytest.raises(EnclaveRefused) as exc:
            s.enclave.contract_drop(cid)
        assert exc.value.code == "signed"
        assert len(s.enclave.contract_status(cid).moved) == 2


def test_an_outcome_reported_before_the_host_runs_is_published_once_it_does(tmp_path):
    """At a start the runner sees its ended swaps again (their claims re-notified) before the daemon hands the desk
    its host (``desk.node``): the desk's report was signed, marked reported and then lost to an AttributeError
    (a fault trial's SIGKILL and restart showed the traceback). Now it waits for the host and goes out once."""
    import time as _time

    from node.ledger.devnet import DevLedger

    now = _time.time()
    alice = make_node(tmp_path, "alice", DevLedger(None, automine=True), "BTC-REG", 1, now)
    try:
        assert getattr(alice.desk, "node", None) is None  # (as the daemon builds it: no host yet)
        alice.desk.reporter.publish(b"signed report")  # what OutcomeReporter.report hands it
        submitted = []

        class Driver:
            def submit(self, proto, fn):
                submitted.append(proto)

        alice.desk.node = type("Host", (), {"driver": Driver()})()
        assert submitted == [alice.outcomes]
        alice.desk.reporter.publish(b"another")
        assert submitted == [alice.outcomes, alice.outcomes]
    finally:
        alice.close()
