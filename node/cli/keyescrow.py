"""``keyswitch key-escrow`` (what this node holds for others, what it is the recovery node of, its recoveries)
and ``keyswitch recover --contract ID`` (as an owner's recovery node: bring its key-escrowed chunks home).
Through the running daemon's API (``GET /v1/escrow``, ``POST /v1/escrow/recover``); see node/contracts/desk/escrow.py."""

from __future__ import annotations

import json

import typer

from node.cli import state
from node.cli.client import DaemonNotRunning, call
from node.cli.ops import _table


def _call(method: str, path: str, body=None):
    try:
        return call(state.get_datadir(), method, path, body=body, timeout=60)
    except DaemonNotRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    except typer.BadParameter as exc:  # the daemon refused it, with the reason
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(4)


def register(app: typer.Typer) -> None:
    @app.command("key-escrow")
    def key_escrow(as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answer")) -> None:
        """Key escrow here: shares held for others, contracts this node is the recovery node of, recoveries."""
        data = _call("GET", "/v1/escrow")
        if as_json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        _table([{"contract": s["contract"][:16], "chunk": f"{s['party']}/{s['index']}", "state": s["state"],
                 "releasable": s["releasable"], "why": s["why"][:60]} for s in data["holding"]["shares"]
                if "contract" in s], "shares held for others")
        _table([{"contract": d["contract"][:16], "owner": d["owner"][-12:], "chunks": len(d["destinations"]),
                 "recover": "asked" if d["recover_asked"] else "-", "result": json.dumps(d["result"])[:60]}
                for d in data["recovery_node_of"]], "recovery node of")
        _table([{"contract": r["contract"][:16], "chunk": f"{r['party']}/{r['index']}", "state": r["state"],
                 "shares": f"{len(r['shares'])}/{r['k']}", "txid": (r.get("claim") or {}).get("txid", "")[:16]}
                for r in data["recoveries"]], "recoveries")

    @app.command("recover")
    def recover(contract: str = typer.Option(..., "--contract", help="The contract id (64 hex digits)")) -> None:
        """As the owner's recovery node: ask the holders for the shares of the owner's escrowed chunks (they
        answer once the contract refunds them), rebuild the keys here and sweep the chunks home."""
        typer.echo(json.dumps(_call("POST", "/v1/escrow/recover", {"contract": contract}), indent=2,
                              sort_keys=True))
