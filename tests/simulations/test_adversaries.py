"""Each adversary's bundled scenario runs, and what the design promises about it holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.risk.classes import ClassRegistry
from node.risk.reputation import ACCEPT_THRESHOLD
from simulations.engine import Engine
from simulations.scenario import load

SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"
_runs: dict[str, Engine] = {}


def engine(name: str) -> Engine:
    if name not in _runs:
        eng = Engine(load(SCENARIOS / f"{name}.toml"))
        eng.run()
        _runs[name] = eng
    return _runs[name]


def test_forged_attestations_are_never_accepted_nor_forwarded():
    eng = engine("forger")
    f = eng.summary()["adversaries"]["forger"]
    assert f["published"] > 50
    assert f["accepted_at_full_nodes"] == 0 and f["accepted_by_reference"] == 0 and f["forwarded"] == 0
    assert f["rejected_at_full_nodes"] > 0
    forgers = {eng.nodes[i].peer_id for i in eng.forgers}
    for node in eng.nodes:
        if node.full:
            assert all(node.book.latest_seq(p) is None for p in forgers)
    assert eng.summary()["requests"]["ok"] > 0  # the honest market still works


def test_slanderers_are_refuted_and_honest_devices_stay_acceptable():
    eng = engine("slanderer")
    s = eng.summary()["adversaries"]["slanderer"]
    assert s["reports_published"] > 5 and s["refuted_at_full_nodes"] > s["reports_published"]
    honest, bad = s["honest_views"], s["slanderer_views"]
    assert honest["views"] > 0 and honest["not_acceptable"] == 0 and honest["cheater_marks"] == 0
    assert honest["score_min"] >= 0  # refuted reports leave the subject untouched
    assert bad["views"] > 0 and bad["not_acceptable"] == bad["views"] and bad["score_mean"] < ACCEPT_THRESHOLD
    assert eng.summary()["gossip"]["verdict_mismatch"] == 0


def test_withholders_lose_reputation_and_later_exposure():
    eng = engine("withholder")
    summ = eng.summary()
    w = summ["adversaries"]["withholder"]
    assert w["contracts"] > 0 and w["reports"] == w["contracts"]
    assert summ["reputation_at_requesters"]["by_kind"]["withholder"] < 0
    assert summ["reputation_at_requesters"]["by_kind"]["honest"] > 0
    first, second = (w["withholder"]["chosen_cents_per_device_first_half"],
                     w["withholder"]["chosen_cents_per_device_second_half"])
    assert first > 0 and second < first / 2
    assert w["honest"]["chosen_cents_second_half"] > 0


def test_broken_tee_is_isolated_by_every_full_node_and_victims_lose_at_most_the_cap():
    eng = engine("broken_tee")
    b = eng.summary()["adversaries"]["broken_tee"]
    assert b["double_spends"] > 0
    for dev in b["devices"]:
        assert dev["double_spends"] > 0
        assert dev["full_nodes_isolated"] == dev["full_nodes"]
        assert dev["isolate_all_s"] is not None and dev["isolate_all_s"] < 5.0
        assert dev["books_with_its_offers"] == 0
    # a victim loses what it held on the device, within its cap for the device's class
    for x in eng.m.double_spends:
        dclass = eng._dev_class[bytes.fromhex(x["device"])]
        assert x["cents"] <= ClassRegistry().resolve(dclass).max_limit_cents
    per_client: dict[int, int] = {}
    for x in eng.m.double_spends:
        per_client[x["client"]] = per_client.get(x["client"], 0) + x["cents"]
    assert max(per_client.values()) <= max(ClassRegistry().resolve(c).max_limit_cents
                                           for c in eng._dev_class.values())


def test_broken_tee_same_seed_same_summary():
    again = Engine(load(SCENARIOS / "broken_tee.toml"))
    again.run()
    assert json.dumps(again.summary(), sort_keys=True) == json.dumps(engine("broken_tee").summary(), sort_keys=True)


def test_revoked_class_gets_no_new_contracts_and_leaves_the_books():
    eng = engine("revoked_class")
    r = eng.summary()["adversaries"]["revoked_class"]
    assert r["devices"] > 0 and r["exposure_cents_at_revocation"] > 0  # it had business before
    assert r["full_nodes_applied"] == r["full_nodes"] and r["apply_all_s"] < 5.0
    assert r["offers_left_in_a_book_after_applying_max"] == 0
    assert r["chunks_chosen_after_applying"] == 0
    assert r["class_cap_cents_at_end_max"] == 0
    assert r["books_with_class_offers_at_end"] == 0
    assert r["exposure_cents_at_end"] == 0  # held contracts ran out (contract_seconds), none were added
    at = eng.revoke_cfg["at"]
    later = [held for t, held in eng.m.class_exposure if t >= at + eng.sc["requests"]["contract_seconds"] + 1]
    assert later and max(later) == 0


def test_sweep_runs_a_tiny_grid_in_parallel_and_writes_its_table(tmp_path):
    import csv

    from simulations.__main__ import main

    out = tmp_path / "sweep"
    assert main(["sweep", str(SCENARIOS / "forger.toml"), "--grid", "adversaries.forger.nodes=1,2",
                 "--grid", "run.duration=15", "--workers", "2", "--out", str(out), "--quiet",
                 "--metric", "requests.ok_share", "--metric", "adversaries.forger.published"]) == 0
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["adversaries.forger.nodes"] for r in rows] == ["1", "2"]
    assert all(r["adversaries.forger.accepted_at_full_nodes"] == "0" for r in rows)
    assert int(rows[1]["adversaries.forger.published"]) > int(rows[0]["adversaries.forger.published"]) > 0
    md = (out / "sweep.md").read_text()
    assert "| run | adversaries.forger.nodes | run.duration |" in md and md.count("\n| 00") == 2
    assert (out / "sweep.png").stat().st_size > 0
    assert (out / "runs" / "001" / "summary.json").is_file()


def test_sweep_grid_errors_name_the_key(tmp_path):
    from simulations.scenario import ScenarioError
    from simulations.sweep import parse_grid, plan

    with pytest.raises(ScenarioError, match="^--grid"):
        parse_grid(["requests.rate"])
    with pytest.raises(ScenarioError, match="^requests.rat: unknown key"):
        plan(SCENARIOS / "forger.toml", parse_grid(["requests.rat=1,2"]))
    runs = plan(SCENARIOS / "forger.toml", parse_grid(["deposits.chunk_usd=50,100"]), seed=9)
    assert [sc["deposits"]["chunk_usd"] for _, sc in runs] == [[50], [100]]
    assert {sc["run"]["seed"] for _, sc in runs} == {9}


def test_broken_tee_report_has_the_isolation_plot(tmp_path):
    from simulations.__main__ import run

    out = run(SCENARIOS / "broken_tee.toml", out=tmp_path / "bt", quiet=True)
    assert (out / "time_to_isolate.png").stat().st_size > 0
    assert "time_to_isolate.png" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adversaries"]["broken_tee"]["devices"][0]["full_nodes_isolated"] == \
        summary["adversaries"]["broken_tee"]["devices"][0]["full_nodes"]
