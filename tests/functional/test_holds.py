"""Exposure held by real daemons: N concurrent ``swap --peer`` calls against one device (the API of a running
``keyswitch run``) never put more on that device than its cap, the refusals name the cap and its setting, and
every hold is released when the contracts end."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.functional.framework import FACTOR, until, until_holds_released

pytestmark = pytest.mark.network


def test_concurrent_swaps_against_one_device_stay_within_its_cap_and_release_their_holds(network):
    network.net = "holdstest"
    lurl, boot = network.ledger_and_boot()
    a, b = network.start_daemons(["A", "B"], bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 4}).status_code == 201
    assert b.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 4}).status_code == 201
    until(lambda: a.get("/v1/status")["offers_in_book"] == 4 and b.get("/v1/status")["offers_in_book"] == 4,
          90, "each book holds the other's four offers")

    answers: list[tuple[int, dict]] = []

    async def swap(k: int) -> None:  # `keyswitch swap --peer B --chunks k`, four at once
        async with httpx.AsyncClient(timeout=120 * FACTOR) as c:
            r = await c.post(a.url + "/v1/contracts", headers=a.h,
                             json={"peer": b.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": k})
            answers.append((r.status_code, r.json()))

    async def main() -> None:
        async with trio.open_nursery() as n:
            for k in range(1, 5):
                n.start_soon(swap, k)

    trio.run(main)
    refused = [body["error"] for status, body in answers if status == 409 and "cap" in body.get("error", "")]
    agreed = [body for status, body in answers if status in (200, 201)]
    # B's simulated device starts at a $100 limit; each swap holds one $50 chunk of it
    assert 1 <= len(agreed) <= 2, f"A agreed to {len(agreed)} concurrent swaps against one $100 device: {answers}"
    assert len(refused) >= 2, answers
    assert all("device cap:" in r and "allowed (" in r and "device class limit" in r for r in refused), refused

    def ended():
        cs = a.get("/v1/contracts")["contracts"] + b.get("/v1/contracts")["contracts"]
        return all(c["state"] in ("done", "withheld", "failed") for c in cs)

    until(ended, 180, "every contract ends")
    # two swaps agreed on one chunk (each plans this node's first k chunks): over release/1 an enclave refuses the
    # second's open; over contract-run/1 (the default) B opens the first at once, its chunk leaves its offers and B
    # refuses the second at agreement. Either way its reservation goes with the refusal, not node.contracts.desk.swaps.RESERVE_TTL
    # (60 s) after the agreement
    cs = a.get("/v1/contracts")["contracts"]
    reused = [e for status, e in ((s_, b_.get("error", "")) for s_, b_ in answers)
              if status == 409 and "is not one of this node's current offers" in e]
    assert any(c["state"] == "failed" and "not-held" in c["reason"] for c in cs) or reused, (
        answers, [(c["state"], c["reason"], c.get("role")) for c in cs])
    until_holds_released({"A": a, "B": b}, 5, f"answers: {answers}; contracts: {cs}")
