"""Global CLI state set by the top-level callback (``--datadir``)."""

from __future__ import annotations

import os
from pathlib import Path


def default_datadir() -> Path:
    env = os.environ.get("KEYSWITCH_DATADIR")
    return Path(env).expanduser() if env else Path.home() / ".keyswitch"


datadir: Path = default_datadir()


def get_datadir() -> Path:
    return datadir


def set_datadir(path: Path) -> None:
    global datadir
    datadir = Path(path).expanduser()


datadir_given: bool = False  # --datadir was on the command line (else $KEYSWITCH_DATADIR or the default)


def require_initialised(command: str) -> None:
    """Refuse (exit 2, one line) a data directory ``keyswitch init`` never made: a mistyped --datadir must not
    silently become a new node with a new identity, enclave and ledger."""
    import typer

    from node.config import CONFIG_FILE

    d = get_datadir()
    if (d / CONFIG_FILE).is_file():
        return
    what = "does not exist" if not d.exists() else f"has no {CONFIG_FILE}"
    typer.echo(f"error: {d} is not a Keyswitch data directory ({what}); `keyswitch {command}` needs one: "
               f"create it with `keyswitch --datadir {d} init` (or check --datadir / $KEYSWITCH_DATADIR)", err=True)
    raise typer.Exit(2)
