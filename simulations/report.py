"""Per-run outputs: manifest, summary, plots (matplotlib, Agg) and the Markdown/HTML report."""

from __future__ import annotations

import html
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from simulations.criteria import business_cents, check_criteria, kinds_of, verdict

PLOTS = ("requests_over_time.png", "gossip_latency.png", "exposure_per_device.png", "reputation_over_time.png",
         "losses_vs_insurance.png")
#: written when a broken TEE double-spent or a class was revoked
ISOLATION_PLOT = "time_to_isolate.png"


def isolation_curves(engine) -> list[tuple[str, list[float], int]]:
    """Per broken TEE that double-spent, and for a class revocation: seconds from the event to each full
    node isolating the device / applying the notice (nodes that never did are left out of the curve, so a
    curve below 1.0 means some full nodes never got there)."""
    m, out = engine.m, []
    full = [n for n in engine.nodes if n.full]
    for dev in sorted({bytes.fromhex(x["device"]) for x in m.double_spends}):
        t0 = min(x["at"] for x in m.double_spends if x["device"] == dev.hex())
        others = [n for n in full if n.device_id != dev]
        xs = [m.cheater_at[(dev, n.idx)] - t0 for n in others if (dev, n.idx) in m.cheater_at]
        if xs:
            out.append((f"broken TEE {dev.hex()[:8]} isolated ({len(xs)}/{len(others)})", xs, len(others)))
    at = getattr(engine, "revoked_at", None)
    if at is not None and m.revocation_at:
        xs = [t - at for t in m.revocation_at.values()]
        out.append((f"class {engine.revoke_cfg['device_class']} revoked ({len(xs)}/{len(full)})", xs, len(full)))
    return out


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


def save_figure(fig, path: Path, made: list[str] | None = None) -> None:
    """Lay out, write (100 dpi) and close a figure; note its file name in ``made``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    if made is not None:
        made.append(path.name)


def requests_plot(completed_over_time, path: Path, xlabel: str, title: str) -> None:
    """Requests decided and covered (cumulative) against time: (t, ok, decided) samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x[0] for x in completed_over_time]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(t, [x[2] for x in completed_over_time], label="decided")
    ax.plot(t, [x[1] for x in completed_over_time], label="ok (covered)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests (cumulative)")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


def plots(engine, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulations.engine import LATENCY_BINS

    made = []
    requests_plot(engine.completed_over_time, outdir / PLOTS[0], "simulated seconds", "Requests completed over time")
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
    save_figure(fig, outdir / PLOTS[1], made)
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
    save_figure(fig, outdir / PLOTS[2], made)
    # reputation over time (requesters' views), one line per kind of device
    r = engine.m.reputation_over_time
    colors = {"honest": "tab:blue", "sybil": "tab:red", "slanderer": "tab:purple", "withholder": "tab:orange",
              "broken_tee": "black"}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for kind in sorted({k for _, by in r for k in by}, key=lambda k: (k != "honest", k)):
        pts = [(t, by[kind]) for t, by in r if kind in by]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors.get(kind), label=f"{kind} devices")
    from node.risk.reputation import ACCEPT_THRESHOLD

    ax.axhline(ACCEPT_THRESHOLD, color="grey", ls=":", lw=1, label="acceptance threshold")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("mean score at the requesters")
    ax.set_title("Reputation of honest and malicious devices over time")
    ax.legend(fontsize=8)
    save_figure(fig, outdir / PLOTS[3], made)
    # honest clients' losses against the fees collected and the insurance pool
    f = getattr(engine.m, "fees_over_time", [])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if f:
        ts = [x[0] for x in f]
        ax.plot(ts, [x[1] / 100 for x in f], label="fees collected")
        ax.plot(ts, [x[2] / 100 for x in f], ls="--", label="insurance pool")
        ax.plot(ts, [x[3] / 100 for x in f], color="tab:red", label="honest clients' losses")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("USD (cumulative)")
    ax.set_title("Honest users' losses against fees / insurance collected")
    ax.legend(fontsize=8)
    save_figure(fig, outdir / PLOTS[4], made)
    # time to detect and isolate: share of full nodes that isolated a broken TEE / applied a class revocation
    curves = isolation_curves(engine)
    if curves:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for label, xs, total in curves:
            xs = sorted(xs)
            ax.step([0.0] + xs, [0.0] + [(k + 1) / total for k in range(len(xs))], where="post", label=label)
        ax.set_xlabel("seconds since the double spend / the notice")
        ax.set_ylabel("share of full nodes")
        ax.set_ylim(0, 1.05)
        ax.set_title("Time to detect and isolate")
        ax.legend(fontsize=8)
        save_figure(fig, outdir / ISOLATION_PLOT, made)
    return made


def _table(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "failure_reasons":
            rows += _table(v, f"{prefix}{k}.")
        else:
            rows.append((prefix + k, json.dumps(v, sort_keys=True)))
    return rows


# ------------------------------------------------------------------ the verdict
def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def striking_facts(summary: dict) -> list[str]:
    """What a reader must not miss, in sentences: adversaries' share of business and reputation against the
    honest devices', honest devices left without business, losses, cap violations, uncovered requests."""
    facts = []
    kinds = kinds_of(summary)
    b = business_cents(summary)
    total_b = sum(b.values())
    n_dev = sum(int(v.get("devices", 0)) for v in kinds.values())
    for k, v in kinds.items():
        if k == "honest" or not n_dev or not total_b or not v.get("devices"):
            continue
        dev_share, biz_share = v.get("devices", 0) / n_dev, b[k] / total_b
        word = "MORE than" if biz_share > dev_share else "less than"
        facts.append(f"{k} devices ({v.get('devices', 0)} of {n_dev}, {_pct(dev_share)} of devices) carried "
                     f"{_pct(biz_share)} of the business ({word} their share of devices)")
    by = (summary.get("reputation_at_requesters") or {}).get("by_kind") or {}
    if "honest" in by:
        for k, r in by.items():
            if k != "honest" and r is not None:
                rel = "HIGHER" if r > by["honest"] else "lower"
                facts.append(f"{k} devices ended with a {rel} mean reputation at the requesters ({r:.2f}) than "
                             f"honest devices ({by['honest']:.2f})")
    h = kinds.get("honest")
    if h and h.get("devices"):
        idle = h["devices"] - h.get("devices_used", 0)
        if idle:
            facts.append(f"{idle} of {h['devices']} honest devices got no business at all")
    lost = (summary.get("fees") or {}).get("honest_losses_cents", 0) or 0
    if lost:
        facts.append(f"honest clients lost ${lost / 100:,.2f}")
    cv = (summary.get("exposure") or {}).get("cap_violations", 0)
    if cv:
        facts.append(f"{cv} exposure cap violations")
    r = summary.get("requests") or {}
    if r.get("decided") and r.get("ok_share", 1) < 0.5:
        facts.append(f"only {_pct(r['ok_share'])} of requests were covered ({r.get('ok', 0)} of {r['decided']})")
    sp = summary.get("spam") or {}
    if sp.get("accepted"):
        facts.append(f"{sp['accepted']} spam messages were accepted")
    return facts


def _fmt(v) -> str:
    if v is None:
        return "not measured"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _criteria_of(outdir: Path) -> dict[str, float]:
    """The run's [criteria], from the resolved scenario.toml written next to the report."""
    import tomllib

    try:
        raw = tomllib.loads((outdir / "scenario.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return check_criteria(raw.get("criteria", {}))


def report(summary: dict, manifest: dict, outdir: Path, images: list[str],
           criteria: dict[str, float] | None = None) -> dict:
    """report.md and report.html: the verdict per criterion first, then the striking facts, then every metric
    and the plots. Returns ``{"passed": bool | None, "criteria": [...], "facts": [...]}`` (also in verdict.json)."""
    crit = _criteria_of(outdir) if criteria is None else criteria
    checks = verdict(summary, crit)
    facts = striking_facts(summary)
    failed = [c for c in checks if c["passed"] is False]
    unmeasured = [c for c in checks if c["passed"] is None]
    passed = None if not checks else (not failed and not unmeasured)
    head = ("no pass criteria in the scenario ([criteria])" if not checks else
            f"PASS: all {len(checks)} criteria met" if passed else
            f"FAIL: {len(failed)} of {len(checks)} criteria not met" + (f", {len(unmeasured)} not measured"
                                                                         if unmeasured else "")
            if failed else f"INCOMPLETE: {len(unmeasured)} of {len(checks)} criteria not measured")
    result = {"passed": passed, "headline": head, "criteria": checks, "facts": facts}
    write_json(outdir / "verdict.json", result)
    mark = {True: "pass", False: "FAIL", None: "not measured"}
    rows = _table(summary)
    title = f"Simulation report: {summary['scenario']} (seed {summary['seed']})"
    md = [f"# {title}", "", f"**Verdict: {head}**", ""]
    if checks:
        md += ["| criterion | bound | value | result |", "|---|---|---|---|"]
        md += [f"| `{c['criterion']}` ({c['what']}) | {'<=' if c['criterion'].endswith('_max') else '>='} "
               f"{_fmt(c['bound'])} | {_fmt(c['value'])} | {mark[c['passed']]} |" for c in checks]
        md.append("")
    if facts:
        md += ["## What stands out", ""] + [f"- {f}" for f in facts] + [""]
    md += ["## Run", "",
           f"Git revision `{manifest['git_revision']}`; {summary['nodes']} nodes, "
           f"{summary['simulated_seconds']} simulated seconds in {manifest['wall_seconds']} s wall "
           f"({manifest['events_per_second']} events/s).", "",
           "| metric | value |", "|---|---|"]
    md += [f"| `{k}` | {v} |" for k, v in rows]
    md += [""] + [f"![{img}]({img})" for img in images] + [""]
    (outdir / "report.md").write_text("\n".join(md))
    colour = {True: "#1d6b35", False: "#a11", None: "#7a5200"}
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p id='verdict' style='font-size:1.3em;font-weight:bold;color:{colour[passed]}'>Verdict: "
            f"{html.escape(head)}</p>"]
    if checks:
        body.append("<table border=1 cellpadding=3><tr><th>criterion</th><th>bound</th><th>value</th>"
                    "<th>result</th></tr>")
        body += [f"<tr><td><code>{html.escape(c['criterion'])}</code> {html.escape(c['what'])}</td>"
                 f"<td>{'&le;' if c['criterion'].endswith('_max') else '&ge;'} {_fmt(c['bound'])}</td>"
                 f"<td>{_fmt(c['value'])}</td><td style='color:{colour[c['passed']]}'><b>{mark[c['passed']]}</b>"
                 "</td></tr>" for c in checks]
        body.append("</table>")
    if facts:
        body += ["<h2>What stands out</h2>", "<ul>"] + [f"<li>{html.escape(f)}</li>" for f in facts] + ["</ul>"]
    body += ["<h2>Run</h2>",
             f"<p>Git revision <code>{html.escape(manifest['git_revision'])}</code>; {summary['nodes']} nodes, "
             f"{summary['simulated_seconds']} simulated seconds in {manifest['wall_seconds']} s wall.</p>",
             "<table border=1 cellpadding=3><tr><th>metric</th><th>value</th></tr>"]
    body += [f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>" for k, v in rows]
    body += ["</table>"] + [f'<p><img src="{html.escape(img)}" alt="{html.escape(img)}"></p>' for img in images]
    (outdir / "report.html").write_text("<!doctype html><html><head><meta charset='utf-8'><title>"
                                        + html.escape(title) + "</title></head><body>\n" + "\n".join(body)
                                        + "\n</body></html>\n")
    return result


def manifest(sc: dict, wall: float, events: int, argv: list[str]) -> dict:
    return {"seed": sc["run"]["seed"], "scenario": sc["run"]["name"], "git_revision": git_revision(),
            "versions": versions(), "argv": argv, "wall_seconds": round(wall, 2),
            "events_per_second": round(events / wall) if wall > 0 else None, "platform": sys.platform}
