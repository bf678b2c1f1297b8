"""The switchboard across peers, on real daemons: 1 bootstrap node and 8 ``keyswitch run`` daemons on
127.0.0.1. Each funds 2 chunks; a request on node0 is answered by proposals from several peers'
risk engines, and the chosen allocation respects the request's caps and node0's own."""

from __future__ import annotations

import pytest

from tests.functional.framework import FACTOR, Api, wait_until

pytestmark = pytest.mark.network
NODES, CHUNKS = 8, 2


def post(api: Api, path: str, body: dict) -> dict:
    r = api.post(path, body)
    assert r.status_code in (200, 201), r.text
    return r.json()


def test_request_answered_by_several_peers_within_caps(network):
    network.net = "sbtest"
    boot = network.add_boot()
    env = {"KEYSWITCH_RISK_REQUEST_DEADLINE": str(15 * FACTOR)}  # a loaded 2-core machine: generous
    apis = network.start_daemons([f"node{i}" for i in range(NODES)], bootnodes=[boot], env=env)
    for a in apis:
        made = post(a, "/v1/deposits", {"asset": "BTC-REG", "chunks": CHUNKS})
        assert len(made["deposits"]) == CHUNKS
    want = (NODES - 1) * CHUNKS
    wait_until(lambda: all(a.get("/v1/status")["offers_in_book"] == want for a in apis), 90,
               f"every book holds the other nodes' {want} offers")

    # $300 with at most 25% ($75) from one device: one $50 chunk from each of six devices
    chosen = post(apis[0], "/v1/requests", {"asset": "BTC-REG", "usd": 300, "contract": "swap"})
    print("[test] chosen:", {k: v for k, v in chosen.items() if k != "offers"})
    assert chosen["ok"], chosen["reason"]
    for a in apis:
        print("[test] requests:", a.get("/v1/status")["requests"])
    assert chosen["proposals"] >= 3, chosen  # several peers' risk engines answered
    assert len(chosen["from_proposers"]) >= 2
    assert chosen["total_cents"] >= 30_000
    per_device: dict[str, int] = {}
    for o in chosen["offers"]:
        per_device[o["device"]] = per_device.get(o["device"], 0) + o["usd_cents"]
    assert all(v <= 7_500 for v in per_device.values()), per_device  # max_share_device 0.25
    own = apis[0].get("/v1/status")["enclave"]["device_id"]
    assert own not in per_device  # node0 does not rely on its own deposits
    # the proposers counted the request; node0's reputation view now knows the devices
    assert sum(a.get("/v1/status")["requests"].get("proposals_out", 0) for a in apis[1:]) >= 3
    rep = apis[0].get("/v1/reputation")["devices"]
    assert len(rep) >= 6 and all(r["headroom_cents"] > 0 for r in rep)
