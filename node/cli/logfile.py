"""``keyswitch logs [-f] [-n N]``: the log file of this data directory's daemon (``log.file``, by default
``<datadir>/keyswitch.log``), its last N lines, and with ``-f`` the lines written after them as they come."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from node.cli import state

FOLLOW_STEP = 0.25  # s between looks at a followed file (as tail -f)


def tail_lines(path: Path, n: int, block: int = 65536) -> tuple[list[str], int]:
    """The last ``n`` lines of ``path`` (read backwards, a block at a time) and the file's size."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = end = f.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= n:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    lines = data.decode("utf-8", errors="replace").splitlines()
    return (lines[-n:] if n else []), size


def follow(path: Path, pos: int) -> None:
    """Print what is appended to ``path`` after byte ``pos`` until Ctrl-C; a file cut or replaced (logrotate)
    is read again from its start."""
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < pos:
            pos = 0
        if size > pos:
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read(size - pos)
            cut = chunk.rfind(b"\n") + 1  # whole lines only; the rest next time
            if cut:
                typer.echo(chunk[:cut].decode("utf-8", errors="replace"), nl=False)
                pos += cut
        time.sleep(FOLLOW_STEP)


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs(
        lines: int = typer.Option(50, "-n", "--lines", min=0, max=1_000_000, help="How many of the last lines"),
        follow_: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines (Ctrl-C stops)"),
    ) -> None:
        """The daemon's log (log.file; by default keyswitch.log in the data directory)."""
        from node import config

        datadir = state.get_datadir()
        try:
            path = config.load(datadir).log_file
        except config.ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if path is None:
            typer.echo(f"error: this node writes no log file (log.file is empty: it logs to stderr only); set "
                       f"log.file in {datadir / config.CONFIG_FILE}, or see journalctl when it runs under systemd",
                       err=True)
            raise typer.Exit(2)
        if not path.exists():
            typer.echo(f"error: no log at {path} yet (the node writes it once it runs: "
                       f"keyswitch --datadir {datadir} run)", err=True)
            raise typer.Exit(3)
        last, size = tail_lines(path, lines)
        for line in last:
            typer.echo(line)
        if follow_:
            try:
                follow(path, size)
            except KeyboardInterrupt:
                raise typer.Exit(0)
