"""``keyswitch bootstrap``: run a bootstrap node, the same program and options as ``python -m bootstrap``
(see bootstrap/__init__.py). Its data directory is its own (``--datadir`` after ``bootstrap``, default
$KEYSWITCH_BOOTSTRAP_DATADIR or ~/.keyswitch-bootstrap); a global ``keyswitch --datadir X bootstrap`` uses X."""

from __future__ import annotations

import typer

from node.cli import state


def register(app: typer.Typer) -> None:
    @app.command("bootstrap", add_help_option=False,
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def bootstrap(ctx: typer.Context) -> None:
        """Run a bootstrap node (peer discovery only, no offers); `keyswitch bootstrap -h` lists its options."""
        from bootstrap import main

        argv = list(ctx.args)
        if state.datadir_given and not any(a == "--datadir" or a.startswith("--datadir=") for a in argv):
            argv = ["--datadir", str(state.get_datadir()), *argv]
        main(argv, prog="keyswitch bootstrap")
