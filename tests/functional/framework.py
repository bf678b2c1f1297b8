"""A multi-process functional test harness in the style of Bitcoin Core's.

``Network(tmpdir)`` starts real node processes (``python -m node.runtime``)
and bootstrap processes (``python -m bootstrap``) on 127.0.0.1, each with its
own data directory and log file. Ports: every process listens on port 0 and
reports the port the OS picked (``LISTEN`` line in its log), so there is no
race for "free" ports. Nodes write a JSON status file a few times a second;
tests wait on conditions over those files with ``wait_until`` (timeouts are
multiplied by ``KS_TIMEOUT_FACTOR``, default 1, for slow machines).

The harness prints its random seed (``KS_SEED`` to replay), and on failure
``close(failed=True)`` prints the tail of every process's log. Every process
is terminated (SIGTERM, then SIGKILL) when the network closes, so a test
stops by itself.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from node.dev.localnet import spawn, timeout_factor, wait_for

PY = sys.executable
TIMEOUT_FACTOR = FACTOR = timeout_factor()


class HarnessError(AssertionError):
    pass


@dataclass
class Proc:
    name: str
    datadir: Path
    argv: list[str]
    kind: str  # "node" | "bootstrap"
    popen: subprocess.Popen | None = None
    log_path: Path = field(default=None)  # type: ignore[assignment]
    status_path: Path = field(default=None)  # type: ignore[assignment]
    addr: str = ""
    peer_id: str = ""
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.datadir / f"process-{self.starts}.log"
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.status_path and self.status_path.exists():
            self.status_path.unlink()
        self.popen = spawn(self.argv, self.log_path, new_session=True)
        self.addr = ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def poll_ready(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            raise HarnessError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_text()[-3000:]}")
        for line in self.log_text().splitlines():
            if line.startswith("LISTEN ") and not self.addr:
                self.addr = line.split(" ", 1)[1].strip()
            if line.startswith("ready "):
                self.peer_id = line.split(" ", 1)[1].strip()
                return bool(self.addr)
        return False

    def status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Graceful: SIGTERM, wait, SIGKILL if it does not exit."""
        if not self.running():
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(5)

    def kill(self) -> None:
        """Abrupt: SIGKILL (a crash)."""
        if self.running():
            self.popen.kill()
            self.popen.wait(5)


class Network:
    def __init__(self, tmpdir: Path, *, net: str = "functest", seed: int | None = None) -> None:
        self.tmpdir = Path(tmpdir)
        self.net = net
        self.seed = int(os.environ.get("KS_SEED", seed if seed is not None else random.randrange(1 << 30)))
        print(f"[harness] seed={self.seed} tmpdir={self.tmpdir} timeout_factor={TIMEOUT_FACTOR}", flush=True)
        self.rng = random.Random(self.seed)
        self.procs: list[Proc] = []

    # ------------------------------------------------------------- processes
    def _common(self, p: Proc, *, bootnodes: list[str], extra: list[str]) -> list[str]:
        argv = ["--datadir", str(p.datadir), "--net", self.net, "--listen", "/ip4/127.0.0.1/tcp/0",
                "--seed", str(self.rng.randrange(1 << 30)), "--status-file", str(p.status_path)]
        for b in bootnodes:
            argv += ["--bootnodes", b]
        return argv + extra

    def add_bootstrap(self, name: str, *, bootnodes: list[str] = (), extra: list[str] = ()) -> Proc:
        p = Proc(name, self.tmpdir / name, [], "bootstrap")
        p.status_path = p.datadir / "status.json"
        p.argv = [PY, "-m", "bootstrap", *self._common(p, bootnodes=list(bootnodes), extra=list(extra))]
        self.procs.append(p)
        p.start()
        return p

    def add_node(self, name: str, *, bootnodes: list[str] = (), protocols: list[str] = (),
                 opts: dict[str, str] | None = None, extra: list[str] = ()) -> Proc:
        p = Proc(name, self.tmpdir / name, [], "node")
        p.status_path = p.datadir / "status.json"
        more = list(extra)
        for spec in protocols:
            more += ["--protocol", spec]
        for k, v in (opts or {}).items():
            more += ["--opt", f"{k}={v}"]
        p.argv = [PY, "-m", "node.runtime", *self._common(p, bootnodes=list(bootnodes), extra=more)]
        self.procs.append(p)
        p.start()
        return p

    def wait_ready(self, procs: list[Proc], timeout: float = 30.0) -> None:
        self.wait_until(lambda: all(p.poll_ready() for p in procs), timeout,
                        f"processes ready: {[p.name for p in procs]}")

    def restart(self, p: Proc, *, timeout: float = 30.0) -> None:
        p.start()
        self.wait_ready([p], timeout)

    # ----------------------------------------------------------------- waiting
    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str, *, poll: float = 0.1) -> float:
        """Poll ``predicate`` until true; raise HarnessError after ``timeout * KS_TIMEOUT_FACTOR``.
        Returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout * TIMEOUT_FACTOR
        while True:
            if predicate():
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout * TIMEOUT_FACTOR:.0f}s waiting for: {what}")
            time.sleep(poll)

    # ----------------------------------------------------------------- closing
    def close(self, *, failed: bool = False) -> None:
        for p in self.procs:
            p.stop()
        if failed:
            for p in self.procs:
                print(f"\n===== {p.name} ({p.kind}, {p.peer_id}) log tail =====\n{p.log_text()[-4000:]}")
                print(f"----- {p.name} status -----\n{json.dumps(p.status(), indent=1)[:3000]}")
        print(f"[harness] seed={self.seed} (replay with KS_SEED={self.seed})", flush=True)

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


# ------------------------------------------------------------------ daemons (keyswitch run) and their API


class Api:
    """A test-node proxy: a running ``keyswitch run`` daemon's local API (its data directory's URL and cookie)."""

    def __init__(self, d, peer):
        self.peer = peer
        self.url = (d / "api.url").read_text().strip()
        self.h = {"Authorization": "Bearer " + (d / ".cookie").read_text().strip()}

    def get(self, path):
        return httpx.get(self.url + path, headers=self.h, timeout=30).json()

    def post(self, path, body):
        return httpx.post(self.url + path, json=body, headers=self.h, timeout=90)


def until(pred, timeout, what):
    """Poll ``pred`` until true; AssertionError after ``timeout`` x KS_TIMEOUT_FACTOR seconds."""
    end = time.monotonic() + timeout * FACTOR
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out: {what}")


def until_holds_released(apis: dict, timeout: float, context: str = "") -> None:
    """Wait until no node of ``apis`` (name -> Api) holds exposure on any device (``GET /v1/reputation``);
    AssertionError naming the holds left (and ``context``) otherwise."""
    seen: dict = {}

    def released():
        seen["rows"] = [(n, r["device"][:12], r["exposure_cents"]) for n, api in apis.items()
                        for r in api.get("/v1/reputation")["devices"]]
        return all(x == 0 for _, _, x in seen["rows"])

    try:
        until(released, timeout, "every hold is released when its contract ends")
    except AssertionError:
        raise AssertionError(f"holds left: {[x for x in seen['rows'] if x[2]]}; {context}") from None


def ledger_and_boot(tmp_path, net: str, procs: list) -> tuple[str, str]:
    """A dev ledger server (a block every 0.5 s) and a bootstrap node; their URL and address."""
    (tmp_path / "ledger").mkdir()
    led = spawn([sys.executable, "-m", "node.ledger.server", "serve", "--db", str(tmp_path / "ledger/db.sqlite"),
                 "--block-interval", "0.5"], tmp_path / "ledger/out.log")
    procs.append(led)
    lurl = wait_for(tmp_path / "ledger/out.log", r"dev ledger listening on (\S+)", led, timeout=60 * FACTOR)
    (tmp_path / "boot").mkdir()
    b = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(tmp_path / "boot"), "--net", net],
              tmp_path / "boot/out.log")
    procs.append(b)
    return lurl, wait_for(tmp_path / "boot/out.log", r"LISTEN (\S+)", b, timeout=60 * FACTOR)
