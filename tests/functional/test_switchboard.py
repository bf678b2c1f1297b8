"""The switchboard across peers, on real daemons: 1 bootstrap node and 8 ``keyswitch run`` daemons on
127.0.0.1. Each funds 2 chunks; a request on node0 is answered by proposals from several peers'
risk engines, and the chosen allocation respects the request's caps and node0's own."""

from __future__ import annotations

import os
import sys
import time

import httpx
import pytest

from node.dev.localnet import timeout_factor

from node.dev.localnet import init_datadir, spawn, stop_all, wait_for

pytestmark = pytest.mark.network
FACTOR = timeout_factor()
NODES, CHUNKS = 8, 2


class Api:
    def __init__(self, datadir):
        self.url = (datadir / "api.url").read_text().strip()
        self.headers = {"Authorization": "Bearer " + (datadir / ".cookie").read_text().strip()}

    def get(self, path):
        return httpx.get(self.url + path, headers=self.headers, timeout=30).json()

    def post(self, path, body):
        r = httpx.post(self.url + path, json=body, headers=self.headers, timeout=60)
        assert r.status_code in (200, 201), r.text
        return r.json()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout * FACTOR
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out: {what}")


def test_request_answered_by_several_peers_within_caps(tmp_path):
    procs = []
    env_deadline = os.environ.get("KEYSWITCH_RISK_REQUEST_DEADLINE")
    os.environ["KEYSWITCH_RISK_REQUEST_DEADLINE"] = str(15 * FACTOR)  # a loaded 2-core machine: generous
    try:
        bdir = tmp_path / "boot"
        bdir.mkdir()
        b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(bdir), "--net", "sbtest"], bdir / "out.log")
        procs.append(b)
        boot = wait_for(bdir / "out.log", r"LISTEN (\S+)", b, timeout=60 * FACTOR)
        dirs = []
        for i in range(NODES):
            d = tmp_path / f"node{i}"
            init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
            procs.append(spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", "sbtest",
                                "--bootnodes", boot, "--republish", "2"], d / "out.log"))
            dirs.append(d)
        for d, p in zip(dirs, procs[1:]):
            wait_for(d / "out.log", r"ready (\S+)", p, timeout=90 * FACTOR)
        apis = [Api(d) for d in dirs]
        for a in apis:
            made = a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": CHUNKS})
            assert len(made["deposits"]) == CHUNKS
        want = (NODES - 1) * CHUNKS
        wait_until(lambda: all(a.get("/v1/status")["offers_in_book"] == want for a in apis), 90,
                   f"every book holds the other nodes' {want} offers")

        # $300 with at most 25% ($75) from one device: one $50 chunk from each of six devices
        chosen = apis[0].post("/v1/requests", {"asset": "BTC-REG", "usd": 300, "contract": "swap"})
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
    finally:
        if env_deadline is None:
            os.environ.pop("KEYSWITCH_RISK_REQUEST_DEADLINE", None)
        else:
            os.environ["KEYSWITCH_RISK_REQUEST_DEADLINE"] = env_deadline
        stop_all(procs)
