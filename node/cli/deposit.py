"""``keyswitch deposit``: fund deposit chunks (and, with ``--wait N``, wait for N confirmations).

With a daemon running, it goes through its API (the daemon owns the
enclave); without one it acts on the data directory directly. On the dev
ledger the funds come from its faucet, the stand-in for the owner's wallet.
Waiting reads the ledger directly in both cases (``watch_ledger``).
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
        wait: int = typer.Option(0, "--wait", min=0, metavar="N",
                                 help="Then wait until every funding transaction has N confirmations"),
        timeout: float = typer.Option(600.0, "--timeout", min=0.001, metavar="SECONDS",
                                      help="Give up waiting after this long (exit code 4; the deposits stay made)"),
        block_interval: float = typer.Option(
            1.0, "--block-interval", min=0.001, metavar="SECONDS",
            help="Embedded dev ledger only (no ledger.url): it has no miner of its own, so while waiting this "
                 "command mines a block every SECONDS"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    ) -> None:
        """Create deposit keys in the enclave, verify its quote over them, and only then fund one chunk
        (deposits.chunk_usd) to each address; with --wait N, wait for N confirmations of each."""
        from node.cli.client import DaemonNotRunning, call

        datadir = state.get_datadir()
        try:
            made = call(datadir, "POST", "/v1/deposits", body={"asset": asset, "chunks": chunks}, timeout=120)["deposits"]
        except DaemonNotRunning:
            made = _local(datadir, asset, chunks)
        if wait:
            confs = _wait(datadir, made, wait, timeout, block_interval, quiet=as_json)
            for d in made:
                d["confirmations"] = confs[d["txid"]]
        if as_json:
            typer.echo(json.dumps(made, indent=2))
            return
        for d in made:
            conf = f", {d['confirmations']} confirmations" if wait else ""
            typer.echo(f"{d['asset']} {d['address']}  {d['amount']} units = ${d['usd_cents'] / 100:.2f} "
                       f"at ${d['price']}  (tx {d['txid'][:16]}...{conf})")


def watch_ledger(datadir, *, block_interval: float | None = None):
    """The ledger the wallet reads: ``ledger.url``'s server, or the embedded dev ledger in the data directory
    (opened beside a running daemon's, SQLite in WAL mode), mining a block every ``block_interval`` seconds
    of wall time while it is being read (the embedded one has no miner of its own). Returns (ledger, label)."""
    from node import config as cfgmod

    try:
        cfg = cfgmod.load(datadir)
    except cfgmod.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    led, label = _dev_ledger(datadir, cfg, block_interval)
    if not cfg["ledger.evm_url"] and not cfg["ledger.rpc_url"]:
        return led, label
    from node.ledger.base import LedgerError
    from node.ledger.router import with_bitcoind, with_evm

    try:
        routed = with_bitcoind(with_evm(led, cfg["ledger.evm_url"], cfg["ledger.evm_asset"]), cfg)
    except LedgerError as exc:
        led.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    on = [f"{cfg[f'ledger.{k}_asset']} on the {what} at {cfg[f'ledger.{k}_url']}"
          for k, what in (("evm", "EVM node"), ("rpc", "node")) if cfg[f"ledger.{k}_url"]]
    return routed, f"{label} ({'; '.join(on)})"


def _dev_ledger(datadir, cfg, block_interval: float | None):
    if cfg["ledger.url"]:
        from node.ledger.client import DevLedgerClient

        return DevLedgerClient(cfg["ledger.url"]), f"dev ledger at {cfg['ledger.url']}"
    from node.clock import SystemClock
    from node.ledger.devnet import DevLedger

    path = datadir / "ledger.sqlite"
    if block_interval is None:
        return DevLedger(path), f"embedded dev ledger {path}"
    return (DevLedger(path, clock=SystemClock(), block_interval=block_interval),
            f"embedded dev ledger {path}, a block every {block_interval:g} s while waiting")


def _wait(datadir, made: list[dict], wanted: int, timeout: float, block_interval: float, *, quiet: bool) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from node.app.deposits import ConfirmationTimeout, wait_confirmations
    from node.ledger.base import LedgerError

    ledger, label = watch_ledger(datadir, block_interval=block_interval)
    console = Console(stderr=True, quiet=quiet)
    console.print(f"waiting for {wanted} confirmation(s) of {len(made)} funding transaction(s) "
                  f"on the {label} (timeout {timeout:g} s)", soft_wrap=True)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    each = len(made) <= 10  # one bar per deposit for a few; one overall bar for many
    with progress:
        overall = progress.add_task(f"deposits with {wanted} confirmations", total=len(made))
        bars = {d["txid"]: progress.add_task(f"  {d['asset']} {d['address'][:14]}... confirmations",
                                             total=wanted) for d in made} if each else {}

        def show(confs: dict) -> None:
            progress.update(overall, completed=sum(c >= wanted for c in confs.values()))
            for txid, task in bars.items():
                progress.update(task, completed=min(confs[txid], wanted))

        try:
            return wait_confirmations(ledger, [(d["asset"], d["txid"]) for d in made], wanted, timeout=timeout,
                                      on_progress=show)
        except ConfirmationTimeout as exc:
            progress.stop()
            hint = "" if label.startswith("embedded") else " (is that ledger mining? `python -m node.ledger.server " \
                "serve` mines with --automine or --block-interval)"
            typer.echo(f"error: {exc}{hint}; the deposits are made and funded: see `keyswitch deposits`", err=True)
            raise typer.Exit(4)
        except LedgerError as exc:
            progress.stop()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        except KeyboardInterrupt:  # Ctrl-C: the deposits are made and funded all the same; say so
            progress.stop()
            made_ = ", ".join(f"{d['asset']} {d['address']} ({d['amount']} units, tx {d['txid'][:16]}...)"
                              for d in made)
            typer.echo(f"interrupted while waiting for {wanted} confirmation(s); {len(made)} deposit(s) are made "
                       f"and funded: {made_}; see `keyswitch --datadir {datadir} deposits`", err=True)
            raise typer.Exit(130)
        finally:
            if hasattr(ledger, "close"):
                ledger.close()


def _local(datadir, asset: str, chunks: int) -> list[dict]:
    import time

    from node import config as cfgmod
    from node.assets import UnknownAsset
    from node.app.deposits import DepositStore, make_deposits, open_ledger
    from node.tee.client import EnclaveUnavailable, SubprocessEnclave

    try:
        cfg = cfgmod.load(datadir)
        from node.assets.feeds import build_feed

        prices = build_feed(cfg, datadir=datadir)  # the node's prices.* feed, as the daemon prices deposits
    except cfgmod.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    prices.refresh(time.time())
    try:
        enc = SubprocessEnclave(datadir)
        enc.start()
    except EnclaveUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    from node.ledger.base import LedgerError

    try:
        ledger = open_ledger(cfg)
    except LedgerError as exc:
        enc.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    store = DepositStore(datadir / "deposits.sqlite")
    try:
        from node.identity import peer_id

        made = make_deposits(enc, ledger, store, asset=asset, chunks=chunks,
                             chunk_usd_cents=int(round(cfg["deposits.chunk_usd"] * 100)), now=time.time(),
                             net=cfg["network.net"], peer_id=peer_id(datadir), prices=prices)
    except (UnknownAsset, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    finally:
        enc.close()
        store.close()
        if hasattr(ledger, "close"):
            ledger.close()
    return [d.to_json() for d in made]
