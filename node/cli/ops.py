"""Operator commands that talk to a running daemon through its local API.

``keyswitch status|peers|offers|deposits|contracts|reputation`` read
``<datadir>/api.url`` and ``<datadir>/.cookie`` (both written by
``keyswitch run``), print a table (rich) or, with ``--json``, the raw answer.
``deposits`` also works without a daemon: it then reads the data directory's
deposit store, ledger and enclave itself, and says which source it used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from node.cli import state
from node.cli.client import API_URL_FILE, DaemonNotRunning, call


def _table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"[dim]no {title}[/dim]")
        return
    t = Table(title=title)
    cols = list(rows[0])
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(r.get(c, "")) for c in cols])
    console.print(t)


def _run(path: str, key: str | None, as_json: bool, title: str, params=None) -> None:
    try:
        data = call(state.get_datadir(), "GET", path, params=params)
    except DaemonNotRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    elif key is None:
        _table([{"key": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v} for k, v in data.items()], title)
    else:
        _table(data[key], title)


JSON = typer.Option(False, "--json", help="Print the API's JSON answer")


def peer_row(r: dict) -> dict:
    """One ``keyswitch peers`` row from a ``GET /v1/peers`` entry (score columns: issue #23)."""
    comps = r.get("score_components", {})
    return {"peer": r["peer"], "in_offer_mesh": r.get("in_offer_mesh", ""), "score": r.get("score", ""),
            "invalid(P4)": comps.get("p4_invalid", ""), "behaviour(P5)": comps.get("p5_behaviour", ""),
            "app(P6)": comps.get("p6_app", ""), "below": ",".join(r.get("below", [])) or "-",
            "publish_dropped": r.get("publish_dropped", ""), "graylist_dropped": r.get("graylist_dropped", "")}


def local_deposits(datadir: Path) -> tuple[dict, str]:
    """``GET /v1/deposits`` without a daemon: the deposit store, the ledger, and the enclave for key states
    (if the enclave cannot start, key states are "unknown" and the source says so)."""
    from node.cli.deposit import watch_ledger
    from node.deposits import DepositStore, deposit_status

    path = datadir / "deposits.sqlite"
    source = f"local deposit store {path} (no daemon running)"
    if not path.exists():
        return {"deposits": []}, source
    store = DepositStore(path)
    try:
        deps = store.all()
    finally:
        store.close()
    states: dict[bytes, str] = {}
    if deps:
        from node.tee.client import EnclaveUnavailable, SubprocessEnclave

        enc = SubprocessEnclave(datadir)
        try:
            enc.start()
            states = {k.pubkey: k.state for k in enc.list_keys()}
        except EnclaveUnavailable as exc:
            source += f"; key states unknown: {exc}"
        finally:
            enc.close()
    ledger, label = watch_ledger(datadir)
    try:
        rows = [deposit_status(d, ledger, states.get(d.pubkey, "unknown")) for d in deps]
    finally:
        if hasattr(ledger, "close"):
            ledger.close()
    return {"deposits": rows}, f"{source}, {label}"


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(as_json: bool = JSON) -> None:
        """Status of the running daemon."""
        _run("/v1/status", None, as_json, "status")

    @app.command("peers")
    def peers(as_json: bool = JSON) -> None:
        """Connected peers, with their gossipsub score, its main components and the messages dropped."""
        if as_json:
            _run("/v1/peers", "peers", as_json, "peers")
            return
        try:
            data = call(state.get_datadir(), "GET", "/v1/peers")
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        _table([peer_row(r) for r in data["peers"]], "peers")

    @app.command("offers")
    def offers(
        asset: Optional[str] = typer.Option(None, help="Only this asset"),
        limit: int = typer.Option(100, help="At most this many"),
        as_json: bool = JSON,
    ) -> None:
        """The offer book."""
        params = {"limit": limit} | ({"asset": asset} if asset else {})
        _run("/v1/offers", "offers", as_json, "offers", params)

    @app.command("deposits")
    def deposits(as_json: bool = JSON) -> None:
        """This node's deposits with their status (funded, confirmed(n), released, swept): from the running
        daemon, or without one from the data directory's deposit store, ledger and enclave."""
        datadir = state.get_datadir()
        try:
            data = call(datadir, "GET", "/v1/deposits")
            source = f"daemon API ({(datadir / API_URL_FILE).read_text().strip()})"
        except DaemonNotRunning:
            data, source = local_deposits(datadir)
        data["source"] = source
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"source: {source}", soft_wrap=True, highlight=False)
        if not data["deposits"]:
            console.print("[dim]no deposits[/dim]")
            return
        t = Table(title="deposits")
        t.add_column("status", no_wrap=True)
        t.add_column("asset", no_wrap=True)
        t.add_column("address", overflow="fold")
        t.add_column("amount", justify="right")
        t.add_column("USD", justify="right", no_wrap=True)
        t.add_column("key", no_wrap=True)
        for r in data["deposits"]:
            t.add_row(str(r.get("status", "")), r["asset"], r["address"], str(r["amount"]),
                      f"{r['usd_cents'] / 100:.2f}", str(r.get("key_state", "")))
        console.print(t)

    @app.command("contracts")
    def contracts(as_json: bool = JSON) -> None:
        """Contracts and their state."""
        _run("/v1/contracts", "contracts", as_json, "contracts")

    @app.command("reputation")
    def reputation(as_json: bool = JSON) -> None:
        """Local reputation of known devices."""
        _run("/v1/reputation", "devices", as_json, "reputation")
