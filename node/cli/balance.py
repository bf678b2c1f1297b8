"""``keyswitch balance``: where the funds this node claimed went (``GET /v1/balance``, ``node.app.balance``): per
asset, outcome and destination the amount in coin units and how many keys; each destination whole below."""

from __future__ import annotations

import typer

from node.cli.ops import JSON, answer, coin, new_table


def register(app: typer.Typer) -> None:
    @app.command("balance")
    def balance(as_json: bool = JSON) -> None:
        """Where claimed funds went: amounts per asset and destination (claimed and swept, kept, lost)."""
        data = answer("/v1/balance", as_json)
        if data is None:
            return
        totals = data.get("totals", [])
        made = new_table(totals, "where claimed funds went", "no keys received in contracts yet: nothing claimed")
        if made is None:
            return
        console, t = made
        for name in ("#", "asset", "outcome", "amount", "keys"):
            t.add_column(name, no_wrap=True, justify="right" if name in ("#", "amount", "keys") else "left")
        for i, r in enumerate(totals, 1):
            t.add_row(str(i), r["asset"], r["status"], coin(r["asset"], r["amount"]), str(r["keys"]))
        console.print(t)
        for i, r in enumerate(totals, 1):
            typer.echo(f"#{i} {'swept to ' if r['status'] == 'claimed' else ''}{r['destination']}")
        typer.echo("(each contract, key and sweep transaction: keyswitch balance --json)")
