"""A request to contracts outlives its daemon (issue 18): R asks for $200 of BTC-REG giving ETH-DEV, from a
withholding provider W (``tests.functional.withholder``) and an honest one, P. R is killed (SIGKILL) while its
swap with W runs, and started again on the same data directory: ``GET /v1/requests/{id}`` still answers with the
run (it is stored after every change), the run resumes (its swaps were found again among the contracts R's
release protocol resumed), W's withholding ends its swap, the shortfall is asked for again from P, and the run
ends complete, with at most one chunk lost and every hold released."""

from __future__ import annotations

import sys

import pytest

from node.dev.localnet import init_datadir, spawn, stop_all, wait_for
from tests.functional.framework import FACTOR, Api, ledger_and_boot, until, until_holds_released

pytestmark = pytest.mark.network
NET = "reqrestart"


def _daemon(d, boot: str, lurl: str, log, module: str = "node"):
    env = {"KEYSWITCH_LEDGER_URL": lurl, "KEYSWITCH_RISK_MAX_SHARE_DEVICE": "0.5",  # two chunks of each device
           "KEYSWITCH_RISK_REQUEST_DEADLINE": str(3 * FACTOR)}
    return spawn([sys.executable, "-m", module, "--datadir", str(d), "run", "--net", NET, "--bootnodes", boot,
                  "--republish", "2"], log, env=env)


def test_a_request_killed_mid_run_shows_its_report_after_the_restart_and_resumes_to_its_end(tmp_path):
    procs: list = []
    try:
        _run(tmp_path, procs)
    except BaseException:
        for n in ("R", "W", "P"):
            for log in sorted((tmp_path / n).glob("out*.log")):
                lines = [ln for ln in log.read_text(errors="replace").splitlines()
                         if any(k in ln for k in ("release.", "contract", "withh", "refus", "request", "Trace"))]
                print(f"===== {n} {log.name} =====\n" + "\n".join(ln[:300] for ln in lines[-40:]))
        raise
    finally:
        stop_all(procs)


def _run(tmp_path, procs: list) -> None:
    lurl, boot = ledger_and_boot(tmp_path, NET, procs)
    dirs = {n: tmp_path / n for n in ("R", "W", "P")}
    for n, d in dirs.items():
        init_datadir(d)
        procs.append(_daemon(d, boot, lurl, d / "out.log", "tests.functional.withholder" if n == "W" else "node"))
    api = {n: Api(d, wait_for(d / "out.log", r"ready (\S+)", p, timeout=90 * FACTOR))
           for (n, d), p in zip(dirs.items(), procs[2:])}
    r = api["R"]
    assert r.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 6}).status_code == 201
    assert api["W"].post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
    assert api["P"].post("/v1/deposits", {"asset": "BTC-REG", "chunks": 3}).status_code == 201
    until(lambda: len(r.get("/v1/offers?asset=BTC-REG")["offers"]) == 5
          and all(len(api[n].get("/v1/offers?asset=ETH-DEV")["offers"]) == 6 for n in ("W", "P")), 120,
          "R's book holds the five BTC-REG offers, W's and P's R's six ETH-DEV offers")

    started = r.post("/v1/requests", {"asset": "BTC-REG", "usd": 200, "give": "ETH-DEV", "wait": False})
    assert started.status_code == 202, started.text
    rid = started.json()["request_id"]
    w_peer, p_peer = api["W"].peer, api["P"].peer

    def w_swap_runs() -> bool:  # R's swap with W agreed over release/1: its record is on R's disk
        return any(c.get("peer") == w_peer and c["state"] == "running" for c in r.get("/v1/contracts")["contracts"])

    until(w_swap_runs, 120, "R's swap with W runs")
    before = r.get(f"/v1/requests/{rid}")
    assert before["state"] == "running" and not before["done"], before

    # ---- R crashes mid-request and comes back on the same data directory
    procs[2].kill()
    procs[2].wait(timeout=30)
    procs[2] = _daemon(dirs["R"], boot, lurl, dirs["R"] / "out2.log")
    r = api["R"] = Api(dirs["R"], wait_for(dirs["R"] / "out2.log", r"ready (\S+)", procs[2], timeout=90 * FACTOR))
    after = r.get(f"/v1/requests/{rid}")
    assert after["request_id"] == rid and after["restarts"] == 1, after
    assert {p["peer"] for p in after["providers"]} == {w_peer, p_peer}, after

    rep = {}

    def ended() -> bool:
        rep.update(r.get(f"/v1/requests/{rid}"))
        return rep["done"]

    until(ended, 240, "the resumed request to end")
    print("[test] report:", {k: v for k, v in rep.items() if k != "providers"})
    for p in rep["providers"]:
        print("[test]  ", {k: p[k] for k in ("peer", "ask", "state", "received", "lost", "reason")})
    rows = {(p["peer"], p["ask"]): p for p in rep["providers"]}
    w = rows[(w_peer, 1)]
    assert w["state"] == "withheld" and w["received"] == 1 and w["lost"] <= 1, w
    assert rows[(p_peer, 1)]["state"] == "done" and rows[(p_peer, 1)]["received"] == 2, rows
    assert rows[(p_peer, 2)]["state"] == "done" and rows[(p_peer, 2)]["received"] == 1, rows  # the shortfall
    assert rep["state"] == "complete" and rep["exit_code"] == 0 and rep["obtained_cents"] == 20_000, rep
    assert rep["lost"] <= 1 and rep["restarts"] == 1
    until_holds_released(api, 120, "after the resumed request")
