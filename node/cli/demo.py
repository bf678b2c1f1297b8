"""``keyswitch demo``: the main job of ``make demo``, on the embedded defaults.

It grows with the project; each stage prints what it shows. Every stage runs
on real parts (a real enclave process, real signatures, real verification);
only the TEE is simulated, and it says so.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import typer

from node.cli import state


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        keep: bool = typer.Option(False, "--keep", help="Keep the demo data directory"),
        in_datadir: bool = typer.Option(False, "--in-datadir", help="Use --datadir instead of a temporary one"),
    ) -> None:
        """Run the end-to-end demonstration on the embedded defaults."""
        from node.dev.demo import run_demo

        if in_datadir:
            if not run_demo(state.get_datadir()):
                raise typer.Exit(1)
            return
        root = Path(tempfile.mkdtemp(prefix="keyswitch-demo-"))
        ok = False
        try:
            ok = run_demo(root)
        finally:
            if keep or not ok:  # a failed demo keeps its logs: the red lines name the folder
                typer.echo(f"demo data kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
        if not ok:
            raise typer.Exit(1)
