"""``keyswitch run``: start the node daemon (see ``node.app.daemon``)."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from node.cli import state


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        net: Optional[str] = typer.Option(None, help="Network id"),
        listen: Optional[List[str]] = typer.Option(None, help="Multiaddr to listen on (repeatable)"),
        announce: Optional[List[str]] = typer.Option(None, help="Multiaddr to announce (repeatable)"),
        bootnodes: Optional[List[str]] = typer.Option(None, help="Bootnode multiaddr with /p2p/<id> (repeatable)"),
        bootnodes_file: Optional[str] = typer.Option(None, help="File with one bootnode multiaddr per line"),
        api_port: Optional[int] = typer.Option(None, help="Local API port on 127.0.0.1 (0 = any)"),
        metrics_port: Optional[int] = typer.Option(None, help="Prometheus /metrics port on 127.0.0.1"),
        log_level: Optional[str] = typer.Option(None, help="debug|info|warning|error"),
        log_format: Optional[str] = typer.Option(None, help="console|json"),
        log_file: Optional[str] = typer.Option(None, help="Also write logs here"),
        claim_policy: Optional[str] = typer.Option(None, "--claim-policy",
                                                   help="sweep|keep: a received key is swept to the owner at "
                                                        "once, or kept in the enclave and offered again"),
        republish: float = typer.Option(60.0, help="Seconds between re-publications of this node's offer sheet"),
    ) -> None:
        """Run the node: enclave, offer gossip, local API. Stops on Ctrl-C / SIGTERM."""
        from node import config as cfgmod
        from node import logs
        from node.app import daemon
        from node.app.stack import check_backend_ready, check_prices
        from node.cli import daemonlock

        boots = [b.strip() for arg in bootnodes for b in arg.split(",") if b.strip()] if bootnodes else None
        try:
            cfg = cfgmod.load(state.get_datadir(), overrides={
                "network.net": net, "network.listen": listen or None, "network.announce": announce or None,
                "network.bootnodes": boots, "network.bootnodes_file": bootnodes_file,
                "api.port": api_port, "api.metrics_port": metrics_port,
                "log.level": log_level, "log.format": log_format, "log.file": log_file,
                "claims.policy": claim_policy,
            })
            cfg.bootnodes  # reads and checks the bootnodes file now
            check_backend_ready(cfg["tee.backend"])  # a hardware backend on a machine without it
            check_prices(cfg)  # prices.*: an unreadable prices.file, before anything starts
        except (cfgmod.ConfigError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        datadir = state.get_datadir()
        try:
            daemonlock.acquire(datadir)  # one daemon per data directory; its pid for `keyswitch stop`
        except daemonlock.Refused as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        try:
            try:
                daemonlock.check_ports(cfg)
            except daemonlock.Refused as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2)
            logs.configure(level=cfg["log.level"], fmt=cfg["log.format"], file=cfg.log_file,
                           stream=sys.stderr)
            failed = ""
            try:
                daemon.main(cfg, republish=republish)
            except* OSError as eg:  # a port taken between the check and the bind: still one line
                failed = "; ".join(_oserror_line(e, cfg) for e in eg.exceptions)
            if failed:
                typer.echo(f"error: {failed}", err=True)
                raise typer.Exit(2)
        finally:
            daemonlock.release(datadir)


def _oserror_line(exc: BaseException, cfg) -> str:
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (f"{exc.strerror or exc} (network.listen {cfg['network.listen']}, api.port {cfg['api.port']}, "
                f"api.metrics_port {cfg['api.metrics_port']})")
    return str(exc)
