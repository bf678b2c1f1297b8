"""The stdlib swap: full runs, withholding, the deadline refund, malformed deposits."""

from node.contracts import Chunk, Terms, Transfer, View, compile_terms, evaluate, next_release, stdlib

from .host import received, run, usd_given, usd_received

PARAMS = {"asset_a": "BTC", "asset_b": "ETH", "usd": 10_000, "deadline": 800_100}


def swap(**params):
    return compile_terms(Terms(stdlib.source("swap"), {**PARAMS, **params}, ("alice", "bob")))


def chunks(a_usd, b_usd):
    return {"alice": [Chunk("BTC", u * 2, u) for u in a_usd], "bob": [Chunk("ETH", u * 30, u) for u in b_usd]}


def test_full_run_equal_chunks_completes_tit_for_tat():
    c = swap()
    view = View(chunks([2500] * 4, [2500] * 4), heights={"BTC": 800_000, "ETH": 19_000_000})
    trace: list = []
    final, out, rounds = run(c, view, trace=trace)
    assert out.status == "complete" and out.settled and out.releases == ()
    assert sorted(t.index for t in received(final, "bob")) == [0, 1, 2, 3]
    assert sorted(t.index for t in received(final, "alice")) == [0, 1, 2, 3]
    assert rounds == 4  # both move one chunk per round
    for v, _ in trace:  # nobody is ever more than one chunk ahead
        for p in ("alice", "bob"):
            assert usd_given(v, p) - usd_received(v, p) <= 2500


def test_full_run_unequal_chunks_completes_within_one_chunk():
    c = swap()
    view = View(chunks([3000, 3000, 4000], [2000] * 5), heights={"BTC": 800_000})
    trace: list = []
    final, out, _ = run(c, view, trace=trace)
    assert out.status == "complete" and out.settled
    assert usd_received(final, "bob") == 10_000 and usd_received(final, "alice") == 10_000
    for v, _ in trace:
        for p in ("alice", "bob"):
            assert usd_given(v, p) - usd_received(v, p) <= 4000


def test_next_release_per_giver():
    c = swap()
    view = View(chunks([5000, 5000], [5000, 5000]), heights={"BTC": 1})
    assert [(r.giver, r.index, r.receiver) for r in next_release(c, view, "alice")] == [("alice", 0, "bob")]
    view = view.with_moved(Transfer("alice", 0, "bob"))
    assert next_release(c, view, "alice") == []  # must wait for bob's chunk 0
    assert [(r.giver, r.index) for r in next_release(c, view, "bob")] == [("bob", 0)]


def test_withholding_costs_at_most_one_chunk_then_deadline_refunds():
    c = swap()
    view = View(chunks([2500] * 4, [2500] * 4), heights={"BTC": 800_000})
    view, out, _ = run(c, view, withholders=frozenset({"bob"}))
    assert out.status == "running"
    assert usd_given(view, "alice") == 2500 and usd_received(view, "alice") == 0
    # the deadline passes on asset_a's ledger: unmoved chunks go home
    view = view.with_heights(BTC=800_100)
    out = evaluate(c, view)
    assert out.status == "refunding"
    assert {(r.giver, r.index, r.receiver) for r in out.releases} == (
        {("alice", i, "alice") for i in (1, 2, 3)} | {("bob", i, "bob") for i in range(4)})
    final, out, _ = run(c, view)
    assert out.status == "refunding" and out.settled


def test_deadline_refund_before_any_move():
    c = swap()
    view = View(chunks([5000, 5000], [5000, 5000]), heights={"BTC": 900_000})
    final, out, _ = run(c, view)
    assert out.settled and out.status == "refunding"
    assert all(t.giver == t.receiver for t in final.moved)


def test_malformed_deposits_refund_at_once():
    c = swap()
    wrong_asset = chunks([5000, 5000], [5000, 5000])
    wrong_asset["bob"][1] = Chunk("DOGE", 1, 5000)
    short = chunks([5000, 5000], [5000, 4999])
    for ch in (wrong_asset, short):
        out = evaluate(c, View(ch, heights={"BTC": 1}))
        assert out.status == "refunding"
        assert all(r.giver == r.receiver for r in out.releases) and len(out.releases) == 4


def test_completion_survives_the_deadline():
    c = swap()
    view = View(chunks([5000, 5000], [5000, 5000]), heights={"BTC": 1})
    final, out, _ = run(c, view)
    assert out.status == "complete"
    assert evaluate(c, final.with_heights(BTC=10**7)).status == "complete"
