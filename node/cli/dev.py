"""``keyswitch dev --nodes N``: a local network on 127.0.0.1 in one command.

Starts one bootstrap node and N daemons (``keyswitch run``), each in its own
data directory under ``--dir``, prints how to reach each one, and runs until
Ctrl-C or SIGTERM, then stops them all gracefully. (The dev ledger joins this
command when the ledger layer lands.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

ROOT = Path(__file__).resolve().parents[2]


def _wait(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"{log.parent.name} exited with {proc.returncode}:\n{log.read_text()[-1500:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{log.parent.name}: no {pattern!r} within {timeout:.0f} s")


def register(app: typer.Typer) -> None:
    @app.command("dev")
    def dev(
        nodes: int = typer.Option(4, "--nodes", min=1, max=32, help="How many nodes"),
        directory: Optional[Path] = typer.Option(None, "--dir", help="Where the data directories go (default: a new temp dir)"),
        net: str = typer.Option("dev", help="Network id"),
    ) -> None:
        """Start a bootstrap node and N nodes on 127.0.0.1 for experimenting by hand."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        root = directory or Path(tempfile.mkdtemp(prefix="keyswitch-dev-"))
        root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        procs: list[subprocess.Popen] = []
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            bdir = root / "bootstrap"
            bdir.mkdir(exist_ok=True)
            blog = bdir / "out.log"
            b = subprocess.Popen([sys.executable, "-m", "bootstrap", "--datadir", str(bdir), "--net", net],
                                 stdout=open(blog, "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            procs.append(b)
            boot = _wait(blog, r"LISTEN (\S+)", b)
            rows = []
            for i in range(nodes):
                d = root / f"node{i}"
                d.mkdir(exist_ok=True)
                log = d / "out.log"
                p = subprocess.Popen([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", net,
                                      "--bootnodes", boot], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     env=env, cwd=ROOT)
                procs.append(p)
                rows.append((d, log, p))
            t = Table(title=f"keyswitch dev: {nodes} nodes on 127.0.0.1 (net {net})")
            for c in ("node", "API", "peer id", "data directory"):
                t.add_column(c)
            for d, log, p in rows:
                url = _wait(log, r"API listening on (\S+)", p)
                pid = _wait(log, r"ready (\S+)", p)
                t.add_row(d.name, url, pid, str(d))
            console.print(f"bootstrap {boot}")
            console.print(t)
            console.print(f"try: keyswitch --datadir {rows[0][0]} peers     (logs: <datadir>/out.log)")
            console.print("network up; Ctrl-C stops every node", highlight=False)
            while not stopping:
                time.sleep(0.2)
                dead = [p for p in procs if p.poll() is not None]
                if dead:
                    console.print(f"[red]a process exited ({dead[0].args[2:5]}); stopping[/red]")
                    break
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            console.print(f"stopped; data in {root}")
