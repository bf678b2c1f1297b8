"""The soak (``benchmarks.soak``): its verdict on synthetic samples (a leak, descriptor growth, a stuck contract,
a book behind a sheet, a load that did not run each fail it), and a one-minute run of three real daemons."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import Sample, book_mismatches, ended, stuck_after, task_growth, verdict
from node.dev.localnet import timeout_factor

ROOT = Path(__file__).resolve().parents[1]
RAN = {"started": 10, "done": 9}
FACTOR = timeout_factor()


def steady(node="N0", n=20, rss=100_000, fds=40, step_rss=0, step_fds=0, stuck_at=None):
    """``n`` samples 10 s apart of one node; RSS and descriptors growing by ``step_*`` each sample."""
    return [Sample(10.0 * i, node, rss + step_rss * i, fds + step_fds * (i // 2), 1000, 50,
                   {"done": i}, [f"c{i}"] if stuck_at is not None and i >= stuck_at else [])
            for i in range(n)]


def test_a_steady_run_passes_and_every_fault_fails_it_with_its_reason():
    ok = steady("N0") + steady("N1", rss=120_000, fds=45)
    assert verdict(ok, warmup=40, mismatches=[], actions=RAN) == []
    # RSS noise within 10 % passes; a leak (1 % of the start per sample) fails, naming the node and the growth
    noisy = [Sample(s.t, s.node, s.rss_kb + (4000 if i % 2 else 0), s.fds, 0, 0) for i, s in enumerate(ok)]
    assert verdict(noisy, warmup=40, mismatches=[], actions=RAN) == []
    leak = verdict(ok + steady("N2", step_rss=1000), warmup=40, mismatches=[], actions=RAN)
    assert len(leak) == 1 and leak[0].startswith("N2: RSS grew") and "limit 10 %" in leak[0]
    # the same growth before the end of the warm-up only is not a leak
    early = [Sample(s.t, s.node, s.rss_kb * (2 if s.t < 40 else 1), s.fds, 0, 0) for s in steady("N3")]
    assert verdict(early, warmup=40, mismatches=[], actions=RAN) == []
    noise = [Sample(s.t, s.node, s.rss_kb, s.fds + (5 if s.t > 150 else 0), 0, 0) for s in steady("N4")]
    assert verdict(noise, warmup=40, mismatches=[], actions=RAN) == []  # a few connections more at the end
    fds = verdict(steady("N4", step_fds=2), warmup=40, mismatches=[], actions=RAN)
    assert len(fds) == 1 and fds[0].startswith("N4: open descriptors grew")
    stuck = verdict(steady("N5", stuck_at=15), warmup=40, mismatches=[], actions=RAN)
    assert len(stuck) == 1 and "5 contract(s) stuck" in stuck[0]
    book = verdict(ok, warmup=40, mismatches=["N1's book for N0: ..."], actions=RAN)
    assert book == ["book: N1's book for N0: ..."]
    idle = verdict(ok, warmup=40, mismatches=[], actions={"started": 10, "done": 4})
    assert len(idle) == 1 and idle[0].startswith("load: 4 of 10")
    # trio tasks: noise (API calls, streams of the moment) passes; a leak (4 % of the start per sample) fails
    jitter = [Sample(s.t, s.node, s.rss_kb, s.fds, 0, 50 + (6 if i % 2 else 0)) for i, s in enumerate(steady("N7"))]
    assert verdict(jitter, warmup=40, mismatches=[], actions=RAN) == []
    growing = [Sample(s.t, s.node, s.rss_kb, s.fds, 0, 50 + 2 * i) for i, s in enumerate(steady("N7"))]
    tasks = verdict(growing, warmup=40, mismatches=[], actions=RAN)
    assert len(tasks) == 1 and tasks[0].startswith("N7: trio tasks grew") and "limit 15 % + 10" in tasks[0], tasks
    short = verdict(steady("N6", n=3), warmup=15, mismatches=[], actions=RAN)
    assert len(short) == 1 and "1 sample(s) after" in short[0]


def test_task_growth_names_the_groups_that_grew_after_the_warm_up():
    def at(t, groups):
        return Sample(t, "N0", 1, 1, 0, sum(groups.values()), groups=groups)

    samples = [at(10, {"leaky": 9}), at(50, {"leaky": 2, "steady": 5}), at(90, {"leaky": 7, "steady": 5}),
               at(130, {"leaky": 12, "steady": 4, "new": 1})]
    assert task_growth(samples, warmup=40) == ["N0: leaky 2 -> 12, new 0 -> 1"]  # (the warm-up's 9 not counted)
    assert task_growth(samples[:2], warmup=40) == []  # one sample after the warm-up: nothing to compare


def test_book_mismatches_name_the_node_the_origin_and_what_differs():
    names = {"pa": "A", "pb": "B", "pc": "C"}
    sheets = {"pa": {"a1", "a2"}, "pb": {"b1"}, "pc": set()}
    good = {"A": {"pb": {"b1"}}, "B": {"pa": {"a1", "a2"}}, "C": {"pa": {"a1", "a2"}, "pb": {"b1"}}}
    assert book_mismatches(sheets, good, names) == []
    bad = {**good, "C": {"pa": {"a1", "a3"}, "pb": {"b1"}}, "B": {"pa": {"a1", "a2"}, "pc": {"c9"}}}
    assert book_mismatches(sheets, bad, names) == [
        # an origin whose last sheet offers nothing: any offer of it left in a book is stale
        "B's book for C: 1 address(es) not in its last sheet, 0 of the sheet missing",
        "C's book for A: 1 address(es) not in its last sheet, 1 of the sheet missing",
    ]


def test_a_contract_ends_with_its_outcome_and_is_stuck_only_past_its_rounds():
    assert not ended({"rounds": 2, "state": "done"}) and ended({"rounds": 2, "state": "done", "outcome": {}})
    assert ended({"state": "withheld"}) and not ended({"state": "running"})
    assert stuck_after(2) < stuck_after(5) and stuck_after(1) == stuck_after(2) >= 2 * 30


@pytest.mark.network
def test_a_one_minute_soak_of_three_daemons_samples_and_gives_a_verdict(tmp_path):
    argv = [sys.executable, "-m", "benchmarks.soak", "--minutes", "1", "--nodes", "3", "--every", "10", "--gap", "6",
            "--out", str(tmp_path), "--seed", "7"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text, err = proc.communicate(timeout=300 * FACTOR)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the soak stops its daemons on SIGTERM
        text, err = proc.communicate(timeout=60)
        raise AssertionError(f"the one-minute soak did not end in {300 * FACTOR:.0f} s:\n{text[-3000:]}{err[-3000:]}")
    assert proc.returncode in (0, 1) and "Traceback" not in err, err[-3000:] + text[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "soak.csv")))
    assert {r["node"] for r in rows} == {"N0", "N1", "N2"} and len(rows) >= 3 * 6
    assert all(int(r["rss_kb"]) > 10_000 and int(r["fds"]) > 5 and int(r["tasks"]) > 5 for r in rows), rows[:3]
    assert all(int(r["db_bytes"]) > 0 for r in rows)
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"
    done = int(re.search(r"'done': (\d+)", text).group(1))
    assert done >= 1, text  # at least one swap or request ran to its end
    v = re.search(r"verdict: (PASS|FAIL)", text).group(1)
    assert (v == "PASS") == (proc.returncode == 0), text
    assert v == "PASS", text
