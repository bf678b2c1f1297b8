"""``keyswitch dev --nodes N``: a local network on 127.0.0.1 in one command.

Starts a dev ledger server, anvil (a real EVM node serving ETH-DEV, when it
is installed: ``make install`` puts it in ``.tools``; ``--no-anvil`` skips it),
litecoind (a real Bitcoin-family node on regtest serving LTC-REG, a block every second, when it is installed:
``make install`` installs Debian's package; ``--no-litecoind`` skips it), one bootstrap node and N daemons (``keyswitch run``), each in its own data
directory under ``--dir`` with a config.toml naming the ledger(s), the network and the bootstrap node
(rewritten on every start: the ledger's port changes), prints how to reach each one, and runs until Ctrl-C
or SIGTERM, then stops them all gracefully.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

from node.cli.init import initialise
from node.dev.localnet import (ANVIL_BLOCK_TIME, LITECOIND_ASSET, LITECOIND_BLOCK_TIME, find_anvil, find_litecoind, spawn,
                           start_anvil, start_litecoind_network, stop_all, wait_for)

def register(app: typer.Typer) -> None:
    @app.command("dev")
    def dev(
        nodes: int = typer.Option(4, "--nodes", min=1, max=32, help="How many nodes"),
        directory: Optional[Path] = typer.Option(None, "--dir", help="Where the data directories go (default: a new temp dir)"),
        net: str = typer.Option("dev", help="Network id"),
        block_interval: float = typer.Option(1.0, "--block-interval", min=0.05, help="Dev ledger block interval (s)"),
        anvil: bool = typer.Option(True, "--anvil/--no-anvil",
                                   help="Serve ETH-DEV from anvil (a real EVM node) when it is installed"),
        litecoind: bool = typer.Option(True, "--litecoind/--no-litecoind",
                                       help="Serve LTC-REG from litecoind (a real Bitcoin-family node) when it is installed"),
    ) -> None:
        """Start a dev ledger, a bootstrap node and N nodes on 127.0.0.1 for experimenting by hand."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        root = directory or Path(tempfile.mkdtemp(prefix="keyswitch-dev-"))
        root.mkdir(parents=True, exist_ok=True)
        procs: list[subprocess.Popen] = []
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            ldir = root / "ledger"
            ldir.mkdir(exist_ok=True)
            llog = ldir / "out.log"
            led = spawn([sys.executable, "-m", "node.ledger.server", "serve", "--db", str(ldir / "ledger.sqlite"),
                         "--block-interval", str(block_interval)], llog)
            procs.append(led)
            ledger_url = wait_for(llog, r"dev ledger listening on (\S+)", led)
            settings = {"ledger.url": ledger_url, "network.net": net}
            exe = find_anvil() if anvil else None
            evm_url = ""
            if exe:
                (root / "anvil").mkdir(exist_ok=True)
                evm, evm_url = start_anvil(exe, root / "anvil" / "out.log", block_time=ANVIL_BLOCK_TIME)
                procs.append(evm)
                settings.update({"ledger.evm_url": evm_url, "ledger.evm_asset": "ETH-DEV"})
            ltc_exe = find_litecoind() if litecoind else None
            ltc_url = ""
            if ltc_exe:
                started, ltc_url, cookie = start_litecoind_network(ltc_exe, root / "litecoind")
                procs.extend(started)
                settings.update({"ledger.rpc_url": ltc_url, "ledger.rpc_cookie": str(cookie),
                                 "ledger.rpc_asset": LITECOIND_ASSET})
            bdir = root / "bootstrap"
            bdir.mkdir(exist_ok=True)
            blog = bdir / "out.log"
            b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(bdir), "--net", net], blog)
            procs.append(b)
            boot = wait_for(blog, r"LISTEN (\S+)", b)
            settings["network.bootnodes"] = [boot]
            rows = []
            for i in range(nodes):
                d = root / f"node{i}"
                # each node's config.toml says which ledger, network and bootnode it uses, so every command
                # run by hand against it (deposit --wait, deposits, config show) reads what the daemon reads
                initialise(d, settings, force=True)
                log = d / "out.log"
                p = spawn([sys.executable, "-m", "node", "--datadir", str(d), "run"], log)
                procs.append(p)
                rows.append((d, log, p))
            t = Table(title=f"keyswitch dev: {nodes} nodes on 127.0.0.1 (net {net})")
            for c in ("node", "API", "peer id", "data directory"):
                t.add_column(c)
            for d, log, p in rows:
                url = wait_for(log, r"API listening on (\S+)", p)
                pid = wait_for(log, r"ready (\S+)", p)
                t.add_row(d.name, url, pid, str(d))
            console.print(f"dev ledger {ledger_url} (one block every {block_interval:g} s; shared by every node)")
            if evm_url:
                console.print(f"anvil {evm_url} serves ETH-DEV (a real EVM node; an empty block every "
                              f"{ANVIL_BLOCK_TIME:g} s)")
            elif anvil:
                console.print("ETH-DEV on the dev ledger: anvil is not installed (make install puts it in .tools)")
            if ltc_url:
                console.print(f"litecoind {ltc_url} serves {LITECOIND_ASSET} (a real Bitcoin-family node on regtest; "
                              f"a block every {LITECOIND_BLOCK_TIME:g} s; data in {root / 'litecoind'})")
            elif litecoind:
                console.print(f"{LITECOIND_ASSET} on the dev ledger: litecoind is not installed "
                              "(make install installs it: apt-get install litecoind)")
            console.print("the dev ledger serves " + ("the other assets" if evm_url or ltc_url else "every asset"))
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
            stop_all(procs)
            console.print(f"stopped; data in {root}")
