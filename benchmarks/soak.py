"""The soak: ten ``keyswitch run`` daemons under a steady load of requests and swaps for half an hour, sampled,
and a verdict on leaks, stuck contracts and the offer books.

    python -m benchmarks.soak [--minutes 30] [--nodes 10] [--every 20] [--gap 10] [--out DIR] [--seed N]

Starts a dev ledger server, a bootstrap node and ``--nodes`` daemons on 127.0.0.1 (the launcher of
``benchmarks.request``: ``tests/functional/framework.py``), each with chunks of ETH-DEV and BTC-REG ($50 each).
Every ``--gap`` seconds one action starts (seeded), alternately a two-party swap of one chunk each way
(``POST /v1/contracts``, what ``keyswitch swap --peer`` does) and a request to contracts for $50
(``POST /v1/requests`` with ``give``), each between nodes not busy with another action; every 30 s a node
holding fewer than LOW unspent chunks of an asset deposits TOP more, so the run never starves.

Every ``--every`` seconds, per daemon: RSS and open descriptors of the daemon and its enclave process
(``/proc``), the bytes of its SQLite files, its trio task count and contract states (``/v1/status``,
``/v1/contracts``); a contract not ended STUCK_AFTER seconds after the soak first saw it is stuck (a swap of
one chunk each way has two rounds of at most 30 s each; see ``stuck_after``). At the end the load stops and
every node's book must hold, for every other origin, exactly the addresses of that origin's last published
sheet (``/v1/status`` ``sheet``), within SETTLE seconds.

The verdict (``verdict``): after the warm-up (``warmup_of``: the first fifth of the run, at least 2 minutes), each
daemon's RSS at the end (median of the last fifth of samples) at most 10 % above its RSS just after the
warm-up (median of the first fifth after it); descriptors at the end (median) no more than FD_NOISE above
the most seen just after the warm-up; trio tasks at the end (median) at most TASK_GROWTH (15 %) plus TASK_NOISE
(10) above those just after the warm-up (median); no contract stuck; every book consistent; at least half the
actions done (a load that did not run proves nothing). Output: a table over time, the task groups that grew
(``task_growth``), ``soak.csv`` and ``soak.png`` in ``--out``. Exit status 1 on a failed verdict.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

NET = "soak"
ASSETS = ("ETH-DEV", "BTC-REG")
START_CHUNKS = 6  # per asset per node
LOW, TOP = 3, 4  # replenish: fewer than LOW unspent chunks of an asset -> deposit TOP
WARMUP_SHARE, WARMUP_MIN = 0.2, 120.0
RSS_GROWTH = 0.10
#: descriptors come and go with connections, streams and API calls: a daemon of a 3-node run was seen at 35
#: just after the warm-up and 38 at the end of a minute (its sheets and deposits still settling); a leak grows
#: with the contracts and requests run, dozens in half an hour
FD_NOISE = 5
#: trio tasks (``tasks`` in /v1/status) come and go with connections, streams and API calls (an API connection's
#: task lingers 5 s, its keep-alive; a round of peer probes in flight is one task a peer); a leak grows with the
#: connections and contracts run. Before the fix of issue #22 (``node.runtime.pubsubpeers``) a 30-minute run of
#: 10 daemons grew 25-55 % after its warm-up (133-153 -> 171-208); a 6-daemon, 6-minute run is too short to tell
#: a leak from the noise (before the fix: 112 -> 135 at most; after: 100.5 -> 118.5 at most, the probes in flight)
TASK_GROWTH, TASK_NOISE = 0.15, 10
SETTLE = 120.0
ROUND_TIMEOUT = 30.0  # node.contracts.protocol.run: a contract with no progress for this long ends (withheld)


def warmup_of(seconds: float) -> float:
    """The warm-up of a run of ``seconds``: its first WARMUP_SHARE, at least WARMUP_MIN (but at most half the
    run: a one-minute smoke run warms up for 30 s)."""
    return max(WARMUP_SHARE * seconds, min(WARMUP_MIN, seconds / 2))


def stuck_after(rounds: int) -> float:
    """Seconds after which a contract of ``rounds`` rounds that has not ended is stuck: each round progresses
    within ROUND_TIMEOUT or the contract ends as withheld; plus a minute for its claims and the sampling."""
    return (max(rounds, 2) + 1) * ROUND_TIMEOUT + 60.0


# ------------------------------------------------------------------ samples and the verdict (pure)
@dataclass
class Sample:
    t: float  # seconds since the load started
    node: str
    rss_kb: int  # daemon + enclave
    fds: int  # daemon + enclave
    db_bytes: int  # the data directory's SQLite files (with their -wal/-shm)
    tasks: int
    states: dict[str, int] = field(default_factory=dict)  # contracts by state ("open" = not ended)
    stuck: list[str] = field(default_factory=list)
    groups: dict[str, int] = field(default_factory=dict)  # the biggest groups of trio tasks by name


def _window(values: list[float], first: bool) -> list[float]:
    k = max(1, len(values) // 5)
    return values[:k] if first else values[-k:]


def verdict(samples: list[Sample], *, warmup: float, mismatches: list[str], actions: dict[str, int]) -> list[str]:
    """The failed conditions, one line each (empty: the soak passed)."""
    failed = []
    for node in sorted({s.node for s in samples}):
        mine = sorted((s for s in samples if s.node == node), key=lambda s: s.t)
        after = [s for s in mine if s.t >= warmup]
        if len(after) < 2:
            failed.append(f"{node}: {len(after)} sample(s) after the {warmup:.0f} s warm-up, need 2 (a longer run)")
            continue
        rss0 = statistics.median(_window([s.rss_kb for s in after], True))
        rss1 = statistics.median(_window([s.rss_kb for s in after], False))
        if rss1 > rss0 * (1 + RSS_GROWTH):
            failed.append(f"{node}: RSS grew {100 * (rss1 / rss0 - 1):.1f} % after warm-up "
                          f"({rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB; limit {100 * RSS_GROWTH:.0f} %)")
        fd0 = max(_window([s.fds for s in after], True))
        fd1 = statistics.median(_window([s.fds for s in after], False))
        if fd1 > fd0 + FD_NOISE:
            failed.append(f"{node}: open descriptors grew after warm-up (at most {fd0} just after it, "
                          f"median {fd1:g} at the end; noise allowed {FD_NOISE})")
        tasks = [s.tasks for s in after if s.tasks >= 0]  # (-1: the daemon did not answer that sample)
        if len(tasks) >= 2:
            tk0 = statistics.median(_window(tasks, True))
            tk1 = statistics.median(_window(tasks, False))
            if tk1 > tk0 * (1 + TASK_GROWTH) + TASK_NOISE:
                failed.append(f"{node}: trio tasks grew {100 * (tk1 / tk0 - 1):.1f} % after warm-up "
                              f"({tk0:g} -> {tk1:g}; limit {100 * TASK_GROWTH:.0f} % + {TASK_NOISE})")
        stuck = sorted({c for s in mine for c in s.stuck})
        if stuck:
            failed.append(f"{node}: {len(stuck)} contract(s) stuck past their deadline: {', '.join(stuck[:5])}")
    failed += [f"book: {m}" for m in mismatches]
    started, done = actions.get("started", 0), actions.get("done", 0)
    if done * 2 < started or not started:
        failed.append(f"load: {done} of {started} actions done (fewer than half: the load did not run)")
    return failed


def summary(samples: list[Sample], warmup: float) -> list[str]:
    """Per node: the figures the verdict compares (just after the warm-up -> the end), one line each."""
    out = [f"{'node':<5} {'RSS MB after warm-up -> end':>28} {'growth':>7} {'fds max -> end':>15} "
           f"{'tasks -> end':>13} {'SQLite MB':>10} {'done':>5} {'withheld':>8} {'failed':>6}"]
    for node in sorted({s.node for s in samples}):
        after = sorted((s for s in samples if s.node == node and s.t >= warmup), key=lambda s: s.t)
        if not after:
            continue
        rss0 = statistics.median(_window([s.rss_kb for s in after], True)) / 1024
        rss1 = statistics.median(_window([s.rss_kb for s in after], False)) / 1024
        fd0, fd1 = max(_window([s.fds for s in after], True)), statistics.median(_window([s.fds for s in after], False))
        tk0 = statistics.median(_window([s.tasks for s in after], True))
        tk1 = statistics.median(_window([s.tasks for s in after], False))
        last = after[-1]
        out.append(f"{node:<5} {rss0:>18.1f} -> {rss1:>6.1f} {100 * (rss1 / rss0 - 1):>6.1f}% {fd0:>8} -> {fd1:>4g} "
                   f"{tk0:>6g} -> {tk1:>4g} {last.db_bytes / 1e6:>10.2f} {last.states.get('done', 0):>5} "
                   f"{last.states.get('withheld', 0):>8} {last.states.get('failed', 0):>6}")
    return out


def task_growth(samples: list[Sample], warmup: float) -> list[str]:
    """Per node: the groups of trio tasks (by name, ``/v1/status`` ``task_groups``) that grew from the first
    sample after the warm-up to the last, one line each: which tasks a growth of ``tasks`` is made of."""
    out = []
    for node in sorted({s.node for s in samples}):
        after = sorted((s for s in samples if s.node == node and s.t >= warmup and s.groups), key=lambda s: s.t)
        if len(after) < 2:
            continue
        first, last = after[0].groups, after[-1].groups
        grew = sorted(((last[k] - first.get(k, 0), k) for k in last if last[k] > first.get(k, 0)), reverse=True)
        if grew:
            out.append(f"{node}: " + ", ".join(f"{k} {first.get(k, 0)} -> {last[k]}" for _, k in grew[:6]))
    return out


def book_mismatches(sheets: dict[str, set[str]], books: dict[str, dict[str, set[str]]],
                    names: dict[str, str]) -> list[str]:
    """For every node (``books``: name -> origin peer id -> addresses its book holds) and every other origin
    (``sheets``: peer id -> addresses of its last published sheet), what differs; ``names`` maps peer ids to
    node names."""
    out = []
    for node, book in sorted(books.items()):
        for origin, want in sorted(sheets.items()):
            if names.get(origin) == node:
                continue
            have = book.get(origin, set())
            if have != want:
                out.append(f"{node}'s book for {names.get(origin, origin[:12])}: {len(have - want)} address(es) "
                           f"not in its last sheet, {len(want - have)} of the sheet missing")
    return out


# ------------------------------------------------------------------ reading a daemon from outside
def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def process_figures(pid: int) -> tuple[int, int]:
    """RSS (kB) and open descriptors of a daemon and its child processes (its enclave)."""
    pids = [pid, *_children(pid)]
    return sum(_rss_kb(p) for p in pids), sum(_fds(p) for p in pids)


def db_bytes(datadir: Path) -> int:
    return sum(p.stat().st_size for p in datadir.rglob("*.sqlite*") if p.is_file())


def ended(row: dict) -> bool:
    """A contract row of ``/v1/contracts`` that has ended: a two-party release contract once its outcome is
    reported (every received key claimed), any other once its state is final."""
    if "rounds" in row:
        return "outcome" in row
    return row.get("state") in ("done", "withheld", "failed", "refunded", "expired", "released")


class Sampler:
    """Samples every daemon; remembers when it first saw each contract (for ``stuck_after``)."""

    def __init__(self, nodes: dict, procs: dict, dirs: dict, t0: float) -> None:
        self.nodes, self.procs, self.dirs, self.t0 = nodes, procs, dirs, t0
        self.first_seen: dict[tuple[str, str], float] = {}
        self.samples: list[Sample] = []
        self.api_errors: dict[str, int] = {}
        self.pool = ThreadPoolExecutor(max_workers=len(nodes))

    def sample(self, name: str) -> Sample:
        now = time.monotonic()
        rss, fds = process_figures(self.procs[name].pid)
        api = self.nodes[name]
        states: dict[str, int] = {}
        stuck: list[str] = []
        try:
            st = api.get("/v1/status")
            tasks, groups = int(st.get("tasks", -1)), dict(st.get("task_groups", {}))
            rows = api.get("/v1/contracts")["contracts"]
        except Exception as exc:  # noqa: BLE001 (a daemon too slow to answer: counted, its /proc figures kept)
            self.api_errors[type(exc).__name__] = self.api_errors.get(type(exc).__name__, 0) + 1
            tasks, rows, groups = -1, [], {}
        for row in rows:
            key = (name, row["contract"])
            seen = self.first_seen.setdefault(key, now)
            if ended(row):
                states[row["state"]] = states.get(row["state"], 0) + 1
                continue
            states["open"] = states.get("open", 0) + 1
            if now - seen > stuck_after(int(row.get("rounds", 2))):
                stuck.append(f"{row['contract'][:12]} ({row['state']}, {now - seen:.0f} s)")
        s = Sample(round(now - self.t0, 1), name, rss, fds, db_bytes(self.dirs[name]), tasks, states, stuck,
                   groups)
        self.samples.append(s)
        return s

    def round(self) -> list[Sample]:
        """One sample of every daemon, taken side by side (a loaded daemon answers slowly)."""
        return list(self.pool.map(self.sample, sorted(self.nodes)))


def periodic(period: float, fn, stop: threading.Event) -> threading.Thread:
    """A thread calling ``fn()`` every ``period`` seconds until ``stop`` (a late call is not made up for)."""
    def body() -> None:
        nxt = time.monotonic()
        while not stop.is_set():
            fn()
            nxt = max(nxt + period, time.monotonic())
            stop.wait(nxt - time.monotonic())

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


# ------------------------------------------------------------------ the load
class Load:
    """One action every ``gap`` seconds (swaps and requests alternately) on nodes not busy; counts results."""

    def __init__(self, nodes: dict, rng: random.Random, gap: float) -> None:
        self.nodes, self.rng, self.gap = nodes, rng, gap
        self.busy: set[str] = set()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {"started": 0, "done": 0}
        self.errors: dict[str, int] = {}
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.requests: list[tuple[str, str]] = []  # (node, request id)

    def _count(self, key: str, errors: bool = False) -> None:
        with self.lock:
            d = self.errors if errors else self.counts
            d[key] = d.get(key, 0) + 1

    def _pick(self, k: int) -> list[str] | None:
        with self.lock:
            free = sorted(set(self.nodes) - self.busy)
            if len(free) < k:
                return None
            got = self.rng.sample(free, k)
            self.busy.update(got)
            return got

    def _swap(self, a: str, b: str, give: str, take: str) -> None:
        r = self.nodes[a].post("/v1/contracts", {"peer": self.nodes[b].peer, "give": give, "take": take,
                                                 "chunks": 1})
        if r.status_code not in (200, 201):
            raise RuntimeError(f"swap {r.status_code}: {r.json().get('error', '')[:60]}")

    def _request(self, a: str, give: str, take: str) -> None:
        """Started (``wait`` false: a request's contracts may take minutes on a loaded machine, and the load
        must not wait for them); its report is read by ``requests_ended``."""
        r = self.nodes[a].post("/v1/requests", {"asset": take, "usd": 50, "give": give, "wait": False})
        if r.status_code not in (201, 202):
            raise RuntimeError(f"request {r.status_code}: {r.json().get('error', '')[:60]}")
        with self.lock:
            self.requests.append((a, r.json()["request_id"]))

    def requests_ended(self) -> None:
        """Once the load stopped: each request's state from its report (``complete`` counts as done)."""
        for a, rid in self.requests:
            try:
                state = self.nodes[a].get(f"/v1/requests/{rid}").get("state", "unknown")
            except Exception as exc:  # noqa: BLE001
                state = type(exc).__name__
            if state == "complete":
                self._count("done")
                self._count("requests done")
            else:
                self._count(f"request: {state}", errors=True)

    def _run(self, kind: str, names: list[str], give: str, take: str) -> None:
        try:
            if kind == "swap":
                self._swap(names[0], names[1], give, take)
                self._count("done")
                self._count("swaps done")
            else:
                self._request(names[0], give, take)
        except Exception as exc:  # noqa: BLE001 (counted by reason, the run goes on)
            self._count(f"{kind}: {' '.join(str(exc).split())[:70]}", errors=True)
        finally:
            with self.lock:
                self.busy.difference_update(names)

    def tick(self, i: int) -> None:
        kind = "swap" if i % 2 == 0 else "request"
        names = self._pick(2 if kind == "swap" else 1)
        if names is None:
            self._count("skipped: every node busy", errors=True)
            return
        give, take = ASSETS if (i // 2) % 2 == 0 else ASSETS[::-1]
        self._count("started")
        self.pool.submit(self._run, kind, names, give, take)


def replenish(nodes: dict) -> int:
    """Every node holding fewer than LOW unspent chunks of an asset deposits TOP more; chunks deposited."""
    made = 0
    for api in nodes.values():
        deps = api.get("/v1/deposits")["deposits"]
        for asset in ASSETS:
            left = sum(1 for d in deps if d["asset"] == asset and d["status"].startswith(("confirmed", "funded")))
            if left < LOW:
                if api.post("/v1/deposits", {"asset": asset, "chunks": TOP}).status_code == 201:
                    made += TOP
    return made


# ------------------------------------------------------------------ the run
def books_now(nodes: dict) -> tuple[dict[str, set[str]], dict[str, dict[str, set[str]]]]:
    """Every origin's last sheet (peer id -> addresses) and every node's book (name -> origin -> addresses)."""
    sheets = {api.peer: set(api.get("/v1/status")["sheet"]["addresses"]) for api in nodes.values()}
    books: dict[str, dict[str, set[str]]] = {}
    for name, api in nodes.items():
        book: dict[str, set[str]] = {}
        for o in api.get("/v1/offers?limit=10000")["offers"]:
            book.setdefault(o["origin"], set()).add(o["address"])
        books[name] = book
    return sheets, books


def settle_books(nodes: dict, timeout: float) -> list[str]:
    """Once the load stopped: the books' mismatches, waited for up to ``timeout`` seconds to clear."""
    names = {api.peer: n for n, api in nodes.items()}
    end = time.monotonic() + timeout
    while True:
        found = book_mismatches(*books_now(nodes), names)
        if not found or time.monotonic() > end:
            return found
        time.sleep(2)


def run(tmp: Path, args, out) -> dict:
    from node.dev.localnet import init_datadir, spawn, stop_all, wait_for
    from tests.functional.framework import Api, ledger_and_boot, until
    import httpx

    procs: list = []
    rng = random.Random(args.seed)
    try:
        lurl, boot = ledger_and_boot(tmp, NET, procs)
        names = [f"N{i}" for i in range(args.nodes)]
        daemons = {}
        for n in names:
            init_datadir(tmp / n)
            daemons[n] = spawn([sys.executable, "-m", "node", "--datadir", str(tmp / n), "run", "--net", NET,
                                "--bootnodes", boot, "--log-level", "warning"], tmp / n / "out.log",
                               env={"KEYSWITCH_LEDGER_URL": lurl})
            procs.append(daemons[n])
        nodes = {n: Api(tmp / n, wait_for(tmp / n / "out.log", r"ready (\S+)", daemons[n], timeout=600))
                 for n in names}
        for api in nodes.values():
            for asset in ASSETS:
                assert api.post("/v1/deposits", {"asset": asset, "chunks": START_CHUNKS}).status_code == 201
        want = START_CHUNKS * (args.nodes - 1)
        def full() -> bool:
            try:
                return all(len([o for o in api.get(f"/v1/offers?asset={a}&limit=10000")["offers"]
                                if o["origin"] != api.peer]) >= want for api in nodes.values() for a in ASSETS)
            except httpx.TimeoutException:  # a daemon of a loaded machine slow to answer: asked again
                return False

        until(full, 300, "every book holds the others' offers")
        t0 = time.monotonic()
        sampler = Sampler(nodes, daemons, {n: tmp / n for n in names}, t0)
        load = Load(nodes, rng, args.gap)
        end = t0 + args.minutes * 60
        filled = [0]
        stop = threading.Event()

        def fill() -> None:
            try:
                filled[0] += replenish(nodes)
            except Exception as exc:  # noqa: BLE001 (a slow daemon: the next pass tries again)
                load._count(f"replenish: {type(exc).__name__}", errors=True)

        print(table_header(), file=out, flush=True)
        threads = [periodic(args.every, lambda: print(table_row(sampler.round()), file=out, flush=True), stop),
                   periodic(30.0, fill, stop)]
        i = 0
        while time.monotonic() < end:
            load.tick(i)
            i += 1
            time.sleep(max(0.0, min(t0 + i * args.gap, end) - time.monotonic()))
        stop.set()
        for t in threads:
            t.join()
        load.pool.shutdown(wait=True)  # the actions under way end (a request waits for its report)
        last: list[Sample] = []

        def quiet() -> bool:  # the contracts still running end (or are seen stuck)
            last[:] = sampler.round()
            return not any(s.states.get("open") for s in last)

        end = time.monotonic() + stuck_after(2)
        while not quiet() and time.monotonic() < end:
            time.sleep(5)
        print(table_row(last), file=out, flush=True)
        load.requests_ended()
        mismatches = settle_books(nodes, SETTLE)
        return {"samples": sampler.samples, "mismatches": mismatches, "counts": load.counts,
                "errors": load.errors, "deposited": filled[0], "api_errors": sampler.api_errors}
    finally:
        stop_all(procs)


def table_header() -> str:
    return (f"{'t s':>6} {'RSS MB sum':>10} {'max':>6} {'fds sum':>7} {'max':>4} {'db MB':>6} {'tasks':>6} "
            f"{'open':>5} {'done':>5} {'withheld':>8} {'failed':>6} {'stuck':>5}")


def table_row(round_: list[Sample]) -> str:
    def states(k):
        return sum(s.states.get(k, 0) for s in round_)

    return (f"{round_[0].t:>6.0f} {sum(s.rss_kb for s in round_) / 1024:>10.1f} "
            f"{max(s.rss_kb for s in round_) / 1024:>6.1f} {sum(s.fds for s in round_):>7} "
            f"{max(s.fds for s in round_):>4} {sum(s.db_bytes for s in round_) / 1e6:>6.2f} "
            f"{sum(s.tasks for s in round_):>6} {states('open'):>5} {states('done'):>5} {states('withheld'):>8} "
            f"{states('failed'):>6} {sum(len(s.stuck) for s in round_):>5}")


def write_outputs(samples: list[Sample], outdir: Path, warmup: float) -> None:
    """``soak.csv`` (every sample) and ``soak.png`` (RSS, descriptors, tasks, SQLite bytes per node)."""
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "soak.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "node", "rss_kb", "fds", "db_bytes", "tasks", "open", "done", "withheld", "failed",
                    "stuck"])
        for s in samples:
            w.writerow([s.t, s.node, s.rss_kb, s.fds, s.db_bytes, s.tasks, s.states.get("open", 0),
                        s.states.get("done", 0), s.states.get("withheld", 0), s.states.get("failed", 0),
                        len(s.stuck)])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [("RSS, MB (daemon + enclave)", lambda s: s.rss_kb / 1024), ("open descriptors", lambda s: s.fds),
              ("trio tasks", lambda s: s.tasks), ("SQLite files, MB", lambda s: s.db_bytes / 1e6)]
    for ax, (title, f) in zip(axes.flat, panels):
        for node in sorted({s.node for s in samples}):
            mine = [s for s in samples if s.node == node]
            ax.plot([s.t / 60 for s in mine], [f(s) for s in mine], lw=1, label=node)
        ax.axvline(warmup / 60, color="grey", ls="--", lw=0.8)
        ax.set_title(title, fontsize=10)
    for ax in axes[1]:
        ax.set_xlabel("minutes (dashed: end of warm-up)")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(outdir / "soak.png", dpi=80)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--every", type=float, default=20.0, help="seconds between samples of every daemon")
    ap.add_argument("--gap", type=float, default=10.0, help="seconds between actions (swaps, requests)")
    ap.add_argument("--out", type=Path, default=None, help="directory for soak.csv and soak.png")
    ap.add_argument("--seed", type=int, default=None)
    args, _ = ap.parse_known_args(argv)  # under `python -m benchmarks NAME ...` argv holds the names
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(__doc__.split("\n\n")[0])
    print(f"seed {args.seed}; {args.nodes} daemons, {args.minutes:g} min, an action every {args.gap:g} s, "
          f"samples every {args.every:g} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at "
          f"the start", flush=True)
    warmup = warmup_of(args.minutes * 60)
    # SIGTERM (and SIGINT, ignored in a background job) stop the run with its daemons (``run``'s finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="ks-bench-soak-") as tmp:
        res = run(Path(tmp), args, sys.stdout)
    outdir = args.out or Path(tempfile.mkdtemp(prefix="ks-soak-out-"))
    write_outputs(res["samples"], outdir, warmup)
    print("\n".join(summary(res["samples"], warmup)))
    failed = verdict(res["samples"], warmup=warmup, mismatches=res["mismatches"], actions=res["counts"])
    print(f"actions: {res['counts']}; not done: {res['errors'] or 'none'}; {res['deposited']} chunks deposited "
          f"to replenish; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")
    print("task groups grown after the warm-up: " + ("; ".join(task_growth(res["samples"], warmup)) or "none"))
    print(f"API calls of the sampler not answered: {res['api_errors'] or 'none'}")
    print(f"samples: {outdir / 'soak.csv'}; plot: {outdir / 'soak.png'}; warm-up: the first {warmup:.0f} s")
    print("verdict: " + ("PASS (RSS growth < 10 % and task growth < 15 % + 10 after warm-up, no descriptor growth, "
                         "no contract stuck, "
                         "every book consistent with every origin's last sheet)" if not failed else "FAIL"))
    for line in failed:
        print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    if rc:  # only on a failed verdict: a plain return keeps `python -m benchmarks` running the others
        sys.exit(rc)
