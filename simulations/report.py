"""Per-run outputs: manifest, summary, plots (matplotlib, Agg) and the Markdown/HTML report."""

from __future__ import annotations

import html
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

PLOTS = ("requests_over_time.png", "gossip_latency.png", "exposure_per_device.png", "reputation_over_time.png")


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        rev = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("keyswitch", "numpy", "scipy", "matplotlib", "msgspec", "coincurve"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def plots(engine, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulations.engine import LATENCY_BINS

    made = []
    # requests completed over time
    t = [x[0] for x in engine.completed_over_time]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(t, [x[2] for x in engine.completed_over_time], label="decided")
    ax.plot(t, [x[1] for x in engine.completed_over_time], label="ok (covered)")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("requests (cumulative)")
    ax.set_title("Requests completed over time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(outdir / PLOTS[0], dpi=100)
    plt.close(fig)
    made.append(PLOTS[0])
    # gossip latency distribution (publish -> every node the sheet reached)
    h = engine.m.gossip_hist
    fig, ax = plt.subplots(figsize=(7, 3.5))
    edges = LATENCY_BINS[:-1]
    nz = np.flatnonzero(h)
    if len(nz):
        hi = nz[-1] + 2
        ax.bar(edges[:hi] * 1000, h[:hi], width=np.diff(LATENCY_BINS[:hi + 1]) * 1000, align="edge")
    ax.set_xlabel("ms from publish to arrival")
    ax.set_ylabel("deliveries")
    ax.set_title("Gossip latency of offer sheets (all nodes reached)")
    fig.tight_layout()
    fig.savefig(outdir / PLOTS[1], dpi=100)
    plt.close(fig)
    made.append(PLOTS[1])
    # exposure per device, honest vs sybil: across all clients, and the most one client held
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, table, what in ((axes[0], engine.m.exposure_peak, "peak exposure, USD (all clients)"),
                            (axes[1], engine.m.exposure_peak_per_client, "peak held by one client, USD")):
        for kind, color in (("honest", "tab:blue"), ("sybil", "tab:red")):
            devs = sorted((d for d, k in engine.device_kind.items() if k == kind), key=lambda d: -table.get(d, 0))
            vals = [table.get(d, 0) / 100 for d in devs]
            if vals:
                ax.plot(range(len(vals)), vals, "o", ms=3, color=color, label=f"{kind} ({len(vals)} devices)")
        ax.set_xlabel("device (sorted)")
        ax.set_ylabel(what)
        ax.legend(fontsize=8)
    sy = [engine.device_limit[d] / 100 for d, k in engine.device_kind.items() if k == "sybil"]
    if sy:
        axes[1].axhline(max(sy), color="tab:red", ls="--", lw=1, label="sybil class starting limit")
        axes[1].legend(fontsize=8)
    fig.suptitle("Exposure per device")
    fig.tight_layout()
    fig.savefig(outdir / PLOTS[2], dpi=100)
    plt.close(fig)
    made.append(PLOTS[2])
    # reputation over time (requesters' views)
    r = engine.m.reputation_over_time
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for col, kind, color in ((1, "honest", "tab:blue"), (2, "sybil", "tab:red")):
        pts = [(x[0], x[col]) for x in r if x[col] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, label=f"{kind} devices")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("mean score at the requesters")
    ax.set_title("Reputation over time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(outdir / PLOTS[3], dpi=100)
    plt.close(fig)
    made.append(PLOTS[3])
    return made


def _table(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "failure_reasons":
            rows += _table(v, f"{prefix}{k}.")
        else:
            rows.append((prefix + k, json.dumps(v, sort_keys=True)))
    return rows


def report(summary: dict, manifest: dict, outdir: Path, images: list[str]) -> None:
    rows = _table(summary)
    title = f"Simulation report: {summary['scenario']} (seed {summary['seed']})"
    md = [f"# {title}", "",
          f"Git revision `{manifest['git_revision']}`; {summary['nodes']} nodes, "
          f"{summary['simulated_seconds']} simulated seconds in {manifest['wall_seconds']} s wall "
          f"({manifest['events_per_second']} events/s).", "",
          "| metric | value |", "|---|---|"]
    md += [f"| `{k}` | {v} |" for k, v in rows]
    md += [""] + [f"![{img}]({img})" for img in images] + [""]
    (outdir / "report.md").write_text("\n".join(md))
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>Git revision <code>{html.escape(manifest['git_revision'])}</code>; {summary['nodes']} nodes, "
            f"{summary['simulated_seconds']} simulated seconds in {manifest['wall_seconds']} s wall.</p>",
            "<table border=1 cellpadding=3><tr><th>metric</th><th>value</th></tr>"]
    body += [f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>" for k, v in rows]
    body += ["</table>"] + [f'<p><img src="{html.escape(img)}" alt="{html.escape(img)}"></p>' for img in images]
    (outdir / "report.html").write_text("<!doctype html><html><head><meta charset='utf-8'><title>"
                                        + html.escape(title) + "</title></head><body>\n" + "\n".join(body)
                                        + "\n</body></html>\n")


def manifest(sc: dict, wall: float, events: int, argv: list[str]) -> dict:
    return {"seed": sc["run"]["seed"], "scenario": sc["run"]["name"], "git_revision": git_revision(),
            "versions": versions(), "argv": argv, "wall_seconds": round(wall, 2),
            "events_per_second": round(events / wall) if wall > 0 else None, "platform": sys.platform}
