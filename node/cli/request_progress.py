"""``keyswitch request --give``: a request to contracts, followed to its end with one line per provider.

The daemon runs it (``POST /v1/requests`` with ``give``, ``node.app.requestdesk``); this command shows its
report as it changes (``GET /v1/requests/{id}?version=N`` answers as soon as something changed): on a
terminal the lines are redrawn in place, elsewhere a provider's line is printed again whenever it changes.
``--json`` prints the final report only. Exit codes (the same for both): 0 everything obtained, 4 nothing
could be allocated, 5 contracts ran but less than asked for was obtained (``node.protocols.request_run``),
3 no daemon.
"""

from __future__ import annotations

import json

import typer

from node.cli import state
from node.cli.client import DaemonNotRunning, call

REPORT_WAIT = 20.0  # s the daemon holds a GET for news (node.api.app.REPORT_WAIT)


def provider_line(p: dict) -> str:
    """One provider's line: who, what was asked of it, what came, what was lost, why it ended."""
    got = f"{p['received']}/{p['chunks']} chunks, {p['received_cents'] / 100:.2f}/{p['usd_cents'] / 100:.2f} USD"
    line = f"{p['peer'][-12:]:>12}  ask {p['ask']}  {p['state']:<9}  {got}"
    if p["lost"]:
        line += f"  lost {p['lost']} of ours ({p['lost_cents'] / 100:.2f} USD)"
    if p.get("contract"):  # an option: its id, to exercise it (keyswitch approve --contract ID --message exercise)
        line += f"  option {p['contract']}"
    if p["reason"] and p["state"] not in ("done", "running", "proposing"):
        line += f"  {p['reason'][:120]}"
    return line


def summary_line(r: dict) -> str:
    what = "under option " if r.get("contract") == "option" else ""
    head = (f"{r['state']}: {r['obtained_cents'] / 100:.2f} of {r['target_cents'] / 100:.2f} USD of {r['asset']} "
            f"{what}from {len({p['peer'] for p in r['providers'] if p['received']})} provider(s), giving {r['give']}")
    if what:
        head += (f" ({r['premium_chunks']} chunk(s) premium per option, exercisable for {r['expiry_blocks']} blocks: "
                 "keyswitch approve --contract ID --message exercise)")
    if r["lost"]:
        head += f"; lost {r['lost']} chunk(s) of ours ({r['lost_cents'] / 100:.2f} USD) to withholders"
    if r["reason"]:
        head += f"; {r['reason']}"
    return head


def run(asset: str, usd: float, contract: str, give: str, as_json: bool, terms: dict | None = None) -> None:
    datadir = state.get_datadir()
    body = {"asset": asset, "usd": usd, "contract": contract, "give": give, **(terms or {})}
    try:
        if as_json:  # the final report only
            report = call(datadir, "POST", "/v1/requests", body={**body, "wait": True}, timeout=3600)
            typer.echo(json.dumps(report, indent=2, sort_keys=True))
            raise typer.Exit(report["exit_code"])
        report = call(datadir, "POST", "/v1/requests", body={**body, "wait": False}, timeout=60)
        follow(datadir, report)
    except DaemonNotRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    except typer.BadParameter as exc:  # the daemon refused the request itself, with the reason
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(4)


def follow(datadir, report: dict) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()
    printed: dict[tuple[str, int], str] = {}

    def render(r: dict) -> Text:
        lines = [f"request {r['request_id']}: {r['target_cents'] / 100:.2f} USD of {r['asset']} for {r['give']}, "
                 f"{r['state']} (ask {r['asks']})"] + [provider_line(p) for p in r["providers"]]
        return Text("\n".join(lines))

    def changed_lines(r: dict) -> None:
        for p in r["providers"]:
            line = provider_line(p)
            if printed.get((p["peer"], p["ask"])) != line:
                printed[(p["peer"], p["ask"])] = line
                typer.echo(line)

    live = Live(render(report), console=console, auto_refresh=False) if console.is_terminal else None
    if live is not None:
        live.start()
    try:
        while not report["done"]:
            report = call(datadir, "GET", f"/v1/requests/{report['request_id']}",
                          params={"version": report["version"]}, timeout=REPORT_WAIT + 30)
            if live is not None:
                live.update(render(report), refresh=True)
            else:
                changed_lines(report)
    finally:
        if live is not None:
            live.stop()
    if live is None:
        changed_lines(report)
    typer.echo(summary_line(report))
    raise typer.Exit(report["exit_code"])
