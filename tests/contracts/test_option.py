"""The stdlib call option: premium, exercise tit-for-tat before expiry, return of the underlying."""

import pytest

from node.contracts import Chunk, Terms, Transfer, View, compile_terms, evaluate, stdlib

from .host import run

PARAMS = {"height_asset": "BTC", "premium_chunks": 1, "premium_by": 100, "expiry": 1000}


@pytest.fixture
def option():
    return compile_terms(Terms(stdlib.source("option"), PARAMS, ("buyer", "writer")))


def start(height=10):
    # buyer: 1 premium chunk then 3 strike chunks (USDC); writer: 3 chunks of the underlying (BTC)
    buyer = [Chunk("USDC", 200_000, 20_000)] + [Chunk("USDC", 5_000_000, 500_000)] * 3
    writer = [Chunk("BTC", 1_000_000, 600_000)] * 3
    return View({"buyer": buyer, "writer": writer}, heights={"BTC": height})


def pay_premium(option, view):
    out = evaluate(option, view)
    assert [(r.giver, r.index, r.receiver) for r in out.releases] == [("buyer", 0, "writer")]
    return view.with_moved(Transfer("buyer", 0, "writer"))


def test_exercise_runs_tit_for_tat_to_completion(option):
    view = pay_premium(option, start())
    # premium paid but not exercised: nothing else may move
    assert evaluate(option, view).releases == ()
    view = view.with_signature("buyer", "exercise")
    trace: list = []
    final, out, rounds = run(option, view, trace=trace)
    assert out.status == "complete" and out.settled
    assert sorted(t.index for t in final.moved if t.giver == "writer" and t.receiver == "buyer") == [0, 1, 2]
    assert rounds == 6  # strike, underlying, strike, underlying, ...
    for v, o in trace:  # the buyer never has more than one strike chunk unanswered
        paid = sum(1 for t in v.moved if t.giver == "buyer" and t.index >= 1)
        got = sum(1 for t in v.moved if t.giver == "writer" and t.receiver == "buyer")
        pending = sum(1 for r in o.releases if r.giver == "buyer")
        assert paid + pending - got <= 1


def test_no_exercise_underlying_returns_to_writer_at_expiry(option):
    view = pay_premium(option, start())
    assert evaluate(option, view.with_heights(BTC=999)).status == "running"
    final, out, _ = run(option, view.with_heights(BTC=1000))
    assert out.status == "refunding" and out.settled
    assert {(t.giver, t.receiver) for t in final.moved} == {("buyer", "writer"), ("writer", "writer"),
                                                           ("buyer", "buyer")}
    assert final.receiver_of("buyer", 0) == "writer"  # the writer keeps the premium


def test_unpaid_premium_refunds_everything(option):
    view, out, _ = run(option, start(), withholders=frozenset({"buyer"}))
    assert out.status == "running"
    final, out, _ = run(option, start(100), withholders=frozenset())
    assert out.status == "refunding" and all(t.giver == t.receiver for t in final.moved)


def test_exercise_needs_the_premium_and_the_signature(option):
    view = start().with_signature("buyer", "exercise")
    assert all(r.index == 0 for r in evaluate(option, view).releases)  # only the premium
    view = pay_premium(option, start())
    assert evaluate(option, view.with_signature("writer", "exercise")).releases == ()


def test_a_paid_strike_chunk_is_still_owed_after_expiry(option):
    view = pay_premium(option, start()).with_signature("buyer", "exercise")
    view = view.with_moved(Transfer("buyer", 1, "writer"))  # strike 0 paid, writer has not answered
    out = evaluate(option, view.with_heights(BTC=2000))
    assert out.status == "refunding"
    moves = {(r.giver, r.index): r.receiver for r in out.releases}
    assert moves[("writer", 0)] == "buyer"  # owed
    assert moves[("writer", 1)] == moves[("writer", 2)] == "writer"
    assert moves[("buyer", 2)] == moves[("buyer", 3)] == "buyer"


def test_mismatched_deposits_refund(option):
    bad = View({"buyer": [Chunk("USDC", 1, 1)] * 2, "writer": [Chunk("BTC", 1, 1)] * 3}, heights={"BTC": 1})
    out = evaluate(option, bad)
    assert out.status == "refunding" and all(r.giver == r.receiver for r in out.releases)
