"""Reputation: bounded, decaying, slander-resistant; caps follow it and the device class."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.risk.caps import Caps, CapPolicy
from node.risk.classes import ClassRegistry
from node.stores.reputation import ReputationDB
from node.risk.reputation import (
    ACCEPT_THRESHOLD, SCORE_MAX, SCORE_MIN, Action, LedgerCheck, Outcome, Reputation,
)

DAY = 86_400.0


def dev(i: int) -> bytes:
    return i.to_bytes(32, "big")


def honest_old(rep: Reputation, d: bytes, now: float, contracts: int = 40) -> None:
    rep.observe(d, "honest", "sgx", now)
    for _ in range(contracts):
        rep.apply(d, Action.CLAIMED, now)


actions = st.lists(st.tuples(st.sampled_from(list(Action)), st.floats(0, 30 * DAY), st.floats(0, 3)),
                   max_size=60)


@settings(max_examples=100, deadline=None)
@given(actions)
def test_score_stays_bounded(seq):
    rep = Reputation(half_life=DAY)
    rep.observe(dev(1), "o", "sim", 0.0)
    now = 0.0
    for action, dt, w in seq:
        now += dt
        s = rep.apply(dev(1), action, now, weight=w)
        assert SCORE_MIN <= s <= SCORE_MAX


def test_decay_halves_per_half_life_but_not_for_cheaters():
    rep = Reputation(half_life=DAY)
    honest_old(rep, dev(1), 0.0, contracts=20)  # +40
    assert rep.score(dev(1), 0.0) == 40.0
    assert abs(rep.score(dev(1), DAY) - 20.0) < 1e-9
    assert abs(rep.score(dev(1), 3 * DAY) - 5.0) < 1e-9
    rep.observe(dev(2), "bad", "sim", 0.0)
    rep.mark_cheater(dev(2), 0.0)
    assert rep.score(dev(2), 100 * DAY) == SCORE_MIN and not rep.acceptable(dev(2), 100 * DAY)


def test_reports_from_devices_with_no_standing_change_nothing():
    rep = Reputation()
    rep.observe(dev(1), "target", "sim", 0.0)
    for i in range(100, 200):  # a ring of fresh devices praising the target and each other
        rep.observe(dev(i), "ring", "sim", 0.0)
        assert rep.report(reporter=dev(i), subject=dev(1), outcome=Outcome.CLAIMED, contract_id=b"c",
                          check=LedgerCheck.UNCHECKED, now=1.0) == 0.0
        rep.report(reporter=dev(i), subject=dev(i - 1 if i > 100 else 199), outcome=Outcome.CLAIMED,
                   contract_id=b"c", check=LedgerCheck.UNCHECKED, now=1.0)
    assert rep.score(dev(1), 2.0) == 0.0
    assert all(rep.score(dev(i), 2.0) == 0.0 for i in range(100, 200))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(0, 6))
def test_slander_ring_cannot_push_an_honest_old_device_below_threshold(ring, warmup):
    """A ring of fresh devices, each with a little standing earned among themselves,
    reports false double-spends; unchecked they barely count, refuted they backfire."""
    rep = Reputation()
    honest_old(rep, dev(1), 0.0)
    for i in range(1000, 1000 + ring):
        rep.observe(dev(i), f"sybil{i}", "sim", 0.0)
        for _ in range(warmup):  # a few real small contracts each
            rep.apply(dev(i), Action.RELEASED, 0.0)
    for i in range(1000, 1000 + ring):
        for c in range(3):  # each tries three contracts' worth (and repeats count once)
            for _ in range(2):
                rep.report(reporter=dev(i), subject=dev(1), outcome=Outcome.DOUBLE_SPENT,
                           contract_id=bytes([c]), check=LedgerCheck.UNCHECKED, now=10.0)
    assert rep.acceptable(dev(1), 10.0)
    assert rep.score(dev(1), 10.0) > ACCEPT_THRESHOLD
    # once the ledger refutes a slanderer, it pays
    before = rep.score(dev(1000), 10.0)
    rep.report(reporter=dev(1000), subject=dev(1), outcome=Outcome.DOUBLE_SPENT, contract_id=b"x",
               check=LedgerCheck.REFUTED, now=11.0)
    assert rep.score(dev(1000), 11.0) < before


def test_weighted_reports_and_ledger_confirmation():
    rep = Reputation()
    honest_old(rep, dev(1), 0.0)  # reporter with full standing (80 > 50)
    rep.observe(dev(2), "x", "sim", 0.0)
    for _ in range(10):
        rep.apply(dev(2), Action.CLAIMED, 0.0)  # 20: some earned standing
    delta = rep.report(reporter=dev(1), subject=dev(2), outcome=Outcome.WITHHELD, contract_id=b"a",
                       check=LedgerCheck.UNCHECKED, now=1.0)
    assert delta == Action.WITHHELD.penalty * 0.25
    assert rep.report(reporter=dev(1), subject=dev(2), outcome=Outcome.WITHHELD, contract_id=b"a",
                      check=LedgerCheck.UNCHECKED, now=1.0) == 0.0  # once per contract
    for c in range(20):  # bare claims, however many, stop at the floor
        rep.report(reporter=dev(1), subject=dev(2), outcome=Outcome.DOUBLE_SPENT, contract_id=bytes([c]),
                   check=LedgerCheck.UNCHECKED, now=1.5)
    assert rep.score(dev(2), 1.5) == 0.0 and rep.acceptable(dev(2), 1.5)
    # a ledger-confirmed report weighs LEDGER_WEIGHT times a bare one, within the same bounds, and never marks
    # a cheater on its own (an emptied deposit does not say who emptied it: only a proof does, mark_cheater)
    rep.observe(dev(3), "y", "sim", 0.0)
    for _ in range(20):
        rep.apply(dev(3), Action.CLAIMED, 0.0)  # 40
    before = rep.score(dev(3), 2.0)
    delta = rep.report(reporter=dev(1), subject=dev(3), outcome=Outcome.DOUBLE_SPENT, contract_id=b"b",
                       check=LedgerCheck.CONFIRMED, now=2.0)
    assert Action.DOUBLE_SPENT.penalty * 0.25 * 4 < -before  # the full weight would sink it below 0: bounded
    assert abs(delta + before) < 1e-6 and rep.score(dev(3), 2.0) == 0.0
    for c in range(20):
        rep.report(reporter=dev(1), subject=dev(2), outcome=Outcome.DOUBLE_SPENT, contract_id=b"c" + bytes([c]),
                   check=LedgerCheck.CONFIRMED, now=2.0)
    assert not rep.is_cheater(dev(2)) and not rep.is_cheater(dev(3))
    assert rep.score(dev(2), 2.0) == 0.0 and rep.acceptable(dev(2), 2.0) and rep.acceptable(dev(3), 2.0)
    rep.mark_cheater(dev(2), 2.0)  # a proof, checked by the caller
    assert rep.is_cheater(dev(2)) and rep.app_score("x", 2.0) == SCORE_MIN / 10


def test_persists_across_restart(tmp_path):
    db = tmp_path / "rep.sqlite"
    rep = Reputation(ReputationDB(db))
    honest_old(rep, dev(1), 0.0, contracts=5)
    rep.observe(dev(2), "o2", "sim", 0.0)
    rep.report(reporter=dev(1), subject=dev(2), outcome=Outcome.CLAIMED, contract_id=b"k",
               check=LedgerCheck.UNCHECKED, now=1.0)
    s1, s2 = rep.score(dev(1), 5.0), rep.score(dev(2), 5.0)
    rep.close()
    again = Reputation(ReputationDB(db))
    assert again.score(dev(1), 5.0) == s1 and again.score(dev(2), 5.0) == s2
    assert again.report(reporter=dev(1), subject=dev(2), outcome=Outcome.CLAIMED, contract_id=b"k",
                        check=LedgerCheck.UNCHECKED, now=6.0) == 0.0  # the duplicate is remembered


def test_caps_grow_with_reputation_and_name_the_binding_cap():
    rep = Reputation()
    caps = Caps(rep, ClassRegistry(), CapPolicy(owner_multiple=1.0))
    rep.observe(dev(1), "alice", "sgx", 0.0)
    fresh, _ = caps.device_limit(dev(1), "sgx", 0.0)
    assert fresh == 25_000  # one SGX server starts at $250
    for _ in range(10):
        rep.apply(dev(1), Action.CLAIMED, 0.0)
    grown, _ = caps.device_limit(dev(1), "sgx", 0.0)
    assert grown == 25_000 + 20 * 5_000
    assert caps.device_limit(dev(1), "sgx:ConfigurationAndSWHardeningNeeded", 0.0)[0] == grown // 2
    assert caps.device_limit(dev(1), "sgx:OutOfDate", 0.0)[0] == 0  # a refused status
    caps.exposure.add(dev(1), "alice", "sgx", grown - 1_000)
    r = caps.check(dev(1), "alice", "sgx", 5_000, 0.0)
    assert r is not None and r.cap == "device" and "device cap" in r.reason
    assert caps.check(dev(1), "alice", "sgx", 1_000, 0.0) is None
    # a second device under the same owner does not double the owner's trust
    rep.observe(dev(2), "alice", "sgx", 0.0)
    r = caps.check(dev(2), "alice", "sgx", 25_000, 0.0)
    assert r is not None and r.cap == "owner"


def test_revoked_class_drops_to_zero_at_once():
    rep = Reputation()
    classes = ClassRegistry()
    caps = Caps(rep, classes)
    honest_old(rep, dev(1), 0.0)
    assert caps.headroom(dev(1), "honest", "sgx:SWHardeningNeeded", 0.0)[0] > 0
    classes.revoke("sgx", "SGAxe: sealing keys extractable")
    room, refusal = caps.headroom(dev(1), "honest", "sgx:SWHardeningNeeded", 0.0)
    assert room == 0 and refusal.cap == "revoked" and "SGAxe" in refusal.reason
    r = caps.check(dev(1), "honest", "sgx", 100, 0.0)
    assert r.cap == "revoked"
    honest_old(rep, dev(3), 0.0)
    assert caps.headroom(dev(3), "honest", "tdx", 0.0)[0] == 0  # same owner: its sgx device sank it
    rep.observe(dev(4), "carol", "tdx", 0.0)
    assert caps.headroom(dev(4), "carol", "tdx", 0.0)[0] > 0  # other classes unaffected
