"""Keyed exposure holds: under any interleaving of holds, releases and allocations, no device, owner or class
ever holds more than its cap, and the exposure is exactly what the holds say."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from node.risk.allocate import Limits
from node.risk.caps import Hold
from node.risk.engine import RiskEngine
from node.risk.types import Candidate

NOW = 1_000_000.0
DEVICES = [bytes([d]) * 32 for d in range(4)]
OWNER = {DEVICES[0]: "pA", DEVICES[1]: "pA", DEVICES[2]: "pB", DEVICES[3]: "pC"}


class Book:
    def __init__(self, cands):
        self.cands = cands

    def candidates(self, asset, now):
        return [c for c in self.cands if c.asset == asset]


def book(values: list[int]) -> Book:
    return Book([Candidate(i.to_bytes(32, "big"), DEVICES[i % 4], OWNER[DEVICES[i % 4]], "sim", "BTC", f"a{i}",
                           1000, v, NOW + 3_600) for i, v in enumerate(values)])


def check_invariants(e: RiskEngine) -> None:
    ex = e.caps.exposure
    want_d, want_o = defaultdict(int), defaultdict(int)
    for hs in e.holds.values():
        for h in hs:
            want_d[h.device] += h.usd_cents
            want_o[h.owner] += h.usd_cents
    assert dict(ex.by_device) == {k: v for k, v in want_d.items() if v}
    assert dict(ex.by_owner) == {k: v for k, v in want_o.items() if v}
    for d, held in ex.by_device.items():
        assert held <= e.caps.device_limit(d, "sim", NOW)[0], f"device {d.hex()[:8]} holds {held} over its cap"
    for o, held in ex.by_owner.items():
        assert held <= e.caps.owner_limit(o, NOW, "sim"), f"owner {o} holds {held} over its cap"
    for c, held in ex.by_class.items():
        assert held <= e.caps.classes.class_cap(c)


ops = st.lists(st.one_of(
    st.tuples(st.just("hold"), st.integers(0, 3), st.integers(1, 12_000)),
    st.tuples(st.just("release"), st.integers(0, 30)),
    st.tuples(st.just("choose"), st.integers(1_000, 40_000)),
), max_size=40)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(2_000, 6_000), min_size=4, max_size=24), ops)
def test_no_interleaving_of_holds_releases_and_allocations_exceeds_a_cap(values, steps):
    e = RiskEngine(book(values), limits=Limits(4, 1.0, 1.0))
    e.caps.classes.class_cap_cents = 25_000  # so the class cap binds too
    keys: list[str] = []
    for i, step in enumerate(steps):
        key = f"k{i}"
        if step[0] == "hold":
            d = DEVICES[step[1]]
            before = e.caps.exposure.by_device.get(d, 0)
            refusal = e.try_hold(key, [Hold(d, OWNER[d], "sim", step[2])], NOW)
            if refusal is None:
                keys.append(key)
            else:  # refused: nothing taken, and the refusal names its cap and the setting behind it
                assert e.caps.exposure.by_device.get(d, 0) == before and key not in e.holds
                assert refusal.cap in ("device", "owner", "class") and "allowed (" in refusal.reason
        elif step[0] == "release" and keys:
            e.release_hold(keys.pop(step[1] % len(keys)))
        elif step[0] == "choose":
            choice = e.choose("BTC", step[1], NOW)
            if choice.ok:  # what the allocator chose fits under every cap as things stand: it can be held
                hs = [Hold(c.device_id, c.owner_id, c.device_class, c.usd_cents) for c in choice.offers]
                assert e.try_hold(key, hs, NOW) is None, "the allocator chose past a device's headroom"
                keys.append(key)
        check_invariants(e)
    # rebuilt from the same holds (a restart), a fresh engine holds exactly the same exposure
    fresh = RiskEngine(e.book, limits=e.limits)
    fresh.sync_holds(dict(e.holds))
    assert dict(fresh.caps.exposure.by_device) == dict(e.caps.exposure.by_device)
    fresh.sync_holds({})
    assert not fresh.caps.exposure.by_device and not fresh.holds


def test_a_refusal_names_the_cap_the_figures_and_the_setting():
    e = RiskEngine(book([5_000] * 4))
    d = DEVICES[0]
    assert e.try_hold("a", [Hold(d, "pA", "sim", 6_000)], NOW) is None
    r = e.try_hold("b", [Hold(d, "pA", "sim", 5_000)], NOW)
    assert r is not None and r.cap == "device"
    assert r.reason.startswith(f"device cap: pA.. device {d.hex()[:12]}.. would hold $110.00 of $100.00 allowed")
    assert "device class limit" in r.reason
    assert e.try_hold("a", [Hold(d, "pA", "sim", 6_000)], NOW) is None  # a key held is not held twice
    assert e.caps.exposure.by_device[d] == 6_000
