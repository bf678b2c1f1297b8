"""Fault injection across whole nodes, many seeded trials (issue #22): ``python -m benchmarks.faults [--trials 50]
[--seed S]``. Each trial is ``tests/faults/trial.py``'s: two daemons in a swap, one fault (SIGKILL of the initiator
or the responder with its enclave, then a restart; or the ledger stopped for a while), then the ledger's
accounting. Prints one row per trial and the summary; exit status 1 if any trial found a problem."""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from tests.faults.trial import run_trial

    ap = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1, help="first seed; trial i uses seed + i")
    ap.add_argument("--keep", action="store_true", help="keep every trial's folder (logs), not only failed ones")
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="keyswitch-faults-"))
    print(f"faults: {a.trials} trials from seed {a.seed}, folders in {root}", flush=True)
    print(f"{'seed':>6} {'fault':<13} {'after s':>7} {'down s':>6} {'released A/B':>12} {'end A/B':<18} "
          f"{'claimed A>B/B>A':>15} {'secs':>5}  verdict", flush=True)
    rows = []
    for i in range(a.trials):
        seed = a.seed + i
        res = run_trial(root / f"trial-{seed}", seed)
        rows.append(res)
        verdict = "ok" if res.ok else "PROBLEM: " + "; ".join(res.problems)[:200]
        print(f"{seed:>6} {res.fault:<13} {res.delay:>7.2f} {res.pause:>6.1f} {str(res.at_fault):>12} "
              f"{'/'.join(res.states):<18} {str(res.given):>15} {res.seconds:>5.0f}  {verdict}", flush=True)
        if res.ok and not a.keep:
            import shutil

            shutil.rmtree(root / f"trial-{seed}", ignore_errors=True)
    bad = [r for r in rows if not r.ok]
    by_fault = collections.Counter(r.fault for r in rows)
    ends = collections.Counter("/".join(r.states) for r in rows)
    print(f"\n{len(rows)} trials: {len(rows) - len(bad)} ok, {len(bad)} with problems; faults {dict(by_fault)}; "
          f"ends {dict(ends)}")
    if bad:
        print("failed seeds (replay one: KS_FAULT_SEED=S pytest tests/faults): " + ", ".join(str(r.seed) for r in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
