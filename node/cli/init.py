"""``keyswitch init`` and ``keyswitch config show``."""

from __future__ import annotations

import json

import typer

from node import config as cfgmod
from node import identity
from node.cli import state


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(force: bool = typer.Option(False, "--force", help="Overwrite an existing config.toml")) -> None:
        """Create the data directory: a commented config.toml and the node identity key (0600)."""
        datadir = state.get_datadir()
        datadir.mkdir(parents=True, exist_ok=True)
        path = datadir / cfgmod.CONFIG_FILE
        if path.exists() and not force:
            typer.echo(f"{path} exists; keeping it (use --force to overwrite)")
        else:
            path.write_text(cfgmod.render_default())
            typer.echo(f"wrote {path}")
        try:
            pid = identity.peer_id(datadir)
        except identity.IdentityError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        typer.echo(f"identity {datadir / identity.IDENTITY_FILE} (mode 0600)")
        typer.echo(f"peer id {pid}")

    config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    def show(as_json: bool = typer.Option(False, "--json", help="Machine-readable output")) -> None:
        """Print the effective configuration and where each value came from."""
        try:
            cfg = cfgmod.load(state.get_datadir())
        except cfgmod.ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if as_json:
            typer.echo(json.dumps({"datadir": str(cfg.datadir), "values": cfg.values, "sources": cfg.sources}, indent=2))
            return
        typer.echo(f"# datadir {cfg.datadir}")
        for key, value in cfg.values.items():
            typer.echo(f"{key} = {json.dumps(value)}    # {cfg.sources[key]}")
