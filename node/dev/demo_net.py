"""The network the demo's story runs on (``node.dev.demo``): ``LocalNet``, a dev ledger server, two bootstrap
nodes and ``keyswitch run`` daemons on 127.0.0.1 (anvil and litecoind too when installed), driven through each
daemon's local API; ``Story``, what the stages did, for the summary."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from node.dev.localnet import (
    ANVIL_BLOCK_TIME, LITECOIND_ASSET, find_anvil, find_litecoind, init_datadir, spawn, start_anvil,
    start_litecoind_network, stop_all, wait_for,
)


# ------------------------------------------------------------------ the network the story runs on
@dataclasses.dataclass
class Daemon:
    name: str
    datadir: Path
    proc: subprocess.Popen
    peer: str = ""
    url: str = ""
    headers: dict = dataclasses.field(default_factory=dict)
    broken: str = ""


class LocalNet:
    """A dev ledger server, two bootstrap nodes and ``keyswitch run`` daemons on 127.0.0.1, all on one
    ledger (a swap needs both sides on it), talking to each daemon through its local API. When anvil is
    installed (``find_anvil``; ``use_anvil``) it runs too and every daemon serves ETH-DEV from it
    (``ledger.evm_url``); when litecoind is (``find_litecoind``; ``use_litecoind``) one litecoind on regtest
    with a block every second serves LTC-REG to every daemon (``ledger.rpc_url``). Both are stopped with the
    rest, on failure too."""

    def __init__(self, console: Console, root: Path, names: list[str], *, broken: dict[str, str],
                 net: str = "demo", timeout: float = 120, use_anvil: bool = True, use_litecoind: bool = True) -> None:
        self.console, self.root, self.names, self.broken, self.net = console, root, names, broken, net
        self.timeout = timeout
        self.procs: list[subprocess.Popen] = []
        self.nodes: dict[str, Daemon] = {}
        self.bootnodes: list[str] = []
        self.evm_url = ""  # anvil's JSON-RPC URL when anvil serves ETH-DEV
        self.anvil = find_anvil() if use_anvil else None
        self.litecoind = find_litecoind() if use_litecoind else None
        self.ltc_url, self.ltc_cookie = "", Path()  # litecoind's JSON-RPC URL and cookie when it serves LTC-REG

    def __enter__(self) -> "LocalNet":
        try:
            self._start()
        except BaseException:
            stop_all(self.procs, timeout=15)
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop_all(self.procs, timeout=15)

    def _start(self) -> None:
        led_dir = self.root / "ledger"
        led_dir.mkdir(parents=True, exist_ok=True)
        led = spawn([sys.executable, "-m", "node.ledger.server", "serve", "--db", str(led_dir / "db.sqlite"),
                     "--block-interval", "0.5"], led_dir / "out.log")
        self.procs.append(led)
        if self.anvil:  # a real EVM node for ETH-DEV: transactions mined at once, an empty block every second
            evm_dir = self.root / "anvil"
            evm_dir.mkdir(exist_ok=True)
            proc, self.evm_url = start_anvil(self.anvil, evm_dir / "out.log", block_time=ANVIL_BLOCK_TIME)
            self.procs.append(proc)
        if self.litecoind:  # a real Bitcoin-family node for LTC-REG: a block every second, as anvil's
            started, self.ltc_url, self.ltc_cookie = start_litecoind_network(self.litecoind, self.root / "litecoind")
            self.procs.extend(started)
        for i in range(2):  # the second bootstrap node starts from the first
            d = self.root / f"boot{i}"
            d.mkdir(exist_ok=True)
            extra = [a for b in self.bootnodes for a in ("--bootnodes", b)]
            b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(d), "--net", self.net, *extra],
                      d / "out.log")
            self.procs.append(b)
            self.bootnodes.append(wait_for(d / "out.log", r"LISTEN (\S+)", b))
        self.ledger_url = wait_for(led_dir / "out.log", r"dev ledger listening on (\S+)", led)
        for name in self.names:
            d = self.root / name
            init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
            env = {"KEYSWITCH_LEDGER_URL": self.ledger_url}
            if self.evm_url:
                env.update(KEYSWITCH_LEDGER_EVM_URL=self.evm_url, KEYSWITCH_LEDGER_EVM_ASSET="ETH-DEV")
            if self.ltc_url:
                env.update(KEYSWITCH_LEDGER_RPC_URL=self.ltc_url, KEYSWITCH_LEDGER_RPC_COOKIE=str(self.ltc_cookie),
                           KEYSWITCH_LEDGER_RPC_ASSET=LITECOIND_ASSET)
            if name in self.broken:
                env["KEYSWITCH_TEE_BROKEN"] = self.broken[name]  # the explicit switch: tee.broken
            boots = [a for b in self.bootnodes for a in ("--bootnodes", b)]
            p = spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", self.net, *boots,
                       "--republish", "2"], d / "out.log", env=env)
            self.procs.append(p)
            self.nodes[name] = Daemon(name, d, p, broken=self.broken.get(name, ""))
        for n in self.nodes.values():
            n.peer = wait_for(n.datadir / "out.log", r"ready (\S+)", n.proc, timeout=self.timeout)
            n.url = (n.datadir / "api.url").read_text().strip()
            n.headers = {"Authorization": "Bearer " + (n.datadir / ".cookie").read_text().strip()}

    def get(self, name: str, path: str):
        import httpx

        n = self.nodes[name]
        return httpx.get(n.url + path, headers=n.headers, timeout=30).json()

    def post(self, name: str, path: str, body: dict):
        import httpx

        n = self.nodes[name]
        r = httpx.post(n.url + path, json=body, headers=n.headers, timeout=90)
        if r.status_code >= 400:
            raise RuntimeError(f"{name} {path}: {r.json().get('error', r.text)}")
        return r.json()

    def parallel(self, calls: list):
        """Run ``calls`` (zero-argument callables) at once; their results (or exceptions) in order."""
        from concurrent.futures import ThreadPoolExecutor

        def safe(fn):
            try:
                return fn()
            except Exception as exc:  # reported by the caller
                return exc

        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(safe, calls))

    def until(self, pred, what: str, timeout: float | None = None) -> None:
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            try:
                if pred():
                    return
            except Exception:  # a daemon busy or restarting its API: ask again
                pass
            time.sleep(0.3)
        raise RuntimeError(f"timed out: {what}")

    def name_of(self, peer: str) -> str:
        return next((n.name for n in self.nodes.values() if n.peer == peer), peer[:12] + "...")


@dataclasses.dataclass
class Story:
    """What the stages did, for the summary at the end."""

    deposits: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)  # name -> (asset, chunks)
    cheater: str = ""
    device: str = ""  # the cheater's device id (hex), as offer books and reputation tables name it
    victims: tuple[str, ...] = ()
    before: dict[str, dict] = dataclasses.field(default_factory=dict)  # node -> its view of the cheater, before
    runs: list[tuple[str, str, str, str, str]] = dataclasses.field(default_factory=list)  # language contracts
    utxo: str = "BTC-REG"  # alice's Bitcoin-like asset (swap, escrow, option): LTC-REG when litecoind serves it
