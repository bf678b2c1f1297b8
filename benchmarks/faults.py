"""Fault injection across whole nodes, many seeded trials (issue #22): ``python -m benchmarks.faults [--trials 50]
[--seed S] [--jobs J]``. Each trial is ``tests/faults/trial.py``'s: two daemons in a swap or three in a ring, one
fault at a point drawn from the protocol's states (SIGKILL of a party's daemon with its enclave then a restart,
every link between the daemons cut a while, or the ledger stopped a while), then the ledger's accounting. Prints
one row per trial as it ends, then a summary per fault kind (trials, passed, mean seconds) and per contract;
exit status 1 if any trial found a problem (its folder, with every log, is kept)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def row(res) -> str:
    verdict = "ok" if res.ok else "PROBLEM: " + "; ".join(res.problems)[:300]
    return (f"{res.seed:>6} {res.kind:<5} {res.label:<13} {res.point:<10} {res.pause:>5.1f} {res.at_fault:<34} "
            f"{'/'.join(res.states):<20} {'/'.join(map(str, res.received)):<6} {res.seconds:>5.0f}  {verdict}")


def summary(rows: list) -> list[str]:
    """Per fault kind and per contract: trials, passed, mean seconds."""
    out = [f"{'':<16} {'trials':>6} {'passed':>6} {'mean s':>7}"]
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r.fault, []).append(r)
    for r in rows:
        groups.setdefault(f"{r.kind} (all faults)", []).append(r)
    groups["all"] = rows
    for name, rs in groups.items():
        mean = sum(r.seconds for r in rs) / len(rs) if rs else 0.0
        out.append(f"{name:<16} {len(rs):>6} {sum(r.ok for r in rs):>6} {mean:>7.1f}")
    return out


def main(argv: list[str] | None = None) -> int:
    from tests.faults.trial import run_trial

    ap = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1, help="first seed; trial i uses seed + i")
    ap.add_argument("--jobs", type=int, default=1, help="trials run at once (each has its own ledger and daemons)")
    ap.add_argument("--keep", action="store_true", help="keep every trial's folder (logs), not only failed ones")
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="keyswitch-faults-"))
    t0 = time.monotonic()
    print(f"faults: {a.trials} trials from seed {a.seed}, {a.jobs} at a time, folders in {root} "
          f"(replay one: KS_FAULT_SEED=S pytest tests/faults)", flush=True)
    print(f"{'seed':>6} {'kind':<5} {'fault':<13} {'point':<10} {'down':>5} {'at the fault':<34} "
          f"{'end (each party)':<20} {'got':<6} {'secs':>5}  verdict", flush=True)
    rows = []

    def one(seed: int):
        res = run_trial(root / f"trial-{seed}", seed)
        print(row(res), flush=True)
        if res.ok and not a.keep:
            shutil.rmtree(root / f"trial-{seed}", ignore_errors=True)
        return res

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        rows = list(pool.map(one, range(a.seed, a.seed + a.trials)))
    bad = [r for r in rows if not r.ok]
    print(f"\n{len(rows)} trials in {time.monotonic() - t0:.0f} s: {len(rows) - len(bad)} passed, "
          f"{len(bad)} with problems")
    print("\n".join(summary(rows)))
    if bad:
        print("failed seeds: " + ", ".join(str(r.seed) for r in bad) + f" (their folders are kept in {root})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
