"""``keyswitch stop``: stop the data directory's running daemon gracefully.

The local API has no stop endpoint, so this sends SIGTERM to the pid the daemon records in
``<datadir>/keyswitch.pid`` (``keyswitch run`` writes it under its ``.lock``), only while that lock is held
(a stale pid file may name an unrelated process), and waits until the daemon has let go of the lock.
"""

from __future__ import annotations

import os
import signal
import time

import typer

from node.cli import daemonlock, state


def register(app: typer.Typer) -> None:
    @app.command("stop")
    def stop(
        timeout: float = typer.Option(30.0, "--timeout", min=0.1, max=3600, metavar="SECONDS",
                                      help="How long to wait for the daemon to exit (exit code 4 if it has not)"),
    ) -> None:
        """Stop the running daemon of this data directory gracefully (SIGTERM to the pid it records)."""
        datadir = state.get_datadir()
        pid = daemonlock.running_pid(datadir)
        if pid is None:
            typer.echo(f"error: no daemon running for {datadir} (nothing holds {datadir / daemonlock.LOCK_FILE})",
                       err=True)
            raise typer.Exit(3)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            typer.echo(f"error: the daemon's pid {pid} ({datadir / daemonlock.PID_FILE}) is gone", err=True)
            raise typer.Exit(3)
        except PermissionError:
            typer.echo(f"error: not allowed to signal pid {pid} (another user's daemon?)", err=True)
            raise typer.Exit(3)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if daemonlock.running_pid(datadir) is None:
                typer.echo(f"stopped the daemon (pid {pid}) of {datadir}")
                return
            time.sleep(0.1)
        typer.echo(f"error: sent SIGTERM to pid {pid}, still running after {timeout:g} s; see its log", err=True)
        raise typer.Exit(4)
