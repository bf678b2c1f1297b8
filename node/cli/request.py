"""``keyswitch request``: ask the network for chunks covering X USD of an asset.

Through the running daemon's API (``POST /v1/requests``): the daemon gossips a
signed request, peers' risk engines answer with proposals within their caps,
and this node's own engine chooses among them after the deadline
(``risk.request_deadline``).
"""

from __future__ import annotations

import json

import typer

from node.cli import state
from node.cli.ops import DaemonNotRunning, _table, call


def register(app: typer.Typer) -> None:
    @app.command("request")
    def request(
        asset: str = typer.Option(..., "--asset", help="Asset symbol, e.g. BTC-REG"),
        usd: float = typer.Option(..., "--usd", min=0.01, help="USD value wanted"),
        contract: str = typer.Option("swap", "--contract", help="Contract kind or terms hash"),
        as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answer"),
    ) -> None:
        """Request chunks worth USD of ASSET from the network's risk engines and show the choice."""
        try:
            data = call(state.get_datadir(), "POST", "/v1/requests",
                        body={"asset": asset, "usd": usd, "contract": contract}, timeout=60)
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        if not data["ok"]:
            typer.echo(f"no allocation: {data['reason']}", err=True)
            raise typer.Exit(4)
        typer.echo(f"{len(data['offers'])} chunks, {data['total_cents'] / 100:.2f} USD for {data['target_cents'] / 100:.2f} "
                   f"USD requested (overshoot {data['overshoot_cents'] / 100:.2f}); {data['proposals']} proposals, "
                   f"from {len(data['from_proposers'])} peers")
        _table([{"device": o["device"][:16], "owner": o["owner"][-12:], "usd": f"{o['usd_cents'] / 100:.2f}",
                 "address": o["address"]} for o in data["offers"]], "chosen chunks")
