"""Simulation reports with a verdict (issue #21): each scenario states its pass criteria as keys ([criteria]);
the report opens with pass/fail per criterion and calls out the striking facts."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from simulations import report
from simulations.scenario import ScenarioError, validate

SCEN = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"


def summary(honest_used=4, sybil_rep=2.778, lost=0):
    return {"scenario": "t", "seed": 1, "nodes": 31, "simulated_seconds": 90.0,
            "exposure": {"cap_violations": 0,
                         "honest": {"devices": 12, "devices_used": honest_used, "peak_total_cents_sum": 64661},
                         "sybil": {"devices": 6, "devices_used": 6, "peak_total_cents_sum": 79793}},
            "fees": {"honest_losses_cents": lost},
            "reputation_at_requesters": {"by_kind": {"honest": 0.97, "sybil": sybil_rep}},
            "requests": {"decided": 24, "ok": 8, "ok_share": 0.3333}, "spam": {"accepted": 0},
            "gossip": {"coverage_mean": 0.97, "latency_s": {"p99": 0.1}, "verdict_mismatch": 0}}


MAN = {"git_revision": "x", "wall_seconds": 1.0, "events_per_second": 1}


def test_every_scenario_states_its_criteria_as_keys():
    for f in sorted(SCEN.glob("*.toml")):
        raw = tomllib.loads(f.read_text())
        assert raw.get("criteria"), f"{f.name}: no [criteria] table"
        assert validate(raw)["criteria"] == {k: float(v) for k, v in raw["criteria"].items()}, f.name


def test_unknown_or_non_finite_criterion_is_refused_with_the_key():
    raw = tomllib.loads((SCEN / "smoke.toml").read_text())
    with pytest.raises(ScenarioError, match="criteria.honest_loss_shar: unknown criterion"):
        validate(dict(raw, criteria={"honest_loss_shar": 0.01}))
    with pytest.raises(ScenarioError, match="criteria.honest_loss_share_max: expected a finite number"):
        validate(dict(raw, criteria={"honest_loss_share_max": float("nan")}))


def test_report_opens_with_the_verdict_and_calls_out_the_sybils(tmp_path):
    crit = {"honest_loss_share_max": 0.01, "adversary_business_share_max": 0.5,
            "adversary_reputation_margin_max": 0.0, "honest_devices_used_share_min": 0.5}
    res = report.report(summary(), MAN, tmp_path, [], criteria=crit)
    assert res["passed"] is False
    by = {c["criterion"]: c for c in res["criteria"]}
    assert by["honest_loss_share_max"]["passed"] is True
    assert by["adversary_business_share_max"]["passed"] is False  # 79793 / 144454 = 0.55
    assert abs(by["adversary_business_share_max"]["value"] - 79793 / 144454) < 1e-9
    assert by["adversary_reputation_margin_max"]["passed"] is False
    assert by["honest_devices_used_share_min"]["passed"] is False
    md = (tmp_path / "report.md").read_text().splitlines()
    assert md[2].startswith("**Verdict: FAIL: 3 of 4 criteria not met"), md[:4]
    text = "\n".join(md)
    assert text.index("Verdict") < text.index("What stands out") < text.index("| metric | value |")
    assert "sybil devices (6 of 18, 33 % of devices) carried 55 % of the business (MORE than" in text
    assert "sybil devices ended with a HIGHER mean reputation at the requesters (2.78) than honest devices (0.97)" \
        in text
    assert "8 of 12 honest devices got no business at all" in text
    html = (tmp_path / "report.html").read_text()
    assert html.index("Verdict: FAIL") < html.index("What stands out") < html.index("<th>metric</th>")
    assert json.loads((tmp_path / "verdict.json").read_text())["passed"] is False


def test_a_good_run_passes_and_says_so(tmp_path):
    res = report.report(summary(honest_used=12, sybil_rep=-5.0), MAN, tmp_path, [],
                        criteria={"honest_devices_used_share_min": 0.9, "adversary_reputation_margin_max": 0.0})
    assert res["passed"] is True
    assert "**Verdict: PASS: all 2 criteria met**" in (tmp_path / "report.md").read_text()
    assert "lower mean reputation" in (tmp_path / "report.md").read_text()


def test_smoke_run_report_has_a_verdict(tmp_path):
    from simulations.__main__ import run

    run(SCEN / "smoke.toml", out=tmp_path / "smoke", quiet=True)
    md = (tmp_path / "smoke" / "report.md").read_text()
    v = json.loads((tmp_path / "smoke" / "verdict.json").read_text())
    assert v["criteria"] and {c["criterion"] for c in v["criteria"]} == set(
        tomllib.loads((SCEN / "smoke.toml").read_text())["criteria"])
    assert md.splitlines()[2].startswith("**Verdict: ")
    assert any("sybil devices" in f for f in v["facts"]), v["facts"]
