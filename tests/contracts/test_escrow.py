"""The stdlib escrow: approval by the arbiter or the payer, refund after a height, cancellation."""

import pytest

from node.contracts import Chunk, Terms, View, compile_terms, evaluate, stdlib

from .host import run

PARTIES = ("payer", "payee", "arbiter")


@pytest.fixture
def escrow():
    return compile_terms(Terms(stdlib.source("escrow"), {"height_asset": "BTC", "refund_height": 1000}, PARTIES))


def start(height=10):
    return View({"payer": [Chunk("BTC", 50_000, 2500)] * 3}, heights={"BTC": height})


def test_nothing_moves_without_approval(escrow):
    out = evaluate(escrow, start())
    assert out.status == "running" and out.releases == ()
    # the payee cannot approve its own payment
    assert evaluate(escrow, start().with_signature("payee", "release")).releases == ()


@pytest.mark.parametrize("approver", ["arbiter", "payer"])
def test_approval_releases_everything_to_the_payee(escrow, approver):
    view = start().with_signature(approver, "release")
    assert [(r.index, r.receiver) for r in evaluate(escrow, view).releases] == [(i, "payee") for i in range(3)]
    final, out, rounds = run(escrow, view)
    assert out.status == "complete" and out.settled and rounds == 1
    assert all(t.receiver == "payee" for t in final.moved)


def test_refund_after_height_without_approval(escrow):
    assert evaluate(escrow, start(999)).status == "running"
    final, out, _ = run(escrow, start(1000))
    assert out.status == "refunding" and out.settled
    assert all(t.receiver == "payer" for t in final.moved) and len(final.moved) == 3


@pytest.mark.parametrize("canceller", ["arbiter", "payee"])
def test_cancellation_refunds_early(escrow, canceller):
    final, out, _ = run(escrow, start().with_signature(canceller, "refund"))
    assert out.status == "refunding" and all(t.receiver == "payer" for t in final.moved)


def test_approval_wins_over_the_refund_height(escrow):
    # approved, one chunk delivered, then the height passes: the rest still goes to the payee
    view = start().with_signature("arbiter", "release")
    _, _, _ = run(escrow, view, withholders=frozenset({"payer"}))
    view = view.with_heights(BTC=5000)
    final, out, _ = run(escrow, view)
    assert out.status == "complete" and all(t.receiver == "payee" for t in final.moved)
