"""The stdlib ring: three or more parties, tit-for-tat around the ring."""

import pytest

from node.contracts import Chunk, Terms, View, compile_terms, evaluate, stdlib

from .host import received, run, usd_given, usd_received


def ring(parties, usd=6000):
    return compile_terms(Terms(stdlib.source("ring"), {"usd": usd, "height_asset": "BTC", "deadline": 500}, parties))


@pytest.mark.parametrize("sizes", [
    {"A": [2000] * 3, "B": [2000] * 3, "C": [2000] * 3},
    {"A": [3000, 3000], "B": [1000] * 6, "C": [2500, 2500, 1000], "D": [1500] * 4},
])
def test_ring_completes_and_nobody_is_exposed_beyond_one_chunk(sizes):
    parties = tuple(sizes)
    c = ring(parties)
    view = View({p: [Chunk(p + "COIN", u, u) for u in us] for p, us in sizes.items()}, heights={"BTC": 1})
    cap = max(max(us) for us in sizes.values())
    trace: list = []
    final, out, _ = run(c, view, trace=trace)
    assert out.status == "complete" and out.settled
    n = len(parties)
    for k, p in enumerate(parties):
        succ = parties[(k + 1) % n]
        assert all(t.giver == p for t in received(final, succ))
        assert len(received(final, succ)) == len(sizes[p])
    for v, _ in trace:
        for p in parties:
            assert usd_given(v, p) - usd_received(v, p) <= cap


def test_a_withholder_stalls_the_ring_and_the_deadline_refunds():
    parties = ("A", "B", "C")
    c = ring(parties)
    view = View({p: [Chunk("X", 1, 2000)] * 3 for p in parties}, heights={"BTC": 1})
    view, out, _ = run(c, view, withholders=frozenset({"C"}))
    assert out.status == "running"
    for p in parties:
        assert usd_given(view, p) - usd_received(view, p) <= 2000
    final, out, _ = run(c, view.with_heights(BTC=500))
    assert out.status == "refunding" and out.settled


def test_a_short_party_refunds_the_ring():
    parties = ("A", "B", "C")
    view = View({"A": [Chunk("X", 1, 2000)] * 3, "B": [Chunk("X", 1, 2000)] * 3, "C": [Chunk("X", 1, 2000)] * 2},
                heights={"BTC": 1})
    out = evaluate(ring(parties), view)
    assert out.status == "refunding" and all(r.giver == r.receiver for r in out.releases)
