"""What expressions and statements mean (each checked through `complete when <expr>`)."""

import pytest

from node.contracts import Chunk, Terms, Transfer, View, compile_terms, evaluate

VIEW = View(
    {"A": [Chunk("BTC", 10, 100), Chunk("BTC", 20, 300)], "B": [Chunk("ETH", 5, 250)]},
    moved=[Transfer("A", 0, "B")],
    heights={"BTC": 812_345},
    prices={"BTC": 9_000_000},
    signatures=[("B", "go")],
)


def holds(expr: str, params=None, body: str = "") -> bool:
    decls = "".join(f"param {k}: {t}\n" for k, (t, _) in (params or {}).items())
    src = f"contract t\nparties a, b\n{decls}{body}complete when {expr}\n"
    values = {k: v for k, (_, v) in (params or {}).items()}
    return evaluate(compile_terms(Terms(src, values, ("A", "B"))), VIEW).status == "complete"


@pytest.mark.parametrize("expr", [
    "7 / 2 == 3", "-7 / 2 == -4", "-7 % 3 == 2", "2 + 3 * 4 == 14", "(2 + 3) * 4 == 20", "- - 3 == 3",
    "1_000 == 1000", "\"x\" != \"y\"", "not false and (false or true)", "abs(-5) == 5",
    "min(3, 4) == 3 and max(3, 4) == 4", "if 1 < 2 then true else false",
    "nparties() == 2 and party(0) == a and party(1) == b",
    "chunks(a) == 2 and chunks(b) == 1", "asset(a, 1) == \"BTC\" and amount(a, 1) == 20 and usd(a, 1) == 300",
    "moved(a, 0) and not moved(a, 1) and moved_to(a, 0, b) and not moved_to(a, 0, a)",
    "next_chunk(a) == 1 and next_chunk(b) == 0 and moved_count(a) == 1",
    "sent_usd(a, b) == 100 and sent_count(a, b) == 1 and sent_usd(b, a) == 0",
    "count_to(a, 0, 1, b) == 1 and count_to(a, 1, 9, b) == 0 and count_to(a, -5, 99, b) == 1",
    "total_usd(a) == 400 and max_usd(a) == 300 and all_asset(a, \"BTC\") and not all_asset(b, \"BTC\")",
    "height(\"BTC\") == 812_345 and price(\"BTC\") == 9_000_000",
    "signed(b, \"go\") and not signed(a, \"go\") and not signed(b, \"stop\")",
    "sum(i in 0 .. 4: i * i) == 14 and sum(i in 3 .. 1: 1) == 0",
    "maximum(i in 0 .. 3: 10 - i) == 10 and maximum(i in 0 .. 0: 5) == 0",
    "all(i in 0 .. 0: false) and not any(i in 0 .. 0: true) and any(i in 0 .. 5: i == 4)",
    "all(k in 0 .. nparties(): chunks(party(k)) > 0)",
])
def test_expression_holds(expr):
    assert holds(expr)


def test_params_and_if_else_chains():
    p = {"n": ("int", 5), "flag": ("bool", True), "coin": ("str", "BTC"), "who": ("party", "B")}
    assert holds("n == 5 and flag and coin == \"BTC\" and who == b", p)
    body = ("if n < 3 { complete when false }\n"
            "else if n < 10 { let inner = true\n complete when inner }\n"
            "else { complete when false }\n")
    assert holds("false", p, body)


def test_a_release_without_when_and_to_self():
    src = "contract t\nparties a, b\nrelease a[1] to a\nrelease b[0] to a when false\n"
    out = evaluate(compile_terms(Terms(src, {}, ("A", "B"))), VIEW)
    assert [(r.giver, r.index, r.receiver) for r in out.releases] == [("A", 1, "A")]
    assert out.status == "running" and not out.settled


def test_releases_of_moved_chunks_are_dropped():
    src = "contract t\nparties a, b\nrelease a[0] to b\n"
    assert evaluate(compile_terms(Terms(src, {}, ("A", "B"))), VIEW).releases == ()


def test_loop_variables_and_lets_are_scoped_per_iteration():
    body = "for i in 0 .. 3 { let sq = i * i\n release a[i % 2] to b when sq == 1 }\n"
    out = evaluate(compile_terms(Terms("contract t\nparties a, b\n" + body, {}, ("A", "B"))), VIEW)
    assert [(r.giver, r.index) for r in out.releases] == [("A", 1)]
