"""scripts/flakes.py: the per-test table over rounds and what each round says about where it ran."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _flakes():
    spec = importlib.util.spec_from_file_location("flakes_script", ROOT / "scripts" / "flakes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_table_counts_failures_per_test_over_rounds_and_each_round_names_its_commit_and_load():
    f = _flakes()
    rounds = [{"t::a": ("passed", ""), "t::b": ("failed", "timed out: both contracts ending")},
              {"t::a": ("passed", ""), "t::b": ("passed", "")}]
    text, failures = f.table(rounds)
    assert failures == 1
    row = next(ln for ln in text.splitlines() if ln.startswith("t::b"))
    assert row.split()[1:] == ["2", "1", "1", "0"], row  # runs, pass, fail, skip
    assert "last failure: timed out: both contracts ending" in text
    assert re.fullmatch(r"at [0-9a-f]{7,}(\+changes)?, load \S+ \S+ \S+", f.where()), f.where()
