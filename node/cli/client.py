"""The CLI's client for a running daemon's local API: ``<datadir>/api.url`` and ``<datadir>/.cookie``
(both written by ``keyswitch run``). Every command that talks to a daemon goes through ``call``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

API_URL_FILE = "api.url"


class DaemonNotRunning(Exception):
    pass


def call(datadir: Path, method: str, path: str, *, params=None, body=None, timeout: float = 10.0) -> Any:
    import httpx

    try:
        url = (datadir / API_URL_FILE).read_text().strip()
        cookie = (datadir / ".cookie").read_text().strip()
    except FileNotFoundError:
        raise DaemonNotRunning(f"no daemon running for {datadir} (start it with: keyswitch --datadir {datadir} run)")
    try:
        r = httpx.request(method, url + path, params=params, json=body, timeout=timeout,
                          headers={"Authorization": f"Bearer {cookie}"})
    except httpx.HTTPError as exc:
        raise DaemonNotRunning(f"daemon at {url} not answering ({exc.__class__.__name__}); is it running?")
    data = r.json()
    if r.status_code >= 400:
        raise typer.BadParameter(data.get("error", r.text))
    return data


def ask(datadir: Path, method: str, path: str, *, body=None, params=None, timeout: float = 10.0,
        refused_exit: int = 4) -> Any:
    """``call`` for a command: no daemon is one line and exit 3; the API's refusal (its one-line reason) is
    one line and exit ``refused_exit``."""
    try:
        return call(datadir, method, path, params=params, body=body, timeout=timeout)
    except DaemonNotRunning as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3)
    except typer.BadParameter as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(refused_exit)
