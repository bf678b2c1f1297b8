"""Whole nodes killed, links cut and the ledger stopped mid-contract lose nothing (issue #22): a handful of seeded
trials of ``tests/faults/trial.py`` in ``make test`` (a swap and a ring, each fault kind); ``python -m
benchmarks.faults`` runs many. Each trial prints its seed; replay one with ``KS_FAULT_SEED=S`` (its own draws)."""

from __future__ import annotations

import os

import pytest

from tests.faults.trial import run_trial

pytestmark = pytest.mark.network

#: (seed, contract, fault): the point, the victim and the pause are the seed's own draws
CASES = [(11, "swap", "kill"), (12, "swap", "cut"), (13, "swap", "pause-ledger"), (7, "ring", "cut")]
if "KS_FAULT_SEED" in os.environ:
    CASES = [(int(os.environ["KS_FAULT_SEED"]), None, None)]


@pytest.mark.parametrize("seed,kind,fault", CASES)
def test_a_contract_survives_the_fault_and_every_chunk_is_accounted_for(tmp_path, seed, kind, fault):
    res = run_trial(tmp_path / "t", seed, kind=kind, fault=fault)
    print(f"[faults] seed={seed} {res}")
    assert res.ok, (f"seed {seed}: {res.kind}, {res.label} at {res.point} ({res.at_fault}), down {res.pause} s: "
                    f"{res.problems}")
    assert res.states and all(s in ("done", "withheld", "failed") for s in res.states), res
