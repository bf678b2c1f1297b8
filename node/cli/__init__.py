"""The ``keyswitch`` command line (also ``python -m node``).

Each command group lives in its own module under ``node.cli`` and exposes
``register(app)``; COMMAND_MODULES lists them in help order.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import typer

from node.cli import state

app = typer.Typer(
    name="keyswitch",
    help="Keyswitch node: TEE-enforced contracts between holders of any crypto-asset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES: tuple[str, ...] = (
    "node.cli.init",
    "node.cli.demo",
    "node.cli.run",
    "node.cli.dev",
    "node.cli.ops",
    "node.cli.deposit",
    "node.cli.request",
    "node.cli.keyescrow",
    "node.cli.vault",
    "node.cli.attest",
    "node.cli.attest_verify",
)


@app.callback()
def _global(
    datadir: Optional[Path] = typer.Option(
        None,
        "--datadir",
        help="Data directory (config.toml, identity, enclave state). Default: $KEYSWITCH_DATADIR or ~/.keyswitch",
        show_default=False,
    ),
) -> None:
    if datadir is not None:
        state.set_datadir(datadir)


_loaded = False


def _load() -> None:
    """Register every command module on ``app`` (once: later calls do nothing)."""
    global _loaded
    if _loaded:
        return
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    _loaded = True


def main() -> None:
    _load()
    app()
