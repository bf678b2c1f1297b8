"""The demonstration behind ``make demo`` (see ``node.cli.demo``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_demo(root: Path) -> None:
    console = Console()
    from node import config, identity

    datadir = root / "alice"
    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / config.CONFIG_FILE).write_text(config.render_default())
    cfg = config.load(datadir, env={})
    console.rule("[bold]1. A node's data directory")
    console.print(f"datadir {datadir}")
    console.print(f"network {cfg['network.net']}, peer id {identity.peer_id(datadir)}")
