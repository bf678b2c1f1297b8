"""The ``keyswitch`` command line (also ``python -m node``).

Each command group lives in its own module under ``node.cli`` and exposes
``register(app)``; COMMAND_MODULES lists them in help order.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from node.cli import state

class _Group(TyperGroup):
    """Keeps the command line after the global options in ``ctx.meta`` for ``_global`` (click clears it
    before the group's callback runs)."""

    def invoke(self, ctx):
        ctx.meta["keyswitch.rest"] = [*getattr(ctx, "_protected_args", []), *ctx.args]
        return super().invoke(ctx)


app = typer.Typer(
    cls=_Group,
    name="keyswitch",
    help="Keyswitch node: TEE-enforced contracts between holders of any crypto-asset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMAND_MODULES: tuple[str, ...] = (
    "node.cli.init",
    "node.cli.demo",
    "node.cli.run",
    "node.cli.dev",
    "node.cli.stop",
    "node.cli.bootstrap",
    "node.cli.ops",
    "node.cli.network",
    "node.cli.balance",
    "node.cli.logfile",
    "node.cli.dashboard",
    "node.cli.deposit",
    "node.cli.request",
    "node.cli.keyescrow",
    "node.cli.vault",
    "node.cli.attest",
    "node.cli.attest_verify",
    "node.cli.completion",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("keyswitch")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        typer.echo(f"keyswitch {v}")
        raise typer.Exit(0)


# Commands that need no initialised data directory: ``init`` makes one, ``dev`` and ``demo`` make their own,
# ``bootstrap`` keeps its own (--datadir of its own, default ~/.keyswitch-bootstrap), ``attest verify`` reads
# only the files it is given, ``completion`` prints a script.
NO_DATADIR_NEEDED = {("init",), ("dev",), ("demo",), ("bootstrap",), ("attest", "verify"), ("completion",)}


@app.callback()
def _global(
    ctx: typer.Context,
    datadir: Optional[Path] = typer.Option(
        None,
        "--datadir",
        help="Data directory (config.toml, identity, enclave state). Default: $KEYSWITCH_DATADIR or ~/.keyswitch",
        show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit"),
) -> None:
    if datadir is not None:
        state.set_datadir(datadir)
    state.datadir_given = datadir is not None
    cmd = ctx.invoked_subcommand
    if cmd is None or (cmd,) in NO_DATADIR_NEEDED:
        return
    rest = ctx.meta.get("keyswitch.rest", [])[1:]
    sub = next((a for a in rest if not a.startswith("-")), None)
    if (cmd, sub) in NO_DATADIR_NEEDED or any(a in ("-h", "--help") for a in rest):
        return
    state.require_initialised(cmd)


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
    from node.cli.completion import COMPLETE_VAR, enable

    _load()
    enable()  # a shell's completion call (_KEYSWITCH_COMPLETE, `keyswitch completion bash`) gets the candidates
    app(complete_var=COMPLETE_VAR)  # (the same variable when run as `python -m node`)
