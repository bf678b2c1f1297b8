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
