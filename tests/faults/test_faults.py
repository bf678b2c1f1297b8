"""Whole nodes killed mid-contract lose nothing (issue #22): a few seeded trials of ``tests/faults/trial.py``
(one of each fault); ``python -m benchmarks.faults`` runs many. Each trial prints its seed (replay:
``KS_FAULT_SEED``)."""

from __future__ import annotations

import os

import pytest

from tests.faults.trial import FAULTS, run_trial

pytestmark = pytest.mark.network
SEEDS = [int(os.environ["KS_FAULT_SEED"])] if "KS_FAULT_SEED" in os.environ else [11, 12, 13]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_swap_survives_the_fault_and_every_chunk_is_accounted_for(tmp_path, fault):
    seed = SEEDS[FAULTS.index(fault) % len(SEEDS)]
    res = run_trial(tmp_path / "t", seed, fault=fault)
    print(f"[faults] seed={seed} {res}")
    assert res.ok, f"seed {seed} ({fault} after {res.delay} s, keys released A/B {res.at_fault}): {res.problems}"
    assert all(s in ("done", "withheld", "failed") for s in res.states), res
