"""Run the functional tests N times under CPU load and count failures per test.

    python scripts/flakes.py [--rounds 5] [--load "CMD"] [--no-load] [--out DIR] [TEST PATHS...]

Each round is one ``pytest`` run of the given paths (default: ``tests/functional`` and
``tests/test_demo.py``), with ``KS_TIMEOUT_FACTOR`` as ``make test`` sets it (3, unless the
environment says otherwise). Beside the rounds a CPU-heavy job runs in a loop, niced (default: the
large simulation, ``python -m simulations run simulations/scenarios/large.toml --quiet``), so that
load-dependent failures show. Per round the JUnit XML report is kept in ``--out``; at the end a table
says, per test, how many rounds it ran, passed, failed (or errored) and was skipped, and the exit
status is 1 when any test failed in any round. Each round's pytest ``--basetemp`` is ``--out``/roundN-tmp,
so the daemons' data directories and logs of a failed test are kept there (pytest's default temporary
directories are shared by every pytest run of the user and pruned to the last three). The load job is started in its own process group and
stopped (that group only) when the rounds end, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TESTS = ["tests/functional", "tests/test_demo.py"]
DEFAULT_LOAD = f"{sys.executable} -m simulations run simulations/scenarios/large.toml --quiet"


def start_load(cmd: str) -> subprocess.Popen:
    """``cmd`` in a loop, niced, in a new process group (stopped with ``stop_load``)."""
    loop = f"while true; do nice -n 10 {cmd} > /dev/null 2>&1; done"
    return subprocess.Popen(["bash", "-c", loop], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_load(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group we started: the loop and its current job
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def parse_junit(path: Path) -> dict[str, tuple[str, str]]:
    """test id -> (outcome, first line of the failure message) from a pytest JUnit XML report."""
    out: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, msg = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                msg = (el.get("message") or el.text or "").strip().splitlines()[0][:160] if \
                    (el.get("message") or el.text) else ""
                break
        if outcome == "failed" or name not in out:  # (a setup error and a teardown error: the worse one)
            out[name] = (outcome, msg)
    return out


def where() -> str:
    """The commit the round runs on (with "+changes" when the work tree differs) and the load averages, so a
    table of rounds says what it measured and under which load (``/proc/loadavg``: 1, 5 and 15 minutes)."""
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return f"at {git.stdout.strip() or '?'}{'+changes' if dirty else ''}, load {load}"


def run_round(i: int, tests: list[str], out: Path, extra: list[str]) -> tuple[dict[str, tuple[str, str]], float, int]:
    xml = out / f"round{i}.xml"
    env = dict(os.environ)
    env.setdefault("KS_TIMEOUT_FACTOR", "3")
    t0 = time.monotonic()
    with open(out / f"round{i}.log", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                             f"--basetemp={out / f'round{i}-tmp'}", *extra, *tests],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return parse_junit(xml), time.monotonic() - t0, rc


def table(results: list[dict[str, tuple[str, str]]]) -> tuple[str, int]:
    """The per-test table and the number of failures over all rounds."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last_msg: dict[str, str] = {}
    for res in results:
        for name, (outcome, msg) in res.items():
            counts[name][outcome] += 1
            if outcome == "failed":
                last_msg[name] = msg
    width = max([len(n) for n in counts] + [4])
    lines = [f"{'test':<{width}}  runs  pass  fail  skip", "-" * (width + 24)]
    failures = 0
    for name in sorted(counts, key=lambda n: (-counts[n]["failed"], n)):
        c = counts[name]
        runs = c["passed"] + c["failed"] + c["skipped"]
        failures += c["failed"]
        lines.append(f"{name:<{width}}  {runs:>4}  {c['passed']:>4}  {c['failed']:>4}  {c['skipped']:>4}")
        if name in last_msg:
            lines.append(f"    last failure: {last_msg[name]}")
    lines.append(f"{len(results)} round(s), {len(counts)} test(s), {failures} failure(s)")
    return "\n".join(lines), failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tests", nargs="*", default=DEFAULT_TESTS, help="pytest paths (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=5, help="pytest runs (default 5)")
    ap.add_argument("--load", default=DEFAULT_LOAD, help="the CPU-heavy command run in a loop beside the tests")
    ap.add_argument("--no-load", action="store_true", help="run the rounds without the load job")
    ap.add_argument("--out", type=Path, default=None, help="where the JUnit reports and logs go (default: a temp dir)")
    ap.add_argument("--pytest-arg", action="append", default=[], help="extra pytest argument (repeatable)")
    a = ap.parse_args(argv)
    if not 1 <= a.rounds <= 1000:
        ap.error("--rounds must be between 1 and 1000")
    out = a.out or Path(tempfile.mkdtemp(prefix="keyswitch-flakes-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"flakes: {a.rounds} round(s) of {' '.join(a.tests)}; "
          f"load: {'none' if a.no_load else a.load}; reports in {out}", flush=True)
    load = None if a.no_load else start_load(a.load)
    results: list[dict[str, tuple[str, str]]] = []
    try:
        for i in range(1, a.rounds + 1):
            before = where()
            res, secs, rc = run_round(i, a.tests, out, a.pytest_arg)
            results.append(res)
            failed = sorted(n for n, (o, _) in res.items() if o == "failed")
            print(f"round {i}/{a.rounds}: {len(res)} tests, {len(failed)} failed, {secs:.0f} s (pytest exit {rc}); "
                  f"started {before}, ended {where()}"
                  + "".join(f"\n    FAILED {n}" for n in failed), flush=True)
            if not res:
                print(f"    no report: see {out / f'round{i}.log'}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the table covers the rounds that finished", flush=True)
    finally:
        stop_load(load)
    text, failures = table(results)
    print(text)
    (out / "summary.txt").write_text(text + "\n")
    return 1 if failures or not results or any(not r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
