"""Sweeps: one scenario run over a grid of parameter values, in parallel, into one comparison table and plot.

``python -m simulations sweep SCENARIO.toml --grid adversaries.sybil.nodes=0,10,20
--grid requests.max_share_device=0.1,0.25 [--workers N] [--seed N] [--out DIR] [--metric KEY ...]``

Each ``--grid`` names a dotted key of the scenario file (``section.key`` or ``section.table.key``, e.g.
``adversaries.sybil.nodes``) and its values; the runs are the cartesian product, each a fresh scenario
validated like a file (an error names the key). A key whose default is a list (``deposits.chunk_usd``)
takes each value as a one-element list. Every run uses the same seed (the file's, or ``--seed``), so rows
differ only by the grid. Runs go to a ``multiprocessing`` pool (``spawn``; all cores by default); each
writes its ``summary.json`` under ``runs/NNN/``. The sweep writes ``sweep.csv``, ``sweep.md`` (the
same table) and ``sweep.png`` (one panel per ``--metric``, one bar per run).
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import os
import time
import tomllib
from pathlib import Path
from typing import Any

#: columns always in the table (dotted paths into summary.json; absent ones are left empty)
BASE_METRICS = ("requests.decided", "requests.ok", "requests.ok_share", "exposure.honest.peak_total_cents_max",
                "exposure.sybil.peak_total_cents_sum", "exposure.sybil.peak_per_client_cents_max",
                "exposure.cap_violations", "gossip.latency_s.p90", "spam.forwarded")
DEFAULT_PLOT_METRICS = ("requests.ok_share",)


def parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def parse_grid(specs: list[str]) -> list[tuple[str, list[Any]]]:
    from simulations.scenario import ScenarioError

    grid = []
    for spec in specs:
        key, sep, vals = spec.partition("=")
        key = key.strip()
        if not sep or not key or not vals.strip():
            raise ScenarioError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. adversaries.sybil.nodes=0,10)")
        if any(k == key for k, _ in grid):
            raise ScenarioError(f"--grid {key}: given twice")
        grid.append((key, [parse_value(v) for v in vals.split(",") if v.strip()]))
    return grid


def apply(raw: dict, key: str, value: Any) -> dict:
    """``raw`` with the dotted ``key`` set (tables created as needed); list-valued keys take ``[value]``."""
    from simulations.scenario import DEFAULTS, ScenarioError

    out = copy.deepcopy(raw)
    parts = key.split(".")
    if len(parts) < 2:
        raise ScenarioError(f"{key}: a grid key is section.key (e.g. requests.rate)")
    d = out
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ScenarioError(f"{key}: {p} is not a table")
        d = nxt
    default = DEFAULTS.get(parts[0], {})
    if isinstance(default, dict) and isinstance(default.get(parts[-1]), list) and not isinstance(value, list):
        value = [value]
    d[parts[-1]] = value
    return out


def plan(scenario: Path, grid: list[tuple[str, list[Any]]], seed: int | None = None) -> list[tuple[dict, dict]]:
    """The runs: (grid point, resolved scenario) per combination, validated before anything runs."""
    from simulations.scenario import ScenarioError, validate

    try:
        raw = tomllib.loads(Path(scenario).read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{scenario}: no such scenario file") from None
    runs = []
    keys = [k for k, _ in grid]
    for n, combo in enumerate(itertools.product(*[v for _, v in grid])):
        r = raw
        for k, v in zip(keys, combo):
            r = apply(r, k, v)
        try:
            sc = validate(r)
        except ScenarioError as exc:
            raise ScenarioError(f"{exc} (grid point {dict(zip(keys, combo))})") from None
        if seed is not None:
            sc["run"]["seed"] = seed
        sc["run"]["name"] = f"{sc['run']['name']}-{n:03d}"
        runs.append((dict(zip(keys, combo)), sc))
    return runs


def _get(d: dict, path: str) -> Any:
    for p in path.split("."):
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def headline(summary: dict) -> dict[str, Any]:
    """The table columns of one run: the base metrics and every scalar under ``adversaries``
    (a broken TEE's per-device rows reduced to their worst case)."""
    row = {m: _get(summary, m) for m in BASE_METRICS}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                row[prefix + k] = v
    adv = dict(summary.get("adversaries", {}))
    tee = adv.pop("broken_tee", None)
    walk(adv, "adversaries.")
    if tee is not None:
        devs = tee["devices"]
        row["adversaries.broken_tee.double_spends"] = tee["double_spends"]
        row["adversaries.broken_tee.cents_lost_by_clients"] = sum(d["cents_lost_by_clients"] for d in devs)
        iso = [d["isolate_all_s"] for d in devs if d["double_spends"]]
        row["adversaries.broken_tee.isolate_all_s_max"] = (None if not iso or None in iso else max(iso))
        row["adversaries.broken_tee.books_with_its_offers"] = sum(d["books_with_its_offers"] for d in devs)
    return row


def _run_one(args: tuple[int, dict, str]) -> dict:
    from simulations import report
    from simulations.engine import Engine, quiet_node_logs

    n, sc, outdir = args
    t = time.perf_counter()
    with quiet_node_logs():
        eng = Engine(sc)
        eng.run()
    summary = eng.summary()
    d = Path(outdir) / "runs" / f"{n:03d}"
    d.mkdir(parents=True, exist_ok=True)
    report.write_json(d / "summary.json", summary)
    return {"wall_s": round(time.perf_counter() - t, 2), **headline(summary)}


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def sweep(scenario: Path, grid_specs: list[str], *, workers: int | None = None, seed: int | None = None,
          out: Path | None = None, metrics: list[str] | None = None, quiet: bool = False) -> Path:
    """Run the grid; returns the output folder (``sweep.csv``, ``sweep.md``, ``sweep.png``, ``runs/``)."""
    import multiprocessing

    grid = parse_grid(grid_specs)
    runs = plan(scenario, grid, seed)
    base = runs[0][1]["run"]["name"].rsplit("-", 1)[0]
    outdir = Path(out) if out else Path("sim-runs") / f"sweep-{base}"
    outdir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(runs)))
    jobs = [(n, sc, str(outdir)) for n, (_, sc) in enumerate(runs)]
    t0 = time.perf_counter()
    if workers == 1:
        results = [_run_one(j) for j in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = []
            for r in pool.imap(_run_one, jobs):
                results.append(r)
                if not quiet:
                    print(f"  {len(results)}/{len(jobs)} runs done ({time.perf_counter() - t0:.0f} s)", flush=True)
    keys = [k for k, _ in grid]
    cols = ["run"] + keys + ["wall_s"] + list(dict.fromkeys(c for r in results for c in r if c != "wall_s"))
    rows = [{"run": f"{n:03d}", **point, **res} for n, ((point, _), res) in enumerate(zip(runs, results))]
    cols = [c for c in cols if c in keys or any(r.get(c) is not None for r in rows)]  # no all-empty columns
    with open(outdir / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    md = [f"# Sweep of {scenario} ({len(rows)} runs, seed {runs[0][1]['run']['seed']}, {workers} workers, "
          f"{time.perf_counter() - t0:.1f} s wall)", "",
          "Grid: " + "; ".join(f"`{k}` = {', '.join(map(str, v))}" for k, v in grid), "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    md += ["", "![sweep.png](sweep.png)", ""]
    (outdir / "sweep.md").write_text("\n".join(md))
    (outdir / "sweep.json").write_text(json.dumps({"grid": grid, "rows": rows}, indent=2, sort_keys=True) + "\n")
    _plot(rows, keys, list(metrics or DEFAULT_PLOT_METRICS), outdir / "sweep.png")
    if not quiet:
        print(f"{len(rows)} runs in {time.perf_counter() - t0:.1f} s; table: {outdir / 'sweep.md'}")
    return outdir


def _plot(rows: list[dict], keys: list[str], metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["\n".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in keys) for r in rows]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(7, 0.9 * len(rows) + 2), 2.8 * len(metrics)),
                             squeeze=False)
    for ax, m in zip(axes[:, 0], metrics):
        vals = [r.get(m) if isinstance(r.get(m), (int, float)) else float("nan") for r in rows]
        ax.bar(range(len(rows)), vals, color="tab:blue")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel(".".join(m.split(".")[-2:]), fontsize=8)
        ax.set_title(m, fontsize=8)
    fig.suptitle("Sweep: " + " x ".join(keys), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
