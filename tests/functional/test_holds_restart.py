"""Exposure held across a daemon restart with a contract in flight (issue 18): two ``keyswitch run`` daemons on
127.0.0.1. A buys an option on one of B's BTC-REG chunks, paying in ETH-DEV; written (A's premium paid, B's chunk
committed), it holds A's cap on B's device: a simulated device's $100, the premium and B's chunk. A is killed
(SIGKILL) and started again on the same data directory: the running option holds the cap again (A's
``GET /v1/reputation``), so a second option on B is refused by A's own caps naming the cap and where its limit
comes from; once the option ends (it expires: the blocks are mined past it at once, no wait on the clock) every
hold on both daemons is released, and the same second option is agreed.

(The in-process tests, ``tests/adversarial/test_holds_restart.py``, cover every contract kind, agreed and not
yet opened across a restart, and the lapse of such an agreement.)"""

from __future__ import annotations

import pytest

from node.ledger.client import DevLedgerClient
from tests.functional.framework import FACTOR, book_offers, print_contract_logs, until, until_holds_released

pytestmark = pytest.mark.network
EXPIRY = 2_000  # blocks of BTC-REG (0.5 s each): far past the test; mined past at once to end the option


def test_a_contract_in_flight_holds_the_cap_across_a_restart_and_releases_it_when_it_ends(network):
    network.net = "holdsrestart"
    try:
        _run(network)
    except BaseException:
        print_contract_logs(network, ("contract", "refus", "risk", "hold"))
        raise


def _option(a, b):
    return a.post("/v1/contracts", {"peer": b.peer, "give": "ETH-DEV", "take": "BTC-REG", "chunks": 1,
                                    "kind": "option", "premium_chunks": 1, "expiry_blocks": EXPIRY})


def _row(api, cid: str) -> dict:
    return next((x for x in api.get("/v1/contracts")["contracts"] if x["contract"] == cid), None) or {}


def _held(api) -> int:
    return sum(r["exposure_cents"] for r in api.get("/v1/reputation")["devices"])


def _run(network) -> None:
    lurl, boot = network.ledger_and_boot()
    a, b = network.start_daemons(["A", "B"], bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    assert a.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 4}).status_code == 201
    assert b.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
    until(lambda: book_offers(a, "BTC-REG") == 2 and book_offers(b, "ETH-DEV") == 4, 120,
          "each book holds the other's offers")

    first = _option(a, b)
    assert first.status_code in (200, 201), first.text
    cid = first.json()["contract"]
    until(lambda: _row(a, cid).get("released") == [[0, 1]] and _row(b, cid).get("state") == "running",
          60 * FACTOR, "the option is written (A's premium paid, B runs it)")
    until(lambda: _held(a) == 10_000, 10 * FACTOR, "A holds $100 on B's device (premium + B's chunk)")

    a.kill()  # ---- A crashes with the option in flight and comes back on the same data directory
    a.restart(90 * FACTOR)
    until(lambda: _row(a, cid).get("state") == "running", 30 * FACTOR, "A resumed the option")
    until(lambda: _held(a) == 10_000, 10 * FACTOR, "the restarted A holds the running option's exposure again")
    second = _option(a, b)
    assert second.status_code == 409, f"the restarted A bought a second option against a full cap: {second.text}"
    why = second.json()["error"]
    assert "device cap:" in why and "would hold $200.00 of $100.00 allowed" in why, why
    assert "device class limit" in why and "tcb_policy.toml" in why, why  # where the limit comes from

    DevLedgerClient(lurl, admin=True).mine("BTC-REG", EXPIRY + 2)  # past the expiry: every unmoved chunk home
    until(lambda: _row(a, cid).get("state") == "done" and _row(b, cid).get("state") == "done", 90 * FACTOR,
          "the option expires and ends on both sides")
    until_holds_released({"A": a, "B": b}, 30 * FACTOR, "after the option ended")
    again = _option(a, b)
    assert again.status_code in (200, 201), f"the cap is free again, yet: {again.text}"
