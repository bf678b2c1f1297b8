"""One fault-injection trial across whole nodes (issue #22), seeded, on 127.0.0.1.

A dev ledger server, a bootstrap node and two or three ``keyswitch run`` daemons, each behind a loopback
``Relay`` (``tests/faults/cut.py``) that every connection to it passes. Drawn from the seed:

* the contract: a tit-for-tat **swap** (A gives two BTC-REG chunks, B two ETH-DEV chunks, A's first), or a
  three-party **ring** (A gives BTC-REG to B, B ETH-DEV to C, C BTC-REG to A, one chunk each, a refund height
  ``RING_BLOCKS`` blocks ahead);
* the fault point, among the protocol's own states (``tests/faults/observe.py``: the offer in flight, just
  agreed, each step's send, receive, seal and sweep), seen through the daemons' API and the ledger;
* the fault: ``kill`` (SIGKILL of a drawn party's daemon and its enclave process at once, its process group,
  then a restart on the same data directory after a drawn pause), ``cut`` (every link between the daemons cut
  at their relays for a drawn while, then mended) or ``pause-ledger`` (SIGSTOP of the ledger server for a
  drawn while: every funds check, claim and height read stalls, then SIGCONT).

The contract then runs out. After every trial: **nothing stuck** (every party's contract ends, done, withheld,
failed or refunded, within its deadline after the fault: the round timeout of silence for a swap, the refund
height for a ring, plus the restart), then ``tests/faults/account.py``'s checks (every chunk accounted for on
the ledger, no key released twice, at most one chunk lost, the records agreeing with the ledger), and no daemon
log with a traceback.

``run_trial(root, seed)`` returns a ``TrialResult``; ``python -m benchmarks.faults`` runs many and prints the
table, ``tests/faults/test_faults.py`` runs a few seeds in ``make test``. Replay one: ``KS_FAULT_SEED=S``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.dev.localnet import ROOT, init_datadir, stop_all, wait_for
from tests.faults.account import account, collect, unmined_claims
from tests.faults.cut import Relay, swarm_port
from tests.faults.observe import LogWatch, Step, fast_progress, points, ring_steps, snapshot, swap_steps
from tests.functional.framework import FACTOR, Api, ledger_and_boot, until

NET = "faultnet"
FAULTS = ("kill", "cut", "pause-ledger")
KINDS = ("swap", "ring")
ROUND_TIMEOUT = 30.0  # a peer silent this long ends a contract (the protocols' round_timeout)
RING_BLOCKS = 60  # the ring's refund height, blocks ahead (the dev ledger mines one every 0.5 s)
BLOCK_SECONDS = 0.5
POINT_WAIT = 30.0  # s (x KS_TIMEOUT_FACTOR) a trial waits for its fault point (a contract stalled before it: struck anyway)


@dataclass
class TrialResult:
    seed: int
    kind: str  # swap | ring
    fault: str  # kill | cut | pause-ledger
    victim: str  # the killed party ("" for cut and pause-ledger)
    point: str  # the drawn fault point
    pause: float  # s the killed node stayed down, the links stayed cut, or the ledger stopped
    at_fault: str = ""  # what had happened when the fault struck (Progress.brief)
    states: tuple[str, ...] = ()  # each party's contract state at the end
    received: tuple[int, ...] = ()  # chunks each party received (swept from the others)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def label(self) -> str:
        return f"kill-{self.victim}" if self.fault == "kill" else self.fault


class Daemon:
    """A ``keyswitch run`` daemon behind its relay, in its own process group (SIGKILL takes its enclave too)."""

    def __init__(self, name: str, d: Path, boot: str, lurl: str) -> None:
        self.name, self.d, self.boot, self.lurl = name, d, boot, lurl
        self.relay = Relay()
        self.proc: subprocess.Popen | None = None
        self.api: Api | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        self.logs.append(self.d / f"out{len(self.logs) + 1}.log")
        env = dict(os.environ, KEYSWITCH_LEDGER_URL=self.lurl, PYTHONUNBUFFERED="1")
        with open(self.logs[-1], "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "--datadir", str(self.d), "run", "--net", NET, "--bootnodes",
                 self.boot, "--republish", "2", "--announce", self.relay.address,
                 "--log-level", os.environ.get("KS_FAULT_LOG", "info")], stdout=out,
                stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)

    def wait_ready(self) -> None:
        peer = wait_for(self.logs[-1], r"ready (\S+)", self.proc, timeout=90 * FACTOR)
        self.api = Api(self.d, peer)
        self.relay.target = swarm_port(self.proc.pid, self.api.url)

    def kill(self) -> None:
        """SIGKILL the daemon and its enclave process at once (a power cut of the node)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.relay.target = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_all([self.proc])
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # an enclave left behind
            except (ProcessLookupError, PermissionError):
                pass
        self.relay.close()


def draw(seed: int, *, kind: str | None = None, fault: str | None = None) -> TrialResult:
    rng = random.Random(seed)
    kind = kind or ("ring" if rng.random() < 0.3 else "swap")
    fault = fault or rng.choice(FAULTS)
    names = "ABC" if kind == "ring" else "AB"
    victim = rng.choice(names)
    steps = ring_steps(names, 1) if kind == "ring" else swap_steps(2)
    point = rng.choice(points(steps))
    pause = round(rng.uniform(0.5, 8.0), 1)
    return TrialResult(seed, kind, fault, victim if fault == "kill" else "", point, pause)


def run_trial(root: Path, seed: int, *, kind: str | None = None, fault: str | None = None) -> TrialResult:
    res = draw(seed, kind=kind, fault=fault)
    rng = random.Random(seed * 7919 + 1)  # the small draws of the trial itself (the "agreeing" offset)
    names = "ABC" if res.kind == "ring" else "AB"
    steps = ring_steps(names, 1) if res.kind == "ring" else swap_steps(2)
    t0 = time.monotonic()
    procs: list = []
    daemons: dict[str, Daemon] = {}
    root.mkdir(parents=True, exist_ok=True)
    led = None
    try:
        from node.ledger.client import DevLedgerClient

        lurl, boot = ledger_and_boot(root, NET, procs)
        led = DevLedgerClient(lurl)
        for n in names:
            init_datadir(root / n)
            daemons[n] = Daemon(n, root / n, boot, lurl)
            daemons[n].start()
        for dm in daemons.values():
            dm.wait_ready()
        deposits = _fund(res.kind, daemons)
        apis = lambda: {n: dm.api for n, dm in daemons.items()}  # noqa: E731 (a restart makes a new Api)
        watch = LogWatch({n: dm.logs for n, dm in daemons.items()})

        answer: dict = {}
        offer = threading.Thread(target=_offer, args=(res.kind, daemons, answer), daemon=True)
        offer.start()
        if res.point == "agreeing":
            offer.join(rng.uniform(0.0, 0.3))
        else:
            offer.join(120 * FACTOR)
            if answer.get("status") != 201:
                res.problems.append(f"the contract was not agreed: {answer}")
                return res
            if res.point != "agreed":
                _wait_for_point(res, steps, watch, deposits, led)
        res.at_fault = (res.at_fault or fast_progress(res.kind, steps, watch, deposits, led).brief()) + (
            "" if answer else " (offer in flight)")

        _strike(res, procs[0], daemons)
        offer.join(120 * FACTOR)
        since = time.monotonic()
        deadline = ROUND_TIMEOUT + (RING_BLOCKS * BLOCK_SECONDS if res.kind == "ring" else 0) + 30
        try:
            until(lambda: _all_ended(res.kind, steps, apis(), deposits, led, since), deadline,
                  "every party's contract ending")
        except AssertionError:
            last = snapshot(res.kind, steps, apis(), deposits, led)
            res.problems.append(f"stuck past the deadline: states {last.states}, {last.brief()}")
            return res
        seen = collect(apis())
        try:
            until(lambda: not unmined_claims(seen, led), 30, "every claim mined")
        except AssertionError:
            pass  # account() names the claims the ledger has not mined
        seen = collect(apis())
        (root / "final.json").write_text(json.dumps(seen, indent=1, default=str))  # what the verdict read
        res.states = tuple((seen[n]["row"] or {}).get("state", "none") for n in names)
        problems, got = account(steps, deposits, seen, led)
        res.problems += problems
        res.received = tuple(got.get(n, 0) for n in names)
        res.problems += _tracebacks(daemons)
        return res
    finally:
        res.seconds = round(time.monotonic() - t0, 1)
        if led is not None:
            led.close()
        for dm in daemons.values():
            dm.stop()
        stop_all(procs)


def _fund(kind: str, daemons: dict[str, Daemon]) -> dict[str, list[dict]]:
    gives = {"A": "BTC-REG", "B": "ETH-DEV", "C": "BTC-REG"}
    chunks = 1 if kind == "ring" else 2
    for n, dm in daemons.items():
        r = dm.api.post("/v1/deposits", {"asset": gives[n], "chunks": chunks})
        assert r.status_code == 201, r.text
    # a ring: the two others' chunks; a swap: the other's two
    until(lambda: all(dm.api.get("/v1/status")["offers_in_book"] >= 2 for dm in daemons.values()), 90,
          "every book holds the others' offers")
    return {n: dm.api.get("/v1/deposits")["deposits"] for n, dm in daemons.items()}


def _offer(kind: str, daemons: dict[str, Daemon], answer: dict) -> None:
    a = daemons["A"].api
    if kind == "ring":
        body = {"kind": "ring", "give": "BTC-REG", "chunks": 1, "refund_blocks": RING_BLOCKS,
                "legs": [{"peer": daemons["B"].api.peer, "asset": "ETH-DEV"},
                         {"peer": daemons["C"].api.peer, "asset": "BTC-REG"}]}
    else:
        body = {"peer": daemons["B"].api.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": 2}
    try:
        r = a.post("/v1/contracts", body)
        answer.update(status=r.status_code, text=r.text[:300])
    except Exception as exc:  # the initiator was killed with the offer in flight
        answer.update(status=None, text=f"{type(exc).__name__}: {exc}"[:300])


def _wait_for_point(res: TrialResult, steps: list[Step], watch: LogWatch, deposits, led) -> None:
    """The logs' events and the ledger, read every few ms until the drawn point is reached (or the contract
    ended before it: every party's outcome logged)."""
    kind = res.point.split("-")[0]
    end = time.monotonic() + POINT_WAIT * FACTOR
    while time.monotonic() < end:  # (the ledger is read only for a sweep, or a seal a sweep may be the first
        # sign of: no line says a release/1 swap's last key is in; four HTTP calls a snapshot)
        p = fast_progress(res.kind, steps, watch, deposits, led if kind in ("seal", "sweep") else None)
        if p.reached(res.point):
            res.at_fault = p.brief()
            if kind == "receive":  # the key in flight or being checked: a moment after its send was seen
                time.sleep(random.Random(res.seed).uniform(0.0, 0.05))
            return
        time.sleep(0.005)
    res.at_fault = f"{p.brief()} (point not reached in {POINT_WAIT * FACTOR:.0f} s)"  # (it strikes anyway)


def _strike(res: TrialResult, ledger_proc, daemons: dict[str, Daemon]) -> None:
    if res.fault == "pause-ledger":
        os.kill(ledger_proc.pid, signal.SIGSTOP)
        time.sleep(res.pause)
        os.kill(ledger_proc.pid, signal.SIGCONT)
    elif res.fault == "cut":
        for dm in daemons.values():
            dm.relay.cut()
        time.sleep(res.pause)
        for dm in daemons.values():
            dm.relay.mend()
    else:
        dm = daemons[res.victim]
        dm.kill()
        time.sleep(res.pause)
        dm.start()
        dm.wait_ready()


def _all_ended(kind, steps, apis, deposits, led, since: float) -> bool:
    """Every party's contract that exists has ended; none at all 15 s after the fault: the offer came to
    nothing (the initiator killed with it in flight, or before it recorded the contract it had agreed)."""
    p = snapshot(kind, steps, apis, deposits, led)
    if not p.states:
        return time.monotonic() - since > 15
    return p.ended()


def _tracebacks(daemons: dict[str, Daemon]) -> list[str]:
    out = []
    for n, dm in daemons.items():
        for log in dm.logs:
            text = log.read_text(errors="replace")
            if "Traceback" in text and "raised" in text:
                out.append(f"{n}'s log {log.name} has a traceback")
    return out
