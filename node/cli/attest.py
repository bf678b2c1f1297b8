"""The ``keyswitch attest`` command group, shared by several command modules.

``node.cli.vault`` adds ``attest quote``; the evidence verifier adds
``attest verify``. Each adds its command to ``attest_app``; ``register``
mounts the group once.
"""

from __future__ import annotations

import typer

attest_app = typer.Typer(help="Produce and verify attestation evidence (quotes).", no_args_is_help=True)
_mounted: set[int] = set()


def register(app: typer.Typer) -> None:
    if id(app) not in _mounted:
        app.add_typer(attest_app, name="attest")
        _mounted.add(id(app))
