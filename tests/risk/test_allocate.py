"""Allocation: caps always hold, X covered when the book allows it, overshoot near the exact optimum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from node.risk.allocate import Allocation, CandidateTable, Limits, allocate
from node.risk.types import Candidate


def table_from(values, devices, owners_of_device) -> CandidateTable:
    n = len(values)
    nd = max(devices) + 1 if n else 0
    dev_owner = np.asarray([owners_of_device[d] for d in range(nd)], dtype=np.int32)
    no = int(dev_owner.max()) + 1 if nd else 0
    return CandidateTable([i.to_bytes(32, "big") for i in range(n)], np.asarray(values, dtype=np.int64),
                          np.asarray(devices, dtype=np.int32), dev_owner[np.asarray(devices, dtype=np.int64)]
                          if n else np.zeros(0, np.int32),
                          [d.to_bytes(32, "big") for d in range(nd)], [f"owner{o}" for o in range(no)],
                          ["sim"] * nd, dev_owner)


def share_caps(t: CandidateTable, target: int, lim: Limits) -> tuple[list[int], list[int]]:
    """Each device's and owner's share cap: its share of X, never below its smallest offer (one chunk)."""
    dev = [max(int(lim.max_share_device * target), int(t.value[t.device == d].min(initial=2**62)) % 2**62)
           for d in range(len(t.devices))]
    own = [max(int(lim.max_share_owner * target), int(t.value[t.owner == o].min(initial=2**62)) % 2**62)
           for o in range(len(t.owners))]
    return dev, own


def exact_optimum(t: CandidateTable, target: int, lim: Limits) -> int | None:
    """Least total >= target under the same caps, by MILP (None if infeasible)."""
    n = len(t)
    dcap, ocap = share_caps(t, target, lim)
    v = t.value.astype(float)
    rows, lo, hi = [v], [target], [np.inf]
    for d in range(len(t.devices)):
        m = (t.device == d).astype(float)
        rows += [m, m * v]
        lo += [0, 0]
        hi += [lim.max_per_device, dcap[d]]
    for o in range(len(t.owners)):
        m = (t.owner == o).astype(float)
        rows.append(m * v)
        lo.append(0)
        hi.append(ocap[o])
    res = milp(c=v, constraints=LinearConstraint(np.vstack(rows), lo, hi), integrality=np.ones(n),
               bounds=Bounds(0, 1))
    if res.status != 0:
        return None
    return int(round(res.fun))


def check_caps(t: CandidateTable, a: Allocation, lim: Limits) -> None:
    chosen = np.asarray(a.chosen, dtype=np.int64)
    assert len(set(a.chosen)) == len(a.chosen)
    dcap, ocap = share_caps(t, a.target_cents, lim)
    for d in set(t.device[chosen].tolist()):
        sel = chosen[t.device[chosen] == d]
        assert len(sel) <= lim.max_per_device
        assert t.value[sel].sum() <= dcap[d]
    for o in set(t.owner[chosen].tolist()):
        sel = chosen[t.owner[chosen] == o]
        assert t.value[sel].sum() <= ocap[o]


instances = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(3_000, 7_000), min_size=n, max_size=n),  # $30..$70 chunks
    st.lists(st.integers(0, 11), min_size=n, max_size=n),  # device of each offer
    st.lists(st.integers(0, 4), min_size=12, max_size=12),  # owner of each device
    st.integers(5_000, 60_000),  # target
    st.integers(0, 2**32 - 1),
))


@settings(max_examples=150, deadline=None)
@given(instances, st.sampled_from([Limits(), Limits(2, 0.34, 0.6), Limits(8, 1.0, 1.0)]))
def test_caps_hold_and_overshoot_within_one_smallest_chunk(inst, lim):
    values, devices, owners, target, seed = inst
    devices = [d % (max(devices) + 1) for d in devices]
    t = table_from(values, devices, owners)
    a = allocate(t, target, limits=lim, seed=seed)
    check_caps(t, a, lim)
    opt = exact_optimum(t, target, lim)
    if a.ok:
        assert a.total_cents >= target
        assert opt is not None, "allocator covered X where the exact solver found no solution"
        assert a.total_cents - target <= (opt - target) + a.smallest_eligible_cents
    else:
        assert "cannot cover" in a.reason and "eligible offers total" in a.reason
        assert a.eligible_cents < target
        if opt is not None:
            # the exact solver may combine a device's offers out of preference order;
            # the allocator's shortfall is then bounded by what the caps kept out
            assert "cap kept out" in a.reason


def test_deterministic_for_same_seed_and_prefers_reputation():
    rng = np.random.default_rng(5)
    values = rng.integers(4_800, 5_200, size=2_000)
    devices = rng.integers(0, 200, size=2_000)
    t = table_from(values.tolist(), devices.tolist(), {d: d // 2 for d in range(200)})
    score = np.zeros(len(t.devices))
    score[:20] = 50.0  # twenty good devices
    a1 = allocate(t, 200_000, device_score=score, seed=9)
    a2 = allocate(t, 200_000, device_score=score, seed=9)
    assert a1 == a2 and a1.ok
    good = np.isin(t.device[list(a1.chosen)], np.arange(20)).mean()
    assert good > 0.5, "most of the value should come from the well-reputed devices"
    a3 = allocate(t, 200_000, device_score=score, seed=10)
    assert a3.ok and a3.chosen != a1.chosen  # the seed breaks ties


def test_headroom_is_respected_and_shortfall_says_why():
    t = table_from([5_000] * 10, list(range(10)), {d: d for d in range(10)})
    room = np.full(10, 5_000)
    room[:5] = 0  # five devices at their exposure caps
    a = allocate(t, 40_000, limits=Limits(4, 1.0, 1.0), device_headroom=room)
    assert not a.ok and "device cap kept out 250.00 USD" in a.reason
    a = allocate(t, 25_000, limits=Limits(4, 1.0, 1.0), device_headroom=room)
    assert a.ok and set(t.device[list(a.chosen)].tolist()) <= set(range(5, 10))


def test_from_candidates_and_bad_input():
    cands = [Candidate(bytes([i]) * 32, bytes([i % 3]) * 32, f"p{i % 2}", "sim", "BTC", "addr", 1000,
                       5_000 + i, 1e12) for i in range(9)]
    t = CandidateTable.from_candidates(cands)
    assert len(t) == 9 and len(t.devices) == 3 and len(t.owners) == 2
    a = allocate(t, 10_000, limits=Limits(2, 0.6, 1.0))
    assert a.ok and a.total_cents >= 10_000
    with pytest.raises(ValueError):
        allocate(t, 0)
    with pytest.raises(ValueError):
        Limits(0)
    empty = CandidateTable.from_candidates([])
    assert "no offers" in allocate(empty, 100).reason
