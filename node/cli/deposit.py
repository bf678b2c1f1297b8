"""``keyswitch deposit``: fund deposit chunks, and ``keyswitch withdraw``: sweep one home.

With a daemon running, both go through its API (the daemon owns the
enclave); without one they act on the data directory directly. On the dev
ledger the funds come from its faucet, the stand-in for the owner's wallet.
"""

from __future__ import annotations

import json

import typer

from node.cli import state


def register(app: typer.Typer) -> None:
    @app.command("deposit")
    def deposit(
        asset: str = typer.Option("BTC-REG", help="Asset symbol (BTC-REG, LTC, DOGE, ETH-DEV, ...)"),
        chunks: int = typer.Option(1, min=1, max=1000, help="How many chunks"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    ) -> None:
        """Create deposit keys in the enclave, verify its quote over them, and only then fund one chunk
        (deposits.chunk_usd) to each address."""
        from node.cli.ops import DaemonNotRunning, call

        datadir = state.get_datadir()
        try:
            made = call(datadir, "POST", "/v1/deposits", body={"asset": asset, "chunks": chunks}, timeout=120)["deposits"]
        except DaemonNotRunning:
            made = _local(datadir, asset, chunks)
        if as_json:
            typer.echo(json.dumps(made, indent=2))
            return
        for d in made:
            typer.echo(f"{d['asset']} {d['address']}  {d['amount']} units = ${d['usd_cents'] / 100:.2f} "
                       f"at ${d['price']}  (tx {d['txid'][:16]}...)")


def _local(datadir, asset: str, chunks: int) -> list[dict]:
    import time

    from node import config as cfgmod
    from node.assets import UnknownAsset
    from node.deposits import DepositStore, make_deposits, open_ledger
    from node.tee.client import EnclaveUnavailable, SubprocessEnclave

    try:
        cfg = cfgmod.load(datadir)
    except cfgmod.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    try:
        enc = SubprocessEnclave(datadir)
        enc.start()
    except EnclaveUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    ledger, store = open_ledger(cfg), DepositStore(datadir / "deposits.sqlite")
    try:
        from node.identity import peer_id

        made = make_deposits(enc, ledger, store, asset=asset, chunks=chunks,
                             chunk_usd_cents=int(round(cfg["deposits.chunk_usd"] * 100)), now=time.time(),
                             net=cfg["network.net"], peer_id=peer_id(datadir))
    except (UnknownAsset, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    finally:
        enc.close()
        store.close()
        if hasattr(ledger, "close"):
            ledger.close()
    return [d.to_json() for d in made]
