"""The swap as a contract over /keyswitch/contract-run/1 (issue #19, one contract protocol): what release/1 gave
the swap desk that contract-run/1 now gives too (the swap-shaped outcome, the commitment notice that takes our
chunks off our sheet at once), and a node upgraded with a release/1 swap in flight resuming it over
contract-run/1 (same contract id, same enclave state) with no key released twice. Real InProcessEnclaves, a
real DevLedger, the in-memory pair of the contract-run tests."""

from __future__ import annotations

import hashlib

import pytest

from node import wire
from node.contracts.spec import ReleaseBody, spec_id
from node.ledger.devnet import FEES
from node.contracts.protocol.run import DONE, RUNNING, WITHHELD, ContractRun, RunRecord
from node.contracts.protocol.swap import ContractRecord, migrate_release_records, run_record_of
from node.protocols.offers import AttestationCache, default_attestation_verifier
from node.contracts.protocol.claims import sweep_claimer
from node.contracts.protocol.schedule import Chunk, schedule_spec, swap_schedule
from node.stores.contracts import ContractStore
from node.app.stack import open_run_stores
from node.tee.client import InProcessEnclave
from tests.protocols import contract_run_kit as run_tests
from tests.protocols.contract_run_kit import AMOUNT, NET, NOW, POLICY, Pair


def _device(side) -> str:
    return hashlib.sha256(side.binding.sign_pub).hexdigest()


# ---------------------------------------------------------------- commitment notice (release/1's "agreed")
def test_each_runner_hears_its_chunks_committed_and_the_peers_device_once_its_enclave_opened(tmp_path):
    ledger, a, b, spec, cid, net = run_tests.swap_setup(tmp_path)
    for me, other in ((a, b), (b, a)):
        opened = [n.detail for n in me.notes if n.kind == "contract.opened"]
        assert opened and opened[0]["contract"] == cid.hex()
        assert opened[0]["committed"] == [c.pubkey.hex() for c in me.commits]
        assert opened[0]["parties"] == [{"party": 1 - opened[0]["party"], "peer": other.peer_id,
                                         "device": _device(other)}]
        # before anything of ours is released: the desk takes the chunks off our sheet at agreement
        first_release = next((i for i, n in enumerate(me.notes) if n.kind == "contract.released"), len(me.notes))
        assert me.notes.index(next(n for n in me.notes if n.kind == "contract.opened")) < first_release


def test_a_restarted_runner_announces_its_running_contracts_commitments_again(tmp_path):
    ledger, a, b, spec, cid, net = run_tests.swap_setup(tmp_path)
    a.notes.clear()
    net.crash(a)  # (a crash may have lost the notice before the sheet went out)
    while net.queue:  # up to and past its Started
        net.step()
    assert [n.detail["contract"] for n in a.notes if n.kind == "contract.opened"] == [cid.hex()]


# ---------------------------------------------------------------- the swap-shaped outcome
def test_a_completed_swap_ends_with_an_outcome_every_chunk_claimed(tmp_path):
    ledger, a, b, spec, cid, net = run_tests.swap_setup(tmp_path)
    net.run(done=run_tests.stopped(cid, a, b))
    for me, other in ((a, b), (b, a)):
        out = me.proto.outcome(cid)
        assert (out.status, out.released, out.received, out.lost) == ("claimed", 3, 3, 0)
        assert [c.status for c in out.chunks] == ["claimed"] * 3 and out.peer == other.peer_id
        assert [c.address for c in out.chunks] == [c.address for c in other.commits]
        assert out.device.hex() == _device(other)
        final = [n.detail for n in me.notes if n.kind == "contract.outcome"][-1]
        assert final["state"] == DONE and final["outcome"] == out.to_json()


def test_a_withheld_swap_reports_the_one_chunk_lost_then_the_refund_keeps_it_withheld(tmp_path):
    ledger, a, b, spec, cid, net = run_tests.swap_setup(tmp_path)

    def withhold(src, cmd):  # B releases its chunk 0, then goes silent
        if src is b and wire.decode(cmd.data, wire.Signed).kind == "release":
            return wire.decode(wire.decode(cmd.data, wire.Signed).body, ReleaseBody).round != spec.step_of(1, 0)
        return False

    net.drop = withhold
    net.run(until=100)
    assert a.proto.state(cid) == WITHHELD
    held = next(n.detail for n in a.notes if n.kind == "contract.withheld")["outcome"]
    assert (held["status"], held["released"], held["received"], held["lost"]) == ("withheld", 2, 1, 1)
    assert [c["status"] for c in held["chunks"]] == ["claimed", "withheld", "withheld"]
    net.height("BTC-REG", 300)  # the deadline: A's unmoved chunk goes home
    net.run(until=200, done=run_tests.stopped(cid, a))
    out = a.proto.outcome(cid)
    assert a.proto.state(cid) == DONE and (out.status, out.lost, out.received) == ("withheld", 1, 1)


# ---------------------------------------------------------------- a node upgraded with release/1 records in flight
def _chunks(side) -> list[Chunk]:
    return [Chunk(c.asset, c.address, c.pubkey, c.amount) for c in side.commits]


def _as_release1(side, other, schedule, cid: bytes) -> ContractRecord:
    """What a release/1 node kept of this swap (``contracts/<id>.rec``), in place of its contract-run records: the
    schedule, both bindings and quotes, the state, the highest round of ours the peer acknowledged, the claims.
    The enclave's state is the same under either protocol (same spec, same contract id, both signatures)."""
    rec = side.proto.runs[cid.hex()].rec
    me = 0 if side.name == "A" else 1
    pair = [side, other] if me == 0 else [other, side]
    old = ContractRecord(NET, me, other.peer_id, schedule, [s.binding for s in pair], [s.quote for s in pair],
                         rec.state, rec.reason, max(rec.acked, default=-1), list(rec.claims))
    ContractStore(side.dir / "contracts", durable=False).put(cid.hex(), old)
    ContractStore(side.dir / "runs", durable=False, record_type=RunRecord).delete(cid.hex())
    return old


class Upgraded:
    """A side after the upgrade: the same data directory (enclave, ledger), the stores opened as the node opens them
    (``node.app.stack.open_run_stores``: release/1 records migrated first), run by contract-run/1."""

    def __init__(self, old: run_tests.Side) -> None:
        self.name, self.peer_id, self.dir, self.ledger = old.name, old.peer_id, old.dir, old.ledger
        self.binding, self.quote, self.chunks, self.owner_address = old.binding, old.quote, _chunks(old), old.owner_address
        old.raw.close()
        self.gen, self.notes = 0, []
        self.store, self.agreed, self.legacy, self.migrated = open_run_stores(self.dir, durable=False)
        self._make()

    def _make(self) -> None:
        self.raw = InProcessEnclave(self.dir)
        self.proto = ContractRun(
            net=NET, enclave=self.raw, quote=self.quote, binding=self.binding,
            attestations=AttestationCache(default_attestation_verifier(POLICY)),
            check_funds=lambda asset, addr: self.ledger.balance(asset, addr),
            claim=sweep_claimer(lambda: self.raw, self.ledger, self.owner_address), store=self.store,
            agreed=self.agreed)

    def restart(self) -> None:
        self.raw.close()
        self.gen += 1
        self._make()


def _swap_cut_after(tmp_path, releases: int):
    """A swap of 3 chunks each, both nodes stopped once ``releases`` keys were released in all, their records
    left as a release/1 node left them (``_as_release1``)."""
    ledger, a, b, spec, cid, pair = turns_setup(tmp_path)
    while len(a.journal_releases()) + len(b.journal_releases()) < releases and pair.step():
        pass
    assert a.proto.state(cid) == b.proto.state(cid) == "running"
    schedule = swap_schedule(_chunks(a), _chunks(b))
    assert schedule_spec(schedule, [a.binding, b.binding]) == spec
    for me, other in ((a, b), (b, a)):
        _as_release1(me, other, schedule, cid)
    return ledger, a, b, cid


def test_an_upgraded_node_resumes_a_release1_swap_in_flight_over_contract_run(tmp_path):
    ledger, a, b, cid = _swap_cut_after(tmp_path, 3)  # A gave 2 (rounds 0, 2), B gave 1 (round 1)
    before = {s.name: s.journal_releases() for s in (a, b)}
    ua, ub = Upgraded(a), Upgraded(b)
    assert ua.migrated == [(cid.hex(), "migrated")] and ub.migrated == [(cid.hex(), "migrated")]
    assert ua.store.items()[0][0] == cid.hex()  # the same contract id: the enclave's contract, carried on
    pair = Pair(ua, ub)
    pair.run(done=run_tests.stopped(cid, ua, ub))
    fee = FEES["utxo"]
    for me, other in ((ua, ub), (ub, ua)):
        assert me.proto.state(cid) == DONE, me.proto.runs[cid.hex()].rec.reason
        # each side's record learned both signatures over the contract id (ours from our enclave, the peer's from
        # its open): the opens stop once every runner showed all of them
        assert [s.party for s in me.proto.runs[cid.hex()].rec.sigs] == [0, 1]
        out = me.proto.outcome(cid)
        assert (out.status, out.received, out.lost) == ("claimed", 3, 0)
        for ch in other.chunks:
            assert ledger.balance(ch.asset, me.owner_address(ch)).unconfirmed == AMOUNT - fee
        rel = [e.pub for e in me.raw._core.journal() if e.op == "release"]
        assert sorted(rel) == sorted(c.pubkey for c in me.chunks)  # each key once, the old ones not again
        assert set(before[me.name]) <= set(rel)
    assert not ContractStore(ua.dir / "contracts").items()  # the old records are gone once migrated


def test_migration_drops_a_proposal_never_agreed_and_leaves_an_unreadable_record_with_what_to_do(tmp_path):
    from node.ledger.devnet import DevLedger

    a = run_tests.Side("A", tmp_path, DevLedger(None, automine=True), "BTC-REG", 1)
    b = run_tests.Side("B", tmp_path, a.ledger, "LTC", 1)
    old = ContractStore(a.dir / "contracts", durable=False)  # what release/1's propose wrote before its hello went out
    old.put("p-" + "ab" * 16, ContractRecord(NET, 0, b.peer_id, swap_schedule(_chunks(a), _chunks(b)), [a.binding],
                                             [a.quote], "proposed", usd=[0, 5_000]))
    [(key, rec)] = old.items()
    assert isinstance(rec, ContractRecord) and rec.state == "proposed"
    assert "propose the swap again" in run_record_of(rec, RunRecord)
    old._write("broken", b"\xc1")
    runs = ContractStore(a.dir / "runs", durable=False, record_type=RunRecord)
    done = dict(migrate_release_records(old, runs, RunRecord))
    assert done[key].startswith("dropped: ") and "left in place" in done["broken"]
    assert runs.items() == [] and [k for k, _ in old.items()] == ["broken"]


def test_a_migrated_record_keeps_the_acks_claims_and_state(tmp_path):
    ledger, a, b, cid = _swap_cut_after(tmp_path, 4)
    pair_rec = dict(ContractStore(b.dir / "contracts").items())[cid.hex()]
    assert pair_rec.state == "running" and pair_rec.acked >= 0 and pair_rec.claims
    new = run_record_of(pair_rec, RunRecord)
    assert new.state == RUNNING and new.sigs == [] and new.claims == pair_rec.claims
    assert new.acked == [r for r in range(pair_rec.acked + 1) if pair_rec.schedule.rounds[r].giver == 1]
    from node.contracts.spec import decode_spec, spec_id

    assert spec_id(decode_spec(new.spec)) == cid


# ---------------------------------------------------------------- release/1's swap tests, over contract-run/1
# The schedule compiled to ``turns`` (``schedule_spec``), as release/1 runs it, now run by ContractRun: the
# withholding bound, a crash at each step, a lossy network. (The stdlib ``swap`` has the same in
# tests/protocols/test_contract_run.py.)
def turns_setup(tmp_path, plans=(None, None)):
    from node.ledger.devnet import DevLedger
    from node.contracts.protocol.schedule import Chunk, schedule_spec, swap_schedule

    ledger = DevLedger(None, automine=True)
    a = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3, plans[0])
    b = run_tests.Side("B", tmp_path, ledger, "LTC", 3, plans[1])
    chunks = [[Chunk(c.asset, c.address, c.pubkey, c.amount) for c in s.commits] for s in (a, b)]
    spec = schedule_spec(swap_schedule(*chunks), [a.binding, b.binding])
    return (ledger, a, b, spec) + run_tests.running(spec, a, b)


def assert_turns_swapped(a, b, cid):
    for me, other in ((a, b), (b, a)):
        assert me.proto.state(cid) == DONE, me.proto.runs[cid.hex()].rec.reason
        out = me.proto.outcome(cid)
        assert (out.status, out.received, out.lost) == ("claimed", 3, 0)
        for c in other.commits:
            assert me.balance(c) == AMOUNT - run_tests.FEE
        assert sorted(me.journal_releases()) == sorted(c.pubkey for c in me.commits)  # each key once


@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_a_withholding_peer_in_a_turns_swap_costs_at_most_one_chunk(tmp_path, stop_at):
    ledger, a, b, spec, cid, net = turns_setup(tmp_path)

    def withhold(src, cmd):  # B sends no release from its round ``stop_at`` on (nor resends)
        env = wire.decode(cmd.data, wire.Signed)
        return src is b and env.kind == "release" and wire.decode(env.body, ReleaseBody).round >= stop_at

    net.drop = withhold
    net.run(until=200, done=lambda: a.proto.state(cid) != RUNNING)
    assert a.proto.state(cid) == WITHHELD
    out = a.proto.outcome(cid)
    assert out.status == "withheld" and out.lost == 1 and out.released == out.received + 1
    assert [c.status for c in out.chunks] == ["claimed"] * (stop_at // 2) + ["withheld"] * (3 - stop_at // 2)
    assert len(a.journal_releases()) == stop_at // 2 + 1  # A stopped releasing after the silent round


def _count_turns_steps(tmp_path):
    plans = (run_tests.Plan(), run_tests.Plan())
    ledger, a, b, spec, cid, net = turns_setup(tmp_path / "count", plans)
    net.run(done=run_tests.stopped(cid, a, b))
    assert_turns_swapped(a, b, cid)
    return plans[0].n, plans[1].n


TURNS_STEPS = (12, 12)  # per side: 3 releases, 3 accepts, 3 claims each with the enclave's export


def test_the_turns_crash_points_cover_every_step(tmp_path):
    assert _count_turns_steps(tmp_path) == TURNS_STEPS


@pytest.mark.parametrize("side,step,phase", [(s, i, p) for s in (0, 1) for i in range(1, TURNS_STEPS[s] + 1)
                                             for p in ("before", "after")])
def test_a_crash_at_each_step_of_a_turns_swap_finishes_it_with_no_key_released_twice(tmp_path, side, step, phase):
    plans = [run_tests.Plan(), run_tests.Plan()]
    plans[side] = run_tests.Plan(step, phase)
    ledger, a, b, spec, cid, net = turns_setup(tmp_path, tuple(plans))
    net.run(done=run_tests.stopped(cid, a, b))
    assert plans[side].fired, plans[side].log
    assert net.crashes == 1
    assert_turns_swapped(a, b, cid)


@pytest.mark.parametrize("seed", range(4))
def test_a_turns_swap_under_loss_duplication_and_reordering_never_exposes_more_than_one_chunk(tmp_path, seed):
    import random

    ledger, a, b, spec, cid, net = turns_setup(tmp_path)
    net.chaos(random.Random(seed))
    while net.now < NOW + 600 and net.step():
        assert run_tests.exposed(a) <= 1 and run_tests.exposed(b) <= 1
        if run_tests.stopped(cid, a, b)():
            break
    assert_turns_swapped(a, b, cid)


def test_a_runner_that_refuses_the_contract_before_signing_it_ends_it_failed_with_nothing_released(tmp_path):
    """release/1's "refused": B's enclave never takes the contract (here B's chunk 0 is a funded deposit whose key
    B's enclave does not hold: "not-held"), so A's contract ends failed at once instead of waiting to be called
    withheld. (A refusal that may pass, such as funds not yet confirmed, is retried: test_contract_run_funds.)"""
    from node.contracts.spec import spec_id
    from node.ledger.devnet import DevLedger
    from node.contracts.protocol.run import FAILED
    from node.contracts.protocol.schedule import Chunk, schedule_spec, swap_schedule

    ledger = DevLedger(None, automine=True)
    a = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3)
    b = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    stranger = run_tests.Side("X", tmp_path, ledger, "LTC", 1)
    b.commits[0] = stranger.commits[0]  # funded on the ledger, but not a key of B's enclave
    chunks = [[Chunk(c.asset, c.address, c.pubkey, c.amount) for c in s.commits] for s in (a, b)]
    spec = schedule_spec(swap_schedule(*chunks), [a.binding, b.binding])
    net = run_tests.Net(a, b)
    b.proto.expect(spec)  # B agreed; its enclave refuses the contract when A opens it
    cid = spec_id(spec)
    net.call(a, a.proto.start, spec)
    net.run(until=100, done=lambda: a.proto.state(cid) != RUNNING)
    assert a.proto.state(cid) == FAILED and "refused the contract: not-held" in a.proto.runs[cid.hex()].rec.reason
    out = a.proto.outcome(cid)
    assert (out.status, out.released, out.lost) == ("failed", 0, 0)
    assert a.journal_releases() == [] and b.journal_releases() == []


def test_the_next_release_does_not_wait_for_the_sweep_of_the_key_received_before_it(tmp_path):
    """release/1's fast path: once a received key's funds are checked, the contract goes on and the key is
    swept alongside. B's sweeps all fail for a while (its ledger's node away): B still gives every chunk the
    contract lets it give, and the contract ends only once its sweeps went through."""
    ledger, a, b, spec, cid, net = turns_setup(tmp_path)
    down = {"on": True}
    claim = b.proto.claim

    def flaky(chunk):
        if down["on"]:
            raise ConnectionError("our ledger's node is away")
        return claim(chunk)

    b.proto.claim = flaky
    net.run(until=25, done=lambda: len(b.journal_releases()) == 3)
    assert len(b.journal_releases()) == 3  # each of B's releases followed A's checked key, none its sweep
    assert b.proto.runs[cid.hex()].rec.claims == [] and b.proto.state(cid) == RUNNING
    assert any(n.kind == "contract.claim-retry" for n in b.notes)
    down["on"] = False
    net.run(done=run_tests.stopped(cid, a, b))
    assert_turns_swapped(a, b, cid)


def test_a_data_directory_from_before_the_stores_moved_migrates_what_it_can_and_says_why_not_the_rest(tmp_path):
    """The tests/stores fixture (a data directory of 43fef4d): its one release/1 record, done, names no
    bindings, so it cannot become a contract-run record; it stays where it is (its claims still read there),
    with the reason, and nothing is written to runs/."""
    import shutil
    from pathlib import Path

    datadir = tmp_path / "data"
    shutil.copytree(Path(__file__).resolve().parents[1] / "stores" / "datadir_43fef4d", datadir)
    old = ContractStore(datadir / "contracts", durable=False)
    runs = ContractStore(datadir / "runs", durable=False, record_type=RunRecord)
    done = migrate_release_records(old, runs, RunRecord)
    assert done == [("aa" * 32, "left in place: a done contract whose record names 0 binding(s), not both parties'")]
    assert runs.items() == [] and [k for k, _ in old.items()] == ["aa" * 32]


# ---------------------------------------------------------------- the enclave's work per swap, and its time stamps
class CountingEnclave:
    """Delegates to an enclave, counting every call by name."""

    def __init__(self, inner) -> None:
        from collections import Counter

        self.inner, self.calls = inner, Counter()

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kw):
            self.calls[name] += 1
            return attr(*args, **kw)

        return call


def _counted_turns_swap(tmp_path):
    from node.ledger.devnet import DevLedger

    ledger = DevLedger(None, automine=True)
    a = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3)
    b = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    spec = schedule_spec(swap_schedule(_chunks(a), _chunks(b)), [a.binding, b.binding])
    net = run_tests.Net(a, b)
    net.height("BTC-REG", 100)
    for s in (a, b):
        s.proto.enclave = CountingEnclave(s.proto.enclave)
    for s in (a, b):  # both agreed (``SwapDesk``: the proposer expects it, the responder opens it first)
        s.specs.append(spec)
        s.proto.expect(spec)
    net.call(b, b.proto.start, spec)
    cid = spec_id(spec)
    net.run(done=run_tests.stopped(cid, a, b))
    assert_turns_swapped(a, b, cid)
    return a, b, cid, net


def test_each_enclave_verifies_its_peers_quote_once_and_opens_a_swap_at_most_twice(tmp_path):
    """release/1's counts, over contract-run/1 as the desk runs a swap (the responder opens first): each enclave
    verifies the peer's quote once per contract (``benchmarks.request`` once counted 12 ``AttestPeer`` for 6 swaps:
    one more enclave round trip per swap on a node's one contract worker) and releases and takes each key once.
    Each opens the contract at most twice (its own open, then again with the peer's signature; release/1's
    proposer opened once: one more enclave call per swap over contract-run/1, left for the one-call-a-round work
    in docs/architecture.md)."""
    a, b, cid, net = _counted_turns_swap(tmp_path)
    for side in (a, b):
        assert 1 <= side.proto.enclave.calls["contract_open"] <= 2, (side.name, dict(side.proto.enclave.calls))
    for side in (a, b):
        calls = side.proto.enclave.calls
        assert calls["attest_peer"] == 1, (side.name, dict(calls))
        # one each per chunk, none resent (a key is taken with our answer signed in one call: contract_step)
        assert calls["contract_release"] == 3 and calls["contract_step"] == 3 and calls["contract_accept"] == 0
        assert calls["sign"] <= 1, dict(calls)  # (its open's message): the answers to keys are signed in the step


def test_each_key_taken_is_stamped_with_the_clock_the_runner_is_given(tmp_path):
    """The runner reads no clock (tests/test_layering.py): the time it stamps on ``contract.received`` (what the
    desk shows as ``keys_in_at`` and ``benchmarks.swap`` measures to) is the ``now`` it was handed: here the test
    pair's virtual clock, which starts at ``NOW`` (2027), never this machine's."""
    a, b, cid, net = _counted_turns_swap(tmp_path)
    for side in (a, b):
        at = [n.detail["at"] for n in side.notes if n.kind == "contract.received"]
        assert len(at) == 3 and at == sorted(at) and all(NOW <= t <= net.now for t in at), at


def test_a_corrupt_swap_record_is_reported_at_start_not_fatal(tmp_path):
    from node.protocols.base import Notify, Started

    ledger, a, b, spec, cid, net = turns_setup(tmp_path)
    net.run(done=run_tests.stopped(cid, a, b))
    (rec,) = (a.dir / "runs").glob("*.rec")
    rec.write_bytes(b"\x00garbage")
    a.restart()
    cmds = a.proto.handle(Started(a.peer_id), NOW)
    notes = [c for c in cmds if isinstance(c, Notify)]
    assert [n.kind for n in notes] == ["contract.store-error"] and notes[0].detail["contract"] == cid.hex(), notes


def test_a_quote_that_does_not_commit_to_its_binding_is_refused_and_nothing_is_released(tmp_path):
    """B opens the swap with a quote of another enclave (A's): A's enclave refuses it (binding-mismatch), with
    the reason, and releases nothing."""
    from node.ledger.devnet import DevLedger

    ledger = DevLedger(None, automine=True)
    a = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 2)
    b = run_tests.Side("B", tmp_path, ledger, "LTC", 2)
    spec = schedule_spec(swap_schedule(_chunks(a), _chunks(b)), [a.binding, b.binding])
    net = run_tests.Net(a, b)
    for s in (a, b):
        s.proto.expect(spec)
    b.proto.quote = a.quote
    net.call(b, b.proto.start, spec)
    net.run(until=100)
    assert a.journal_releases() == [] and b.journal_releases() == []
    assert any(code == "attestation" and "binding-mismatch" in why for code, why in a.proto.refusals), a.proto.refusals


@pytest.mark.parametrize("step", [1, 2])  # A's steps: contract_release (its first key), contract_step (B's taken)
def test_sigkill_of_the_enclave_process_after_a_step_then_restart_finishes_the_swap(tmp_path, step):
    """The enclave as its own OS process, SIGKILLed right after it journaled a step (a release whose ciphertext
    never left, or a key taken whose ack never left): after a restart from the same directory the swap completes,
    each key released once."""
    from node.ledger.devnet import DevLedger
    from node.tee.client import SubprocessEnclave

    holder = {}
    plan = run_tests.Plan(step, "after", on_crash=lambda: holder["a"].raw.kill())
    ledger = DevLedger(None, automine=True)
    a = holder["a"] = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3, plan, enclave_factory=SubprocessEnclave)
    b = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    try:
        spec = schedule_spec(swap_schedule(_chunks(a), _chunks(b)), [a.binding, b.binding])
        cid, net = run_tests.running(spec, a, b)
        net.run(done=run_tests.stopped(cid, a, b))
        assert plan.fired and plan.log[step - 1] == ("contract_release", "contract_step")[step - 1], plan.log
        assert net.crashes == 1
        assert_turns_swapped(a, b, cid)
    finally:
        a.raw.close()


def test_a_last_release_never_acknowledged_still_ends_the_swap_done(tmp_path):
    """A takes B's last key, but every ack of it is lost: both sides still end done (the enclaves' views say every
    key moved), each key released once."""
    from node.contracts.protocol.envelope import AckBody

    ledger, a, b, spec, cid, net = turns_setup(tmp_path)
    last = spec.step_of(1, 2)

    lost = []

    def lost_ack(src, cmd):
        env = wire.decode(cmd.data, wire.Signed)
        drop = src is a and env.kind == "ack" and wire.decode(env.body, AckBody).round == last
        lost.extend([cmd] if drop else [])
        return drop

    net.drop_response = lost_ack
    net.run(until=200, done=run_tests.stopped(cid, a, b))
    assert lost, "no ack of the last release was lost: the test proves nothing"
    assert_turns_swapped(a, b, cid)


# ---------------------------------------------------------------- ended contracts leave memory
def _swap_pair(tmp_path, n: int):
    """(a, b, net): two sides with ``n`` chunks each (BTC-REG against LTC) on the in-memory pair at height 100."""
    from node.ledger.devnet import DevLedger

    ledger = DevLedger(None, automine=True)
    a = run_tests.Side("A", tmp_path, ledger, "BTC-REG", n)
    b = run_tests.Side("B", tmp_path, ledger, "LTC", n)
    net = run_tests.Net(a, b)
    net.height("BTC-REG", 100)
    return a, b, net


def _one_chunk_swaps(net, a, b, n: int, gap: float = 0.0) -> list[bytes]:
    """``n`` one-chunk swaps between ``a`` and ``b``, one after another (``gap`` s of virtual time after each),
    each run to done on both sides; their contract ids."""
    cids = []
    for i in range(n):
        spec = schedule_spec(swap_schedule(_chunks(a)[i:i + 1], _chunks(b)[i:i + 1]), [a.binding, b.binding])
        cid = run_tests.start(net, spec, a, b)
        net.run(until=net.now - run_tests.NOW + 100, done=run_tests.stopped(cid, a, b))
        assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE, (i, a.proto.runs[cid.hex()].rec.reason)
        cids.append(cid)
        if gap:
            net.run(until=net.now - run_tests.NOW + gap)
    return cids


def test_only_the_most_recently_ended_contracts_stay_in_memory_and_are_read_back_at_a_restart(tmp_path):
    """``keep_ended``: a node ran every contract it ever had in memory and re-opened each at every start (the soak's
    steady RSS growth, docs/testing.md). Four one-chunk swaps one after the other with ``keep_ended`` 2: the two
    ended last stay in memory (listed, asked about), the two before are on disk only; a restart reads back the
    same two."""
    a, b, net = _swap_pair(tmp_path, 4)
    for s in (a, b):
        s.proto.keep_ended = 2
    cids = _one_chunk_swaps(net, a, b, 4, gap=5.0)  # (each ends at its own time: a restart reads the last back)
    net.run(until=3000, done=lambda: all(len(s.proto.runs) == 2 for s in (a, b)))  # (forget_after passes)
    for s in (a, b):
        assert set(s.proto.runs) == {c.hex() for c in cids[2:]}, s.name
        assert s.proto.state(cids[0]) is None and s.proto.summary(cids[1]) is None
        assert len(s.proto.store.items()) == 4  # every record kept on disk
    net.crash(a)  # a restart: a new ContractRun on the same stores and enclave directory
    a.proto.keep_ended = 2
    while net.queue:
        net.step()
    assert set(a.proto.runs) == {c.hex() for c in cids[2:]}
    assert a.proto.state(cids[3]) == DONE and a.proto.summary(cids[3])["received"] == [(1, 0)]


def test_a_peer_cannot_fill_our_enclave_with_swaps_that_ended(tmp_path, monkeypatch):
    """The attack: value-neutral swaps with one node, one after another, until its enclave holds ``MAX_CONTRACTS``
    contracts and refuses every new one ("full"), each making every sealed write of it longer on the way. With
    the cap at 3, the fourth swap's open was refused on b556d11; now each swap over for us is forgotten by our
    enclave ``forget_after`` once it ended (its keys stay in the key table: none leaves twice), and six swaps
    run, a minute apart here (``forget_after`` 30 s)."""
    from node.enclave import contract_records, contracts as enclave_contracts

    monkeypatch.setattr(enclave_contracts, "MAX_CONTRACTS", 3)
    monkeypatch.setattr(contract_records, "MAX_CONTRACTS", 3)
    a, b, net = _swap_pair(tmp_path, 6)
    for s in (a, b):
        s.proto.forget_after = 30.0
    cids = _one_chunk_swaps(net, a, b, 6, gap=60.0)  # a minute apart: each forgotten before the next
    for s in (a, b):
        assert s.raw._core.contracts._all == [], s.name
        pubs = s.journal_releases()
        assert len(pubs) == len(set(pubs)) == 6
        first = s.proto.summary(cids[0])  # what moved is still told, from the run's record
        assert first["status"] in ("forgotten", "ok", "complete") and len(first["released"]) == 1, first
        assert len(first["received"]) == 1


def test_an_enclave_forgets_only_a_contract_over_for_it_and_never_opens_it_again(tmp_path):
    from node.ledger.devnet import DevLedger
    from node.tee.client import EnclaveRefused

    ledger = DevLedger(None, automine=True)
    a = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 2)
    b = run_tests.Side("B", tmp_path, ledger, "LTC", 2)
    spec = schedule_spec(swap_schedule(_chunks(a), _chunks(b)), [a.binding, b.binding])
    cid, net = run_tests.running(spec, a, b)
    with pytest.raises(EnclaveRefused) as exc:  # running: a chunk of ours has not moved
        a.raw.contract_forget(cid)
    assert exc.value.code == "not-finished"
    net.run(done=run_tests.stopped(cid, a, b))
    for s in (a, b):  # ended: still known (a late release of the peer's is answered) until ``forget_after``
        assert s.raw.contract_status(cid).moved
    net.run(until=3000, done=lambda: all(s.proto.runs[cid.hex()].rec.moved for s in (a, b)))
    for s in (a, b):
        with pytest.raises(EnclaveRefused) as exc:  # (the runner asked for it, forget_after after the end)
            s.raw.contract_status(cid)
        assert exc.value.code == "unknown-contract"
        with pytest.raises(EnclaveRefused) as exc:  # the same spec again: our chunks are no longer held
            s.raw.contract_open(spec.encode(), [])
        assert exc.value.code == "not-held"
