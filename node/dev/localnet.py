"""Local processes on 127.0.0.1 for the demo and ``keyswitch dev``: spawn, wait for a line, stop all.

Each process writes to its own log file; callers wait for a readiness line
in it. ``stop_all`` sends SIGTERM to every process still running (newest
first), waits for each up to ``timeout`` seconds, then kills what is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def timeout_factor() -> float:
    """``KS_TIMEOUT_FACTOR`` (default 1): how much longer every wait for local processes may take on a slow
    or loaded machine (``make test`` sets 3). The one place it is read."""
    try:
        f = float(os.environ.get("KS_TIMEOUT_FACTOR", "1"))
    except ValueError:
        raise SystemExit(f"KS_TIMEOUT_FACTOR={os.environ['KS_TIMEOUT_FACTOR']!r} is not a number") from None
    return f if f > 0 else 1.0


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None, *,
          new_session: bool = False) -> subprocess.Popen:
    """The one way the dev tools and the tests start a local process: ``argv`` from the repository root, this
    checkout first on its ``PYTHONPATH``, unbuffered, stdout and stderr into ``log`` (never a pipe nobody
    reads, which would stall a chatty child), ``env`` on top of ours. ``new_session``: in a session (and
    process group) of its own, so ``os.killpg`` stops it with every process it started
    (and, with the kernel's autogroup scheduling, it gets its own share of the CPU, not a part of its parent's)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=new_session)


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """The first group of ``pattern`` once it appears in ``log``; RuntimeError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"{log.parent.name} exited with {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{log.parent.name}: no {pattern!r} in {log} within {timeout:.0f} s")


def stop_all(procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ anvil, a real EVM node, when installed
ANVIL_CHAIN_ID = 31337  # ETH-DEV's chain id (node.assets)
ANVIL_BLOCK_TIME = 1.0  # seconds between anvil's empty blocks (demo, keyswitch dev): ETH-DEV heights advance as the dev ledger's do


def find_anvil() -> str | None:
    """anvil as ``make test`` / ``make install`` installs it (``.tools/node_modules/.bin/anvil``), else on PATH."""
    import shutil

    local = ROOT / ".tools" / "node_modules" / ".bin" / "anvil"
    return str(local) if local.exists() else shutil.which("anvil")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_anvil(exe: str, log: Path, *, block_time: float | None = None, timeout: float = 30.0
                ) -> tuple[subprocess.Popen, str]:
    """anvil on a free 127.0.0.1 port, chain id ``ANVIL_CHAIN_ID``; returns (process, JSON-RPC URL) once it
    answers. Transactions are mined as they arrive; with ``block_time`` an empty block also comes every
    ``block_time`` seconds (``--mixed-mining``), so heights advance like the dev ledger's. The caller stops
    the process (``stop_all``); it is killed here if it never answers."""
    import httpx

    port = free_port()
    argv = [exe, "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(ANVIL_CHAIN_ID)]
    if block_time:
        argv += ["--mixed-mining", "--block-time", f"{block_time:g}"]
    proc = spawn(argv, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    stop_all([proc], timeout=5)
    raise RuntimeError(f"anvil ({exe}) did not answer on {url} within {timeout:.0f} s:\n"
                       f"{log.read_text(errors='replace')[-1500:]}")


def init_datadir(d: Path, settings: dict | None = None) -> str:
    """``keyswitch init`` for a local node's data directory (config.toml with ``settings``, identity); returns
    its peer id. Every command but ``init``, ``dev`` and ``demo`` refuses a data directory never initialised."""
    from node.cli.init import initialise

    return initialise(d, settings)[2]


# ------------------------------------------------------------------ litecoind, a real Bitcoin-family node, when installed
def find_litecoind() -> str | None:
    """``litecoind`` (Debian's package, which ``make install`` / ``make test`` install) on PATH."""
    import shutil

    return shutil.which("litecoind")


def start_litecoind(exe: str, datadir: Path, *, timeout: float = 60.0) -> tuple[subprocess.Popen, str, Path]:
    """litecoind on regtest in ``datadir``, RPC and P2P on free 127.0.0.1 ports, no outside peers, txindex on
    (``BitcoindLedger.confirmations`` reads any txid), ``-fallbackfee`` for its own (faucet) wallet. Returns
    (process, RPC URL, cookie file) once it answers RPC. The caller stops it (``stop_all``; litecoind shuts
    down on SIGTERM); it is stopped here if it never answers."""
    import httpx

    datadir.mkdir(parents=True, exist_ok=True)
    rpcport, port = free_port(), free_port()
    argv = [exe, "-regtest", f"-datadir={datadir}", "-server=1", "-listen=1", "-bind=127.0.0.1",
            f"-port={port}", "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", f"-rpcport={rpcport}",
            "-connect=0", "-dnsseed=0", "-discover=0", "-upnp=0", "-txindex=1", "-fallbackfee=0.0002",
            "-printtoconsole=1", "-disablewallet=0"]
    proc = spawn(argv, datadir / "out.log")
    url = f"http://127.0.0.1:{rpcport}"
    cookie = datadir / "regtest" / ".cookie"
    deadline = time.monotonic() + timeout * timeout_factor()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if cookie.exists():
            user, _, pw = cookie.read_text().strip().partition(":")
            try:
                r = httpx.post(url, json={"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []},
                               auth=(user, pw), timeout=2)
                if r.status_code == 200:
                    return proc, url, cookie
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    stop_all([proc], timeout=10)
    raise RuntimeError(f"litecoind ({exe}) did not answer on {url} within {timeout:.0f} s:\n"
                       f"{(datadir / 'out.log').read_text(errors='replace')[-1500:]}")


LITECOIND_BLOCK_TIME = 1.0  # seconds between litecoind's blocks (demo, keyswitch dev): as anvil's ANVIL_BLOCK_TIME
LITECOIND_ASSET = "LTC-REG"  # the asset a local litecoind serves (ledger.rpc_asset)


def start_litecoind_network(exe: str, datadir: Path, *, block_time: float = LITECOIND_BLOCK_TIME
                            ) -> tuple[list[subprocess.Popen], str, Path]:
    """One litecoind for a whole local network (the demo, ``keyswitch dev``): ``start_litecoind``, 101 blocks
    mined at once (a mature coinbase: the faucet wallet funds the first deposits without waiting), then a
    block every ``block_time`` seconds from ``node.dev.regtest_miner``. Returns ([litecoind, miner], RPC
    URL, cookie file); the caller stops both with the rest (``stop_all``: the miner first, being newer); on a
    failure here both are stopped before the error goes up."""
    import sys

    from node.ledger.base import LedgerError
    from node.ledger.bitcoind import BitcoindLedger

    proc, url, cookie = start_litecoind(exe, datadir)
    procs = [proc]
    try:
        led = BitcoindLedger(url, asset=LITECOIND_ASSET, cookie=cookie)
        try:
            led.mine(LITECOIND_ASSET, 101)
        except LedgerError as exc:
            raise RuntimeError(f"litecoind at {url}: {exc} (its log: {datadir / 'out.log'})") from None
        finally:
            led.close()
        log = datadir / "miner.log"
        miner = spawn([sys.executable, "-m", "node.dev.regtest_miner", "--url", url, "--cookie", str(cookie),
                       "--asset", LITECOIND_ASSET, "--interval", f"{block_time:g}"], log)
        procs.append(miner)
        wait_for(log, r"(mining) ", miner, timeout=30 * timeout_factor())
    except BaseException:
        stop_all(procs, timeout=30)
        raise
    return procs, url, cookie
