"""Fees and insurance against honest users' losses: collected per contract, losses from broken TEEs counted."""

import json
from pathlib import Path

import pytest

from simulations.__main__ import run
from simulations.scenario import ScenarioError, validate

SCEN = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"


def test_losses_and_fees_are_counted_and_plotted(tmp_path):
    out = run(SCEN / "broken_tee.toml", out=tmp_path / "bt", quiet=True)
    f = json.loads((out / "summary.json").read_text())["fees"]
    assert f["contracts"] > 0 and f["collected_cents"] > 0 and f["pool_cents"] == f["collected_cents"]
    assert f["honest_losses_cents"] > 0  # the broken TEE spent deposits its clients had been given
    assert 0 < f["losses_covered_share"] <= 1
    assert (out / "losses_vs_insurance.png").stat().st_size > 1000
    assert "losses_vs_insurance.png" in (out / "report.md").read_text()


def test_fee_keys_are_checked():
    with pytest.raises(ScenarioError, match="fees.contract_fee_bp"):
        validate({"fees": {"contract_fee_bp": -1}})
    with pytest.raises(ScenarioError, match="fees.insurance_share"):
        validate({"fees": {"insurance_share": 2}})
