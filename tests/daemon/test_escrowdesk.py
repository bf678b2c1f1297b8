"""The daemon's key-escrow request checks (node.contracts.desk.escrow.check_request): every bad input refused with its
reason before any peer is asked. The daemons themselves: tests/functional/test_key_escrow.py."""

import pytest

from node.contracts.desk.escrow import check_request

PARTIES = ["payer", "payee", "arbiter"]


def test_a_good_request_passes_through():
    assert check_request({"holders": ["h1", "h2", "h3"], "k": 2, "recovery": "r"}, PARTIES) == (
        ["h1", "h2", "h3"], 2, "r")


@pytest.mark.parametrize("ke, reason", [
    ({"holders": ["h1", "h2"], "k": 3, "recovery": "r"}, "k must be 2..2"),
    ({"holders": ["h1", "h2"], "k": 1, "recovery": "r"}, "k must be 2..2"),
    ({"holders": ["h1"], "k": 2, "recovery": "r"}, "needs 2..16 holders, got 1"),
    ({"holders": [f"h{i}" for i in range(17)], "k": 2, "recovery": "r"}, "needs 2..16 holders, got 17"),
    ({"holders": ["h1", "h1"], "k": 2, "recovery": "r"}, "distinct"),
    ({"holders": ["h1", ""], "k": 2, "recovery": "r"}, "must be peer ids"),
    ({"holders": ["h1", "h2"], "k": 2}, "recovery"),
    ({"holders": ["h1", "payee"], "k": 2, "recovery": "r"}, "holder payee is a party of the contract"),
    ({"holders": ["h1", "h2"], "k": 2, "recovery": "arbiter"}, "recovery node arbiter is a party"),
    ({"holders": ["h1", "h2"], "k": 2, "recovery": "payer"}, "recovery node payer is a party"),
    ({"holders": ["h1", "h2"], "k": 2, "recovery": "h2"}, "also a holder"),
])
def test_bad_requests_are_refused_with_the_reason(ke, reason):
    with pytest.raises(ValueError, match=reason):
        check_request(ke, PARTIES)
