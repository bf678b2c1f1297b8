"""``python -m simulations run SCENARIO.toml [--seed N] [--quiet] [--out DIR] [--engine virtual|real] [--nodes N]``,
``python -m simulations bench [SCENARIO.toml] [--nodes 1000 10000] [--duration 60]`` and
``python -m simulations sweep SCENARIO.toml --grid KEY=V1,V2 [--grid ...] [--workers N]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path



def _start_run_folder(sc: dict, out: Path | None, suffix: str, *, flush: bool = False):
    """The run's folder with the resolved scenario and seed written, and its event log:
    (folder, open log file, ``log(record)``)."""
    import tomli_w

    outdir = Path(out) if out else Path("sim-runs") / f"{sc['run']['name']}-seed{sc['run']['seed']}{suffix}"
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "scenario.toml").write_text(tomli_w.dumps(sc))
    (outdir / "seed").write_text(f"{sc['run']['seed']}\n")
    log_f = open(outdir / "events.jsonl", "w")

    def log(rec: dict) -> None:
        log_f.write(json.dumps(rec, sort_keys=True) + "\n")
        if flush:
            log_f.flush()

    return outdir, log_f, log

def run(scenario: Path, *, seed: int | None = None, out: Path | None = None, quiet: bool = False,
        argv: list[str] | None = None) -> Path:
    """Run one scenario; returns the output folder."""
    import resource

    from simulations import report
    from simulations.engine import Engine
    from simulations.scenario import load

    sc = load(scenario, seed=seed)
    outdir, log_f, log = _start_run_folder(sc, out, "")

    wall0, cpu0 = time.perf_counter(), time.process_time()
    progress_ctx = None
    samples: list[list[float]] = []  # (simulated s, wall s) at the engine's sample points, for extrapolation

    def sample(t: float) -> None:
        samples.append([round(t, 3), round(time.perf_counter() - wall0, 3)])

    if quiet:
        progress = sample
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress_ctx = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                TextColumn("{task.completed:.0f}/{task.total:.0f} sim s"), TimeElapsedColumn())
        progress_ctx.start()
        task = progress_ctx.add_task(f"building {sc['run']['name']}", total=sc["run"]["duration"])

        def progress(t: float) -> None:
            sample(t)
            progress_ctx.update(task, completed=t, description=sc["run"]["name"])
    try:
        engine = Engine(sc, log=log, progress=progress)
        build_s = time.perf_counter() - wall0
        engine.run()
    finally:
        if progress_ctx is not None:
            progress_ctx.stop()
        log_f.close()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    summary = engine.summary()
    report.write_json(outdir / "summary.json", summary)
    man = report.manifest(sc, wall, engine.m.events, argv or sys.argv)
    man["build_seconds"] = round(build_s, 2)
    man["cpu_seconds"] = round(cpu, 2)
    man["wall_at_simulated_s"] = samples
    man["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report.write_json(outdir / "run.json", man)
    images = report.plots(engine, outdir)
    report.report(summary, man, outdir, images)
    if not quiet:
        r, g = summary["requests"], summary["gossip"]
        print(f"{summary['nodes']} nodes, {sc['run']['duration']:g} simulated s, {engine.m.events} events "
              f"in {wall:.1f} s wall (build {build_s:.1f} s, peak RSS {man['peak_rss_mib']} MiB)")
        print(f"sheets {g['sheets_published']}, gossip p50/p90/p99 {g['latency_s']}, requests ok "
              f"{r['ok']}/{r['decided']}, spam {summary['spam']['published']} published / "
              f"{summary['spam']['forwarded']} forwarded")
        print(f"report: {outdir / 'report.html'}")
    return outdir


def run_real(scenario: Path, *, seed: int | None = None, out: Path | None = None, quiet: bool = False,
             nodes: int | None = None, max_wall: float = 60.0, argv: list[str] | None = None) -> Path:
    """Run one scenario with real daemons on 127.0.0.1 (``simulations.real``); returns the output folder."""
    import resource

    from simulations import report
    from simulations.real import RealEngine, plots
    from simulations.scenario import ScenarioError, load

    sc = load(scenario, seed=seed)
    outdir, log_f, log = _start_run_folder(sc, out, "-real", flush=True)

    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    progress_ctx = None
    progress = None
    if not quiet:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress_ctx = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                TextColumn("{task.completed:.0f}/{task.total:.0f}"), TimeElapsedColumn())
        tasks: dict[str, int] = {}

        def progress(done: float, total: float, what: str) -> None:
            if what not in tasks:
                tasks[what] = progress_ctx.add_task(what, total=total)
            progress_ctx.update(tasks[what], completed=done)
    wall0 = time.perf_counter()
    try:
        try:
            engine = RealEngine(sc, nodes=nodes, max_wall=max_wall, log=log, progress=progress, say=say)
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None
        for note in engine.notes:
            say(f"note: {note}")
        if progress_ctx is not None:
            progress_ctx.start()
        engine.run()
    finally:
        if progress_ctx is not None:
            progress_ctx.stop()
        log_f.close()
    wall = time.perf_counter() - wall0
    summary = engine.summary()
    report.write_json(outdir / "summary.json", summary)
    man = report.manifest(sc, wall, summary["events"], argv or sys.argv)
    man.update(engine="real", daemons=engine.n, startup_seconds=round(engine.startup_s, 2),
               processes_rss_mib=engine.peak_rss_mib, daemon_cpu_seconds=engine.daemon_cpu_s,
               daemons_wall_seconds=engine.daemons_wall_s, cores=os.cpu_count(),
               driver_peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    report.write_json(outdir / "run.json", man)
    images = plots(engine, outdir)
    report.report(summary, man, outdir, images)
    if not quiet:
        r, g = summary["requests"], summary["gossip"]
        print(f"{engine.n} daemons + {engine.n_boot} bootstrap + ledger, {wall:.1f} s wall "
              f"(startup {engine.startup_s:.1f} s, processes {engine.peak_rss_mib} MiB RSS)")
        print(f"full books {g['full_books']}/{engine.n} after {g['book_latency_s']}, requests ok "
              f"{r['ok']}/{r['decided']} (not sent {r['not_sent']}), proposals/request "
              f"{r['proposals_per_request_mean']}, overshoot mean {r['overshoot_cents_mean']} cents")
        print(f"report: {outdir / 'report.html'}")
    return outdir


def bench_one(scenario: Path, *, duration: float, nodes: int | None = None, overrides: dict | None = None,
              name: str = "bench") -> dict:
    """Run ``scenario`` (at ``nodes`` nodes, for ``duration`` simulated seconds, with dotted-key
    ``overrides``) in a subprocess, so that its peak RSS is its own; its figures as one row."""
    import subprocess
    import tempfile

    import tomli_w

    from simulations.scenario import load
    from simulations.sweep import apply

    sc = load(scenario)
    if nodes is not None:
        sc["network"]["nodes"] = nodes
        sc["network"]["full_nodes"] = min(sc["network"]["full_nodes"], nodes - sc["network"]["bootstrap"])
        sc["requests"]["requesters"] = min(sc["requests"]["requesters"], sc["network"]["full_nodes"])
    for key, value in (overrides or {}).items():
        sc = apply(sc, key, value)
    sc["run"]["duration"] = duration
    sc["run"]["name"] = name
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.toml"
        path.write_text(tomli_w.dumps(sc))
        out = Path(tmp) / "out"
        subprocess.run([sys.executable, "-m", "simulations", "run", str(path), "--quiet", "--out", str(out)],
                       check=True)
        man = json.loads((out / "run.json").read_text())
        summ = json.loads((out / "summary.json").read_text())
    return {"nodes": summ["nodes"], "full_nodes": summ["full_nodes"], "simulated_s": duration,
            "wall_s": man["wall_seconds"], "cpu_s": man["cpu_seconds"], "build_s": man["build_seconds"],
            "events": summ["events"], "events_per_s": man["events_per_second"],
            "gossip_arrivals": summ["gossip"]["deliveries"], "requests_decided": summ["requests"]["decided"],
            "sheets": summ["gossip"]["sheets_published"], "peak_rss_mib": man["peak_rss_mib"],
            "samples": man["wall_at_simulated_s"]}


def extrapolate(row: dict, to_simulated_s: float) -> float:
    """Wall seconds ``row``'s run would take for ``to_simulated_s`` simulated seconds: its build and its
    first tenth as measured (the first sheets are published then), the rest at the rate of its later part."""
    pts = [(t, w) for t, w in row["samples"] if t > 0]
    t_end, w_end = row["simulated_s"], row["wall_s"]
    t0, w0 = next(((t, w) for t, w in pts if t >= 0.1 * t_end), (pts[0] if pts else (0.0, row["build_s"])))
    if t_end <= t0:
        return w_end * to_simulated_s / t_end
    return w0 + (w_end - w0) / (t_end - t0) * (to_simulated_s - t0)


def bench(scenario: Path, sizes: list[int], duration: float) -> list[dict]:
    """Run ``scenario`` at each node count (one subprocess each, so peak RSS is per run); print a table."""
    rows = [bench_one(scenario, duration=duration, nodes=n, name=f"bench-{n}") for n in sizes]
    print(f"{'nodes':>7} {'full':>5} {'sim s':>6} {'wall s':>7} {'cpu s':>7} {'events':>8} {'events/s':>9} "
          f"{'arrivals':>10} {'RSS MiB':>8}")
    for r in rows:
        print(f"{r['nodes']:>7} {r['full_nodes']:>5} {r['simulated_s']:>6g} {r['wall_s']:>7} {r['cpu_s']:>7} "
              f"{r['events']:>8} {r['events_per_s']:>9} {r['gossip_arrivals']:>10} {r['peak_rss_mib']:>8}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations", description="Keyswitch simulations")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one scenario (virtual engine, or real daemons with --engine real)")
    r.add_argument("scenario", type=Path)
    r.add_argument("--engine", choices=("virtual", "real"), default="virtual",
                   help="virtual: simulated nodes on a virtual clock; real: daemons on 127.0.0.1")
    r.add_argument("--nodes", type=int, default=None,
                   help="real engine: daemons to start (default min(scenario nodes - bootstrap, 20))")
    r.add_argument("--max-wall", type=float, default=60.0,
                   help="real engine: a longer scenario's schedule is replayed faster to fit these seconds")
    r.add_argument("--seed", type=int, default=None, help="overrides the scenario's run.seed")
    r.add_argument("--quiet", action="store_true", help="no progress bar or summary lines (CI)")
    r.add_argument("--out", type=Path, default=None, help="output folder (default sim-runs/NAME-seedN)")
    b = sub.add_parser("bench", help="events/s and peak memory of one scenario at several node counts")
    b.add_argument("scenario", type=Path, nargs="?",
                   default=Path(__file__).resolve().parent / "scenarios" / "large.toml")
    b.add_argument("--nodes", type=int, nargs="+", default=[1000, 10000])
    b.add_argument("--duration", type=float, default=60.0, help="simulated seconds per run")
    w = sub.add_parser("sweep", help="run a scenario over a grid of values in parallel; one table and plot")
    w.add_argument("scenario", type=Path)
    w.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="a dotted scenario key and its values, e.g. adversaries.sybil.nodes=0,10 (repeatable)")
    w.add_argument("--workers", type=int, default=None, help="parallel runs (default: all cores)")
    w.add_argument("--seed", type=int, default=None, help="the seed of every run (default: the file's)")
    w.add_argument("--out", type=Path, default=None, help="output folder (default sim-runs/sweep-NAME)")
    w.add_argument("--metric", action="append", default=None,
                   help="a summary.json dotted key to plot (repeatable; default requests.ok_share)")
    w.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    from simulations.engine import quiet_node_logs
    from simulations.scenario import ScenarioError

    try:
        with quiet_node_logs():
            return _main(args, argv)
    except ScenarioError as exc:
        print(f"scenario error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (every process started was stopped)", file=sys.stderr)
        return 130


def _main(args, argv: list[str] | None) -> int:
    """The command ``main`` parsed, run under ``quiet_node_logs``."""
    if args.cmd == "sweep":
        from simulations.sweep import sweep

        sweep(args.scenario, args.grid, workers=args.workers, seed=args.seed, out=args.out,
              metrics=args.metric, quiet=args.quiet)
        return 0
    if args.cmd == "bench":
        bench(args.scenario, args.nodes, args.duration)
        return 0
    if args.engine == "real":
        run_real(args.scenario, seed=args.seed, out=args.out, quiet=args.quiet, nodes=args.nodes,
                 max_wall=args.max_wall, argv=sys.argv if argv is None else argv)
    else:
        if args.nodes is not None:
            print("--nodes applies to --engine real only", file=sys.stderr)
            return 2
        run(args.scenario, seed=args.seed, out=args.out, quiet=args.quiet,
            argv=sys.argv if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
