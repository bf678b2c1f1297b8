"""``keyswitch dashboard``: print a one-time link to the running daemon's local dashboard.

The link (valid ``node.api.dashboard.LINK_TTL`` seconds, one use) sets a session cookie in the browser that
opens it (HttpOnly, SameSite=Strict); see ``node.api.dashboard``.
"""

from __future__ import annotations

import typer

from node.cli import state
from node.cli.client import DaemonNotRunning, call


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        open_browser: bool = typer.Option(False, "--open", help="Also open the link in the default browser"),
    ) -> None:
        """Print a one-time link to this node's dashboard (open it in a browser on this machine)."""
        try:
            data = call(state.get_datadir(), "POST", "/v1/dashboard/link")
        except DaemonNotRunning as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(3)
        typer.echo(f"Open this link in a browser on this machine (one use, valid {data['expires_in']} s):")
        typer.echo(data["url"])
        if open_browser:
            import webbrowser

            webbrowser.open(data["url"])
