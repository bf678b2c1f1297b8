"""``keyswitch init`` and ``keyswitch config show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from node import config as cfgmod
from node import identity
from node.cli import state


def render(values: dict[str, Any] | None = None) -> str:
    """The commented default ``config.toml`` with ``values`` ({"section.name": value}) set in place."""
    text = cfgmod.render_default()
    if not values:
        return text
    known = {s.key for s in cfgmod.SETTINGS}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}")
    out, section = [], None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section and " = " in line and not line.startswith("#"):
            key = f"{section}.{line.split(' = ', 1)[0]}"
            if key in values:
                line = f"{line.split(' = ', 1)[0]} = {cfgmod._toml_value(values[key])}"
        out.append(line)
    return "\n".join(out) + "\n"


def initialise(datadir: Path, values: dict[str, Any] | None = None, *, force: bool = False) -> tuple[Path, bool, str]:
    """What ``keyswitch init`` does: the data directory, its config.toml (kept unless ``force``) and the node
    identity. Returns (config path, whether it was written, peer id). ``keyswitch dev`` and the test
    harnesses make their nodes' data directories with it."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / cfgmod.CONFIG_FILE
    wrote = force or not path.exists()
    if wrote:
        path.write_text(render(values))
    return path, wrote, identity.peer_id(datadir)


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(force: bool = typer.Option(False, "--force", help="Overwrite an existing config.toml")) -> None:
        """Create the data directory: a commented config.toml and the node identity key (0600)."""
        datadir = state.get_datadir()
        try:
            path, wrote, pid = initialise(datadir, force=force)
        except identity.IdentityError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        except OSError as exc:
            typer.echo(f"error: cannot create the data directory {datadir}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2)
        typer.echo(f"wrote {path}" if wrote else f"{path} exists; keeping it (use --force to overwrite)")
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
