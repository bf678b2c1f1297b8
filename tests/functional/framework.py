"""A multi-process functional test harness in the style of Bitcoin Core's: the one framework every test
that starts processes (daemons, bootstrap nodes, the dev ledger) uses.

* ``Process``: the one launcher. Every process a test starts goes through ``node.dev.localnet.spawn`` with its
  own log file; a test waits on a line of that log (``wait_line``), and stops it with SIGTERM then SIGKILL.
* ``TestNode``: the test-node proxy, a ``keyswitch run`` daemon (``python -m node --datadir D run ...``):
  its process, its data directory and its local API (``get``/``post`` with the cookie), ``restart`` and
  ``kill``. ``Daemon`` is one started on its own, ready when constructed.
* ``Proc``: a ``python -m node.runtime`` / ``python -m bootstrap`` process with a JSON status file.
* ``Network(tmpdir)``: the processes of one test; the ``network`` fixture (tests/conftest.py) gives one per
  test and closes it when the test ends, printing every process's log tail if the test failed.
* ``wait_until``: the one polled wait for processes (timeouts x ``KS_TIMEOUT_FACTOR``, default 1, for slow
  machines; ``make test`` sets 3); in-process trio tests use ``tests.polling.eventually``.

Ports: every process listens on port 0 and reports the port the OS picked (``LISTEN`` line in its log), so
there is no race for "free" ports. The harness prints its random seed (``KS_SEED`` to replay). Every
process is terminated (SIGTERM, then SIGKILL) when the network closes, so a test stops by itself.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx

from node.dev.localnet import init_datadir, spawn, timeout_factor, wait_for

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TIMEOUT_FACTOR = FACTOR = timeout_factor()


class HarnessError(AssertionError):
    pass


def wait_until(predicate: Callable[[], object], timeout: float, what: str, *, poll: float = 0.3) -> float:
    """Poll ``predicate`` until true; HarnessError (an AssertionError) naming ``what`` after ``timeout`` x
    ``KS_TIMEOUT_FACTOR`` seconds. Returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout * FACTOR
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout * FACTOR:.0f}s waiting for: {what}")
        time.sleep(poll)


until = wait_until  # the name the daemon tests call it by


# ------------------------------------------------------------------ the one launcher


def terminate(popen: subprocess.Popen, timeout: float = 20.0, sig: int | None = signal.SIGTERM) -> int:
    """Send ``sig`` (SIGTERM; None: none) to a process still running, SIGKILL it after ``timeout`` s; its exit
    code."""
    if sig is not None and popen.poll() is None:
        popen.send_signal(sig)
    try:
        return popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        return popen.wait(5)


class Process:
    """A process a test started: ``argv`` run from the repository root by ``node.dev.localnet.spawn``, its output
    in ``log`` (a new log each ``start``: ``out.log``, ``out-2.log``, ...); ``new_session``: in a session of
    its own (spawn's)."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None, *,
                 new_session: bool = False) -> None:
        self.name, self.argv, self.env, self.new_session = name, list(argv), dict(env or {}), new_session
        self.first_log = self.log_path = Path(log)
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "Process":
        self.starts += 1
        if self.starts > 1:
            self.log_path = self.first_log.with_name(f"{self.first_log.stem}-{self.starts}{self.first_log.suffix}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.popen = spawn(self.argv, self.log_path, env=self.env, new_session=self.new_session)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def logs(self) -> list[Path]:
        """Every log this process wrote, one per start."""
        return [self.first_log] + [self.first_log.with_name(f"{self.first_log.stem}-{k}{self.first_log.suffix}")
                                   for k in range(2, self.starts + 1)]

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def poll(self) -> int | None:
        return self.popen.poll()

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait_line(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first match of ``pattern`` (a regular expression, multiline) in this start's log; HarnessError
        with the log's tail if the process exits first or ``timeout`` x the factor passes."""
        deadline = time.monotonic() + timeout * FACTOR
        while True:
            m = re.search(pattern, self.log_text(), re.M)
            if m:
                return m
            if self.popen is not None and self.popen.poll() is not None:
                raise HarnessError(f"{self.name} exited with {self.popen.returncode} before {pattern!r}:\n"
                                   f"{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.name}: no {pattern!r} in {self.log_path} within "
                                   f"{timeout * FACTOR:.0f} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def wait(self, timeout: float = 20.0) -> int | None:
        """Its exit code once it exits; SIGKILL after ``timeout`` seconds."""
        return None if self.popen is None else terminate(self.popen, timeout, sig=None)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Graceful: ``sig`` (SIGTERM), wait, SIGKILL if it does not exit after ``timeout`` s. Its exit code."""
        return None if self.popen is None else terminate(self.popen, timeout, sig)

    def kill(self) -> None:
        """Abrupt: SIGKILL (a crash)."""
        if self.running():
            self.popen.kill()
            self.popen.wait(5)

    def finish(self, timeout: float = 60.0) -> tuple[int | None, str]:
        """A process that must stop by itself: its exit code (None, and stopped, when it kept running for
        ``timeout`` x the factor seconds) and its log."""
        try:
            rc = self.popen.wait(timeout * FACTOR)
        except subprocess.TimeoutExpired:
            self.stop()
            rc = None
        return rc, self.log_text()


def stop_processes(procs: list[Process], timeout: float = 20.0) -> None:
    """SIGTERM every process still running (newest first), then wait for each (SIGKILL after ``timeout``)."""
    for p in reversed(procs):
        if p.running():
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout)


class Proc(Process):
    """A ``python -m node.runtime`` node or ``python -m bootstrap`` process with a JSON status file (written a
    few times a second) and ``LISTEN``/``ready`` lines in its log (``poll_ready`` reads them). Each in a
    session of its own, as this harness always started them: with autogroup scheduling, ten of them in the
    test's own session would share one process's CPU on a loaded machine."""

    def __init__(self, name: str, datadir: Path, argv: list[str], kind: str) -> None:
        super().__init__(name, argv, datadir / "process-1.log", new_session=True)
        self.datadir = datadir
        self.kind = kind  # "node" | "bootstrap"
        self.status_path = datadir / "status.json"
        self.addr = ""
        self.peer_id = ""

    def start(self) -> "Proc":
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.status_path.exists():
            self.status_path.unlink()
        self.addr = ""
        super().start()
        return self

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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        return super().stop(sig, timeout)


# ------------------------------------------------------------------ daemons (keyswitch run) and their API


class Api:
    """A test-node proxy: a running ``keyswitch run`` daemon's local API (its data directory's URL and cookie)."""

    def __init__(self, d: Path, peer: str) -> None:
        self.peer = peer
        self.url = (d / "api.url").read_text().strip()
        self.h = {"Authorization": "Bearer " + (d / ".cookie").read_text().strip()}

    def get(self, path):
        return httpx.get(self.url + path, headers=self.h, timeout=30).json()

    def post(self, path, body):
        return httpx.post(self.url + path, json=body, headers=self.h, timeout=90)


class TestNode(Api):
    """A ``keyswitch run`` daemon (``python -m MODULE --datadir D run ARGS``, MODULE ``node`` unless a test
    runs a modified daemon), its log ``D/out.log`` (``out-2.log`` after a restart) and, once ``wait_ready``
    has seen its ``ready PEER`` line, its API (``get``, ``post``, ``peer``, ``url``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, datadir: Path, args: list[str], *, env: dict[str, str] | None = None,
                 module: str = "node", log: Path | None = None, settings: dict | None = None) -> None:
        self.name, self.datadir = name, Path(datadir)
        init_datadir(self.datadir, settings)  # `keyswitch init` (config.toml with ``settings``): run refuses a
        # data directory never initialised
        self.process = Process(name, [PY, "-m", module, "--datadir", str(self.datadir), "run", *args],
                               log or self.datadir / "out.log", env)
        self.peer, self.url, self.h = "", "", {}

    def start(self) -> "TestNode":
        self.process.start()
        return self

    def wait_ready(self, timeout: float = 90.0) -> "TestNode":
        """Wait for its ``ready PEER`` line, then read its API's URL and cookie."""
        peer = self.process.wait_line(r"ready (\S+)", timeout).group(1)
        Api.__init__(self, self.datadir, peer)
        return self

    def restart(self, timeout: float = 90.0) -> "TestNode":
        """Start it again (after ``kill`` or ``stop``) with the same data directory, and wait until ready."""
        return self.start().wait_ready(timeout)

    def kill(self) -> None:
        self.process.kill()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        return self.process.stop(sig, timeout)

    def running(self) -> bool:
        return self.process.running()

    def log_text(self) -> str:
        return self.process.log_text()

    def logs(self) -> list[Path]:
        return self.process.logs()


#: a request on a network with no peers waits its deadline (3 s by default) twice (it is asked again, wider)
#: before it says "no allocation"; where a test only reads that answer, the daemon waits 0.5 s instead
QUICK_REQUESTS = {"KEYSWITCH_RISK_REQUEST_DEADLINE": "0.5"}


class Daemon(TestNode):
    """One ``keyswitch run --republish 1 EXTRA`` on its own (no network around it), ready when constructed;
    its log is ``<datadir>.out`` beside the data directory."""

    def __init__(self, datadir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        datadir = Path(datadir)
        super().__init__(datadir.name, datadir, ["--republish", "1", *extra], env=env,
                         log=datadir.parent / f"{datadir.name}.out")
        self.proc = self.start().process.popen
        self.lines = self.wait_for("ready ", timeout=60)
        self.wait_ready(60)

    def output(self) -> str:
        return self.log_text()

    def wait_for(self, needle: str, timeout: float) -> list[str]:
        """The log's lines once ``needle`` is in it (AssertionError with the log if the daemon exits first)."""
        self.process.wait_line(re.escape(needle), timeout)
        return self.output().splitlines()

    def value(self, prefix: str) -> str:
        return [l for l in self.lines if l.startswith(prefix)][0][len(prefix):].strip()


# ------------------------------------------------------------------ the processes of one test


class Network:
    """The processes of one test, in ``tmpdir``: ``add_*`` start them, ``close`` stops them all (SIGTERM, then
    SIGKILL) and, for a failed test, prints each one's log tail. Use the ``network`` fixture (tests/conftest.py),
    or ``with Network(tmpdir) as net:`` where a module-scoped fixture holds one."""

    def __init__(self, tmpdir: Path, *, net: str = "functest", seed: int | None = None) -> None:
        self.tmpdir = Path(tmpdir)
        self.net = net
        self.seed = int(os.environ.get("KS_SEED", seed if seed is not None else random.randrange(1 << 30)))
        print(f"[harness] seed={self.seed} tmpdir={self.tmpdir} timeout_factor={TIMEOUT_FACTOR}", flush=True)
        self.rng = random.Random(self.seed)
        self.procs: list[Process] = []
        self.nodes: dict[str, TestNode] = {}

    # ------------------------------------------------------------- node.runtime / bootstrap processes
    def _common(self, p: Proc, *, bootnodes: list[str], extra: list[str]) -> list[str]:
        argv = ["--datadir", str(p.datadir), "--net", self.net, "--listen", "/ip4/127.0.0.1/tcp/0",
                "--seed", str(self.rng.randrange(1 << 30)), "--status-file", str(p.status_path)]
        for b in bootnodes:
            argv += ["--bootnodes", b]
        return argv + extra

    def add_bootstrap(self, name: str, *, bootnodes: list[str] = (), extra: list[str] = ()) -> Proc:
        p = Proc(name, self.tmpdir / name, [], "bootstrap")
        p.argv = [PY, "-m", "bootstrap", *self._common(p, bootnodes=list(bootnodes), extra=list(extra))]
        self.procs.append(p)
        return p.start()

    def add_node(self, name: str, *, bootnodes: list[str] = (), protocols: list[str] = (),
                 opts: dict[str, str] | None = None, extra: list[str] = ()) -> Proc:
        p = Proc(name, self.tmpdir / name, [], "node")
        more = list(extra)
        for spec in protocols:
            more += ["--protocol", spec]
        for k, v in (opts or {}).items():
            more += ["--opt", f"{k}={v}"]
        p.argv = [PY, "-m", "node.runtime", *self._common(p, bootnodes=list(bootnodes), extra=more)]
        self.procs.append(p)
        return p.start()

    def two_bootstraps(self) -> tuple[Proc, Proc]:
        """boot1, then boot2 with boot1 as its bootnode, each ready (nodes that know only one of them find the
        other half of the network through the bootstraps' exchange of their tables)."""
        b1 = self.add_bootstrap("boot1")
        self.wait_ready([b1])
        b2 = self.add_bootstrap("boot2", bootnodes=[b1.addr])
        self.wait_ready([b2])
        return b1, b2

    def wait_ready(self, procs: list[Proc], timeout: float = 30.0) -> None:
        self.wait_until(lambda: all(p.poll_ready() for p in procs), timeout,
                        f"processes ready: {[p.name for p in procs]}")

    def restart(self, p: Proc, *, timeout: float = 30.0) -> None:
        p.start()
        self.wait_ready([p], timeout)

    # ------------------------------------------------------------- keyswitch run daemons and their ledger
    def add_process(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
                    log: Path | None = None) -> Process:
        """Any other process (``argv`` from the repository root), its log ``tmpdir/name/out.log`` unless ``log``."""
        p = Process(name, argv, log or self.tmpdir / name / "out.log", env)
        self.procs.append(p)
        return p.start()

    def adopt(self, name: str, popen: subprocess.Popen, log: Path) -> Process:
        """A process a ``node.dev.localnet`` helper started (anvil, litecoind): stopped with the others."""
        p = Process(name, [], log)
        p.popen, p.starts = popen, 1
        self.procs.append(p)
        return p

    def add_ledger(self, name: str = "ledger", *, block_interval: float = 0.5) -> str:
        """A dev ledger server (a block every ``block_interval`` s); its URL once it listens."""
        d = self.tmpdir / name
        p = self.add_process(name, [PY, "-m", "node.ledger.server", "serve", "--db", str(d / "db.sqlite"),
                                    "--block-interval", str(block_interval)])
        return p.wait_line(r"dev ledger listening on (\S+)", 60).group(1)

    def add_boot(self, name: str = "boot") -> str:
        """A bootstrap node (``python -m bootstrap``) on the network; its address once it listens."""
        p = self.add_process(name, [PY, "-m", "bootstrap", "--datadir", str(self.tmpdir / name), "--net", self.net])
        return p.wait_line(r"LISTEN (\S+)", 60).group(1)

    def ledger_and_boot(self) -> tuple[str, str]:
        """A dev ledger server (a block every 0.5 s) and a bootstrap node; their URL and address."""
        return self.add_ledger(), self.add_boot()

    def add_daemon(self, name: str, *args: str, bootnodes: list[str] = (), env: dict[str, str] | None = None,
                   module: str = "node", republish: float | None = 2, settings: dict | None = None) -> TestNode:
        """A ``keyswitch run`` daemon in ``tmpdir/name`` on this network (``--net``, ``--bootnodes``,
        ``--republish`` 2 s unless None), initialised (config.toml with ``settings``) and started (not yet
        ready: ``wait_daemons``)."""
        argv = ["--net", self.net]
        for b in bootnodes:
            argv += ["--bootnodes", b]
        if republish is not None:
            argv += ["--republish", f"{republish:g}"]
        node = TestNode(name, self.tmpdir / name, [*argv, *args], env=env, module=module, settings=settings)
        self.procs.append(node.process)
        self.nodes[name] = node
        return node.start()

    def wait_daemons(self, nodes: list[TestNode], timeout: float = 90.0) -> list[TestNode]:
        """Wait until each daemon is ready (its API known); the same list."""
        return [n.wait_ready(timeout) for n in nodes]

    def start_daemons(self, names: list[str], *args: str, bootnodes: list[str] = (),
                      env: dict[str, str] | None = None, timeout: float = 90.0) -> list[TestNode]:
        """``add_daemon`` for each name with the same arguments, then ``wait_daemons``."""
        return self.wait_daemons([self.add_daemon(n, *args, bootnodes=bootnodes, env=env) for n in names],
                                 timeout)

    # ----------------------------------------------------------------- waiting
    def wait_until(self, predicate: Callable[[], object], timeout: float, what: str, *, poll: float = 0.1) -> float:
        """``wait_until`` (the module's) polling every ``poll`` s."""
        return wait_until(predicate, timeout, what, poll=poll)

    # ----------------------------------------------------------------- closing
    def close(self, *, failed: bool = False) -> None:
        stop_processes(self.procs)
        if failed:
            for p in self.procs:
                if isinstance(p, Proc):
                    print(f"\n===== {p.name} ({p.kind}, {p.peer_id}) log tail =====\n{p.log_text()[-4000:]}")
                    print(f"----- {p.name} status -----\n{json.dumps(p.status(), indent=1)[:3000]}")
                else:
                    print(f"\n===== {p.name} log tail ({p.log_path}) =====\n{p.log_text()[-4000:]}")
        print(f"[harness] seed={self.seed} (replay with KS_SEED={self.seed})", flush=True)

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def ledger_and_boot(tmp_path: Path, net: str, procs: list) -> tuple[str, str]:
    """A dev ledger server (a block every 0.5 s) and a bootstrap node, their ``Popen`` appended to ``procs``
    (ledger first: the fault trials stop and resume it); their URL and address. For harnesses that hold the
    bare processes (``tests/faults``); a test uses ``Network.ledger_and_boot``."""
    (tmp_path / "ledger").mkdir()
    led = spawn([PY, "-m", "node.ledger.server", "serve", "--db", str(tmp_path / "ledger/db.sqlite"),
                 "--block-interval", "0.5"], tmp_path / "ledger/out.log")
    procs.append(led)
    lurl = wait_for(tmp_path / "ledger/out.log", r"dev ledger listening on (\S+)", led, timeout=60 * FACTOR)
    (tmp_path / "boot").mkdir()
    b = spawn([PY, "-m", "bootstrap", "--datadir", str(tmp_path / "boot"), "--net", net], tmp_path / "boot/out.log")
    procs.append(b)
    return lurl, wait_for(tmp_path / "boot/out.log", r"LISTEN (\S+)", b, timeout=60 * FACTOR)


# ------------------------------------------------------------------ node.runtime processes: the offers stack

OFFERS = "node.dev.factory:offers_factory"  # ``--protocol``: the real offers stack (enclave, book, OffersProtocol)
FAST = ["--pex-interval", "2"]  # peer exchange every 2 s


def offers(status: dict) -> dict:
    """The offers protocol's (or the forger's) part of a node.runtime process's status."""
    for name, st in status.get("protocols", {}).items():
        if "Offers" in name or "Forger" in name:
            return st
    return {}


# ------------------------------------------------------------------ shared waits and asserts over daemons' APIs


def until_holds_released(apis: dict, timeout: float, context: str = "") -> None:
    """Wait until no node of ``apis`` (name -> Api) holds exposure on any device (``GET /v1/reputation``);
    AssertionError naming the holds left (and ``context``) otherwise."""
    seen: dict = {}

    def released():
        seen["rows"] = [(n, r["device"][:12], r["exposure_cents"]) for n, api in apis.items()
                        for r in api.get("/v1/reputation")["devices"]]
        return all(x == 0 for _, _, x in seen["rows"])

    try:
        wait_until(released, timeout, "every hold is released when its contract ends")
    except AssertionError:
        raise AssertionError(f"holds left: {[x for x in seen['rows'] if x[2]]}; {context}") from None



def book_offers(api, asset: str) -> int:
    """How many offers of ``asset`` a daemon's book holds (``GET /v1/offers``)."""
    return len(api.get(f"/v1/offers?asset={asset}")["offers"])


def print_contract_logs(network: "Network", keys: tuple[str, ...], last: int = 40) -> None:
    """What each daemon said about its contracts: its log lines holding any of ``keys`` (the last ``last``)."""
    for n, node in network.nodes.items():
        lines = [ln for ln in node.log_text().splitlines() if any(k in ln for k in keys)]
        print(f"===== {n} =====\n" + "\n".join(ln[:300] for ln in lines[-last:]))


class RequestWatch:
    """A request to contracts on the requester ``api``: ``until(states, timeout, what)`` waits for its report's
    state to be one of ``states``; ``report`` is the last one read."""

    def __init__(self, api, started: dict) -> None:
        self.api, self.report = api, started

    def until(self, states: tuple[str, ...], timeout: float, what: str) -> dict:
        return self.until_report(lambda rep: rep["state"] in states, timeout, what)

    def until_report(self, ok, timeout: float, what: str) -> dict:
        """Wait until ``ok(report)``: for what stays in the report (its providers), where a state may be passed
        between two reads (a request's "running" lasts as long as its contracts, which can be under a second)."""
        def reached():
            self.report = self.api.get(f"/v1/requests/{self.report['request_id']}")
            return ok(self.report)

        until(reached, timeout, what)
        return self.report
