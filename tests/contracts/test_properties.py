"""Property tests: a contract never allows more than its rules permit.

For swap and ring, at every state (arbitrary histories of moved keys, and
states reached by random schedules with withholding), the releases allowed to
each party never take its exposure (value it has released minus value it has
received) beyond one chunk (the largest chunk in the contract), at most one
outgoing release is allowed per party at a time, refunds only go home, and an
honest run from any reachable state finishes whenever that is possible.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.contracts import Chunk, Terms, Transfer, View, compile_terms, evaluate, stdlib

from .host import run, usd_given, usd_received

SWAP = compile_terms(Terms(stdlib.source("swap"), {"asset_a": "A", "asset_b": "B", "usd": 1, "deadline": 100},
                           ("a", "b")))
RINGS = {n: compile_terms(Terms(stdlib.source("ring"), {"usd": 1, "height_asset": "A", "deadline": 100},
                                tuple(f"p{k}" for k in range(n)))) for n in (3, 4, 5)}

usd_list = st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=6)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_allowed(contract, view: View) -> None:
    """The exposure property for one evaluation."""
    out = evaluate(contract, view)
    cap = max(c.usd_cents for cs in view.chunks.values() for c in cs)
    parties = contract.parties
    seen = set()
    for r in out.releases:
        assert (r.giver, r.index) not in seen
        seen.add((r.giver, r.index))
        assert view.receiver_of(r.giver, r.index) is None  # never a key that has already moved
        assert r.receiver in parties
    if out.status == "refunding":
        assert all(r.receiver == r.giver for r in out.releases)  # refunds only go home
    for p in parties:
        outgoing = [r for r in out.releases if r.giver == p and r.receiver != p]
        assert len(outgoing) <= 1
        extra = sum(view.chunks[p][r.index].usd_cents for r in outgoing)
        if outgoing:
            assert usd_given(view, p) + extra - usd_received(view, p) <= cap
    return out


@st.composite
def arbitrary_state(draw, parties, assets):
    chunks = {p: [Chunk(a, 1, u) for u in draw(usd_list)] for p, a in zip(parties, assets)}
    moved = []
    n = len(parties)
    for k, p in enumerate(parties):
        succ = parties[(k + 1) % n]
        for i in range(len(chunks[p])):
            fate = draw(st.sampled_from(["stay", "stay", "give", "home"]))
            if fate == "give":
                moved.append(Transfer(p, i, succ))
            elif fate == "home":
                moved.append(Transfer(p, i, p))
    height = draw(st.sampled_from([1, 99, 100, 500]))
    return View(chunks, moved, heights={"A": height})


@FAST
@given(arbitrary_state(("a", "b"), ("A", "B")))
def test_swap_never_allows_more_than_one_chunk_of_exposure_from_any_history(view):
    check_allowed(SWAP, view)


@FAST
@given(st.integers(3, 5).flatmap(lambda n: st.tuples(
    st.just(n), arbitrary_state(tuple(f"p{k}" for k in range(n)), ("A",) * n))))
def test_ring_never_allows_more_than_one_chunk_of_exposure_from_any_history(n_view):
    n, view = n_view
    check_allowed(RINGS[n], view)


def schedule_then_finish(contract, view: View, data) -> None:
    """Random asynchrony and withholding, checking every state, then an honest finish."""
    cap = max(c.usd_cents for cs in view.chunks.values() for c in cs)
    for _ in range(data.draw(st.integers(0, 30))):
        out = check_allowed(contract, view)
        if not out.releases:
            break
        subset = data.draw(st.lists(st.sampled_from(out.releases), unique=True, max_size=len(out.releases)))
        view = view.with_moved(*(Transfer(r.giver, r.index, r.receiver) for r in subset))
        for p in contract.parties:
            assert usd_given(view, p) - usd_received(view, p) <= cap
    final, out, _ = run(contract, view)
    totals = [sum(c.usd_cents for c in view.chunks[p]) for p in contract.parties]
    if len(totals) == 2 and abs(totals[0] - totals[1]) <= cap:
        # a swap whose sides differ by at most one chunk always finishes
        assert out.status == "complete" and out.settled
    if out.status == "running":
        # stuck: the deadline sends every unmoved chunk home
        final, out, _ = run(contract, final.with_heights(A=100))
        assert out.status == "refunding" and out.settled


@FAST
@given(usd_list, usd_list, st.data())
def test_swap_random_schedules_stay_within_one_chunk_and_finish(a, b, data):
    view = View({"a": [Chunk("A", 1, u) for u in a], "b": [Chunk("B", 1, u) for u in b]}, heights={"A": 1})
    schedule_then_finish(SWAP, view, data)


@FAST
@given(st.integers(3, 5), st.data())
def test_ring_random_schedules_stay_within_one_chunk_and_settle(n, data):
    parties = tuple(f"p{k}" for k in range(n))
    view = View({p: [Chunk("A", 1, u) for u in data.draw(usd_list)] for p in parties}, heights={"A": 1})
    schedule_then_finish(RINGS[n], view, data)
