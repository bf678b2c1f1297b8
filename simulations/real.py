"""The real engine: a scenario run with real processes on 127.0.0.1.

What runs: one dev ledger server (``python -m node.ledger.server serve``), the
scenario's bootstrap nodes (``python -m bootstrap``, at most ``MAX_BOOTSTRAP``)
and N ``keyswitch run`` daemons (``python -m node ... run``), each with its own
data directory, all sharing the ledger through ``KEYSWITCH_LEDGER_URL``. Every
daemon is a *full* node (offer book, risk engine, RFP); the scenario's relay-only
nodes have no counterpart (a daemon always keeps a book), so N defaults to
``min(network.nodes - network.bootstrap, 20)``, and the run says when it capped.

What the driver does, through each daemon's local API only:

1. picks the offering nodes (``deposits.offering_share`` of the daemons) and the
   requesters with the scenario's seed, as the virtual engine does, and gives each
   offering node one chunk size drawn from ``deposits.chunk_usd``
   (``KEYSWITCH_DEPOSITS_CHUNK_USD``) and the request limits of ``[requests]``
   (``KEYSWITCH_RISK_*``);
2. funds ``deposits.chunks_per_node`` chunks on each offering node
   (``POST /v1/deposits``) and polls ``GET /v1/status`` until every daemon's book
   holds every other daemon's offers: the time from the deposits to a full book,
   per daemon, is the gossip latency estimate (polling resolution ``POLL`` s,
   plus the first republish);
3. then drives the scenario's request schedule (Poisson at ``requests.rate``,
   amounts uniform in ``[usd_min, usd_max]``, the same seeded draws as the
   virtual engine's) in wall-clock time, each request a ``POST /v1/requests``
   that answers after the deadline with the chosen allocation. A scenario
   longer than ``max_wall`` seconds is replayed faster (its times scaled by
   ``max_wall / duration``; the run says so); the request count is unchanged.

Not carried over (stated in ``summary.json`` under ``real``): the latency/loss
model and mesh degree (loopback is what it is; gossipsub's own parameters
apply), churn, price paths (daemons price with their static table), device
classes (every daemon's enclave is ``sim``), adversaries (refused with a
message), holding chosen sets as exposure inside the daemons (the driver
computes exposure per device from the chosen allocations held for
``contract_seconds``, scaled like the schedule).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

MAX_BOOTSTRAP = 3
DEFAULT_CAP = 20
POLL = 0.5
#: a request a daemon answered 429 (it did not take it in time, so nothing was sent: docs/operating.md) is asked
#: again, after BUSY_PAUSE s, at most BUSY_TRIES times in all
BUSY_TRIES, BUSY_PAUSE = 4, 1.0


class Busy(RuntimeError):
    """A daemon's 429: it did not take the action, and nothing of it happened; asking again is safe."""


def post_asking_again(api, path: str, body: dict, *, timeout: float, on_busy: Callable[[Busy], None],
                      pause: float = BUSY_PAUSE) -> dict:
    """``api.post``; a 429 (``Busy``) is told to ``on_busy`` and asked again ``pause`` s later, ``BUSY_TRIES`` in
    all (the last one's ``Busy`` raised)."""
    for _ in range(BUSY_TRIES - 1):
        try:
            return api.post(path, body, timeout=timeout)
        except Busy as exc:  # nothing was done: as a user would, ask again
            on_busy(exc)
            time.sleep(pause)
    return api.post(path, body, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


class _Api:
    def __init__(self, datadir: Path) -> None:
        self.url = (datadir / "api.url").read_text().strip()
        self.headers = {"Authorization": "Bearer " + (datadir / ".cookie").read_text().strip()}

    def get(self, path: str) -> dict:
        import httpx

        return httpx.get(self.url + path, headers=self.headers, timeout=30).json()

    def post(self, path: str, body: dict, timeout: float = 120) -> dict:
        import httpx

        r = httpx.post(self.url + path, json=body, headers=self.headers, timeout=timeout)
        if r.status_code not in (200, 201):
            raise (Busy if r.status_code == 429 else RuntimeError)(f"POST {path}: {r.status_code} {r.text[:200]}")
        return r.json()


def _book_count(api: _Api) -> int:
    """Offers in a daemon's book; -1 when its API did not answer this time (a loaded machine drops some)."""
    import httpx

    try:
        return api.get("/v1/status")["offers_in_book"]
    except httpx.TransportError:
        return -1


class RealEngine:
    """Run one scenario with real processes. ``run()`` returns when every process is stopped."""

    def __init__(self, sc: dict, *, nodes: int | None = None, max_wall: float = 60.0, workdir: Path | None = None,
                 log: Callable[[dict], None] | None = None, progress: Callable[[float, float, str], None] | None = None,
                 say: Callable[[str], None] | None = None, timeout_factor: float | None = None) -> None:
        if sc["adversaries"]:
            raise ValueError("the real engine runs honest daemons only: remove [adversaries] "
                             f"({', '.join(sc['adversaries'])}) or use the virtual engine")
        self.sc = sc
        self.seed = sc["run"]["seed"]
        self.rng = random.Random(self.seed)
        self.log = log or (lambda rec: None)
        self.progress = progress
        self.say = say or (lambda msg: None)
        from node.dev.localnet import timeout_factor as env_timeout_factor

        self.factor = timeout_factor if timeout_factor is not None else env_timeout_factor()
        net = sc["network"]
        want = net["nodes"] - net["bootstrap"]
        self.n = nodes if nodes is not None else min(want, DEFAULT_CAP)
        if self.n < 2:
            raise ValueError("the real engine needs at least 2 daemons")
        self.notes: list[str] = []
        if self.n < want:
            self.notes.append(f"capped at {self.n} daemons (the scenario has {want} non-bootstrap nodes)")
        self.n_boot = max(1, min(net["bootstrap"], MAX_BOOTSTRAP))
        if self.n_boot != net["bootstrap"]:
            self.notes.append(f"{self.n_boot} bootstrap node(s) (the scenario has {net['bootstrap']})")
        dur = sc["run"]["duration"]
        self.scale = min(1.0, max_wall / dur)
        if self.scale < 1.0:
            self.notes.append(f"the {dur:g} s schedule is replayed in {dur * self.scale:.0f} s wall "
                              f"(times x {self.scale:.3g})")
        self.workdir = workdir
        self.procs: list = []
        self.t0 = 0.0
        self.book_full_s: list[float | None] = []
        self.decided: list[dict] = []
        self.completed_over_time: list[tuple[float, int, int]] = []
        self.coverage = None
        self.device_of: list[str] = []
        self.offering: list[int] = []
        self.requesters: list[int] = []
        self.startup_s = 0.0
        self.requests_sent = 0
        self.requests_not_sent = 0
        self.requests_asked_again = 0  # 429 answers (the daemon busy: nothing sent), each asked again
        self.errors: list[str] = []
        self.peak_rss_mib = 0.0
        self.daemon_cpu_s: list[float] = []  # CPU seconds per daemon (and its enclave), measured at the end
        self.daemons_wall_s = 0.0  # the wall time those were used over (from the first process started)
        self.rfp_stats: dict[str, int] = {}

    # ------------------------------------------------------------------ plan
    def _plan(self) -> tuple[list[int], dict[int, float], list[tuple[float, float, int, str]]]:
        """Offering nodes, their chunk USD, and the request schedule ``(t, usd, requester, asset)``."""
        sc, q = self.sc, self.sc["requests"]
        ix = list(range(self.n))
        n_offer = round(sc["deposits"]["offering_share"] * self.n)
        offering = sorted(self.rng.sample(ix, n_offer))
        self.requesters = sorted(self.rng.sample(ix, min(q["requesters"], self.n)))
        chunk = {i: float(self.rng.choice(sc["deposits"]["chunk_usd"])) for i in offering}
        sched = []
        t = 0.0
        if q["rate"] > 0 and self.requesters:
            while True:
                t += self.rng.expovariate(q["rate"])
                if t > sc["run"]["duration"]:
                    break
                i = self.rng.choice(self.requesters)
                usd = self.rng.uniform(q["usd_min"], q["usd_max"])
                asset = self.rng.choice(sc["assets"])["symbol"]
                sched.append((t, usd, i, asset))
        return offering, chunk, sched

    # ------------------------------------------------------------------ run
    def run(self) -> None:
        if self.workdir is None:
            with tempfile.TemporaryDirectory(prefix="ks-real-") as tmp:
                self._run(Path(tmp))
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._run(self.workdir)

    def _run(self, root: Path) -> None:
        from node.dev.localnet import init_datadir, spawn, stop_all, wait_for

        sc, q, F = self.sc, self.sc["requests"], self.factor
        net = f"sim{self.seed}x{os.getpid()}"[:32]
        offering, chunk, sched = self._plan()
        self.offering = offering
        republish = max(2.0, sc["deposits"]["republish"] * self.scale)
        w0 = time.monotonic()
        try:
            (root / "ledger").mkdir(exist_ok=True)
            led = spawn([sys.executable, "-m", "node.ledger.server", "serve", "--db", str(root / "ledger/db.sqlite"),
                         "--block-interval", "0.5"], root / "ledger/out.log")
            self.procs.append(led)
            self.say(f"starting the dev ledger, {self.n_boot} bootstrap node(s) and {self.n} daemons")
            lurl = wait_for(root / "ledger/out.log", r"dev ledger listening on (\S+)", led, timeout=60 * F)
            boots = []
            for b in range(self.n_boot):
                d = root / f"boot{b}"
                d.mkdir(exist_ok=True)
                p = spawn([sys.executable, "-m", "bootstrap", "--datadir", str(d), "--net", net], d / "out.log")
                self.procs.append(p)
                boots.append((d, p))
            addrs = [wait_for(d / "out.log", r"LISTEN (\S+)", p, timeout=60 * F) for d, p in boots]
            dirs = []
            env_base = {"KEYSWITCH_LEDGER_URL": lurl,
                        "KEYSWITCH_RISK_REQUEST_DEADLINE": str(q["deadline"] * F),
                        "KEYSWITCH_RISK_MAX_PER_DEVICE": str(q["max_per_device"]),
                        "KEYSWITCH_RISK_MAX_SHARE_DEVICE": str(q["max_share_device"]),
                        "KEYSWITCH_RISK_MAX_SHARE_OWNER": str(q["max_share_owner"]),
                        # the re-announcement back-off's cap, scaled as the base interval is
                        "KEYSWITCH_NETWORK_REPUBLISH_MAX":
                            f"{max(republish, sc['deposits']['republish_max'] * self.scale):g}",
                        "KEYSWITCH_LOG_LEVEL": "warning"}
            for i in range(self.n):
                d = root / f"node{i}"
                init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
                env = dict(env_base)
                if i in chunk:
                    env["KEYSWITCH_DEPOSITS_CHUNK_USD"] = str(chunk[i])
                self.procs.append(spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", net,
                                         "--bootnodes", ",".join(addrs[k % len(addrs)] for k in (i, i + 1))
                                         if len(addrs) > 1 else addrs[0],
                                         "--republish", f"{republish:g}"], d / "out.log", env=env))
                dirs.append(d)
            daemons = self.procs[1 + self.n_boot:]
            for i, (d, p) in enumerate(zip(dirs, daemons)):
                wait_for(d / "out.log", r"ready (\S+)", p, timeout=120 * F)
                if self.progress:
                    self.progress(i + 1, self.n, "daemons ready")
            apis = [_Api(d) for d in dirs]
            peer_of = [a.get("/v1/status")["peer_id"] for a in apis]
            self.startup_s = time.monotonic() - w0
            self.log({"ev": "started", "daemons": self.n, "bootstrap": self.n_boot, "wall_s": round(self.startup_s, 2)})

            # deposits, then full books
            chunks = sc["deposits"]["chunks_per_node"]
            with cf.ThreadPoolExecutor(8) as ex:
                made = list(ex.map(lambda i: apis[i].post("/v1/deposits", {"asset": sc["assets"][0]["symbol"],
                                                                           "chunks": chunks}), offering))
            for i, m in zip(offering, made):
                self.log({"ev": "deposits", "node": i, "chunks": len(m["deposits"]), "chunk_usd": chunk[i]})
            t_dep = time.monotonic()
            own = [chunks if i in chunk else 0 for i in range(self.n)]
            total = sum(own)
            want = [total - own[i] for i in range(self.n)]
            self.book_full_s = [None] * self.n
            books_timeout = (60 + 2 * republish) * F
            counts = [0] * self.n
            while time.monotonic() - t_dep < books_timeout and any(x is None for x in self.book_full_s):
                with cf.ThreadPoolExecutor(8) as ex:
                    counts = list(ex.map(_book_count, apis))
                now = time.monotonic() - t_dep
                for i, c in enumerate(counts):
                    if self.book_full_s[i] is None and c >= want[i]:
                        self.book_full_s[i] = round(now, 3)
                if self.progress:
                    self.progress(sum(1 for x in self.book_full_s if x is not None), self.n, "full books")
                time.sleep(POLL)
            self.coverage = (sum(min(c, w) for c, w in zip(counts, want)) / sum(want)) if sum(want) else None
            # the device id offers carry (sha256 of the enclave's signing key), per publishing peer
            dev_by_origin: dict[str, str] = {}
            for a in apis[:2]:
                for row in a.get("/v1/offers?limit=10000")["offers"]:
                    dev_by_origin.setdefault(row["origin"], row["device_id"])
            self.device_of = [dev_by_origin.get(p, "") for p in peer_of]
            self.log({"ev": "devices", "device_of": {i: self.device_of[i] for i in offering}})
            self.log({"ev": "books", "full_after_s": self.book_full_s, "coverage": self.coverage})

            # the request schedule, in (scaled) wall-clock time
            t_req = time.monotonic()
            span = sc["run"]["duration"] * self.scale
            futs = []

            def busy(i: int, exc: Busy) -> None:
                self.requests_asked_again += 1
                self.log({"ev": "request_busy", "node": i, "reason": str(exc)[:120]})

            def one(k: int, t: float, usd: float, i: int, asset: str) -> None:
                try:
                    ch = post_asking_again(apis[i], "/v1/requests", {"asset": asset, "usd": round(usd, 2),
                                           "contract": q["contract"]}, timeout=q["deadline"] * F + 60,
                                           on_busy=lambda exc: busy(i, exc))
                except Exception as exc:  # refused (429 BUSY_TRIES times) or a timeout: not sent
                    self.requests_not_sent += 1
                    self.errors.append(str(exc)[:160])
                    self.log({"ev": "request_not_sent", "node": i, "reason": str(exc)[:120]})
                    return
                at = (time.monotonic() - t_req) / self.scale
                per_dev: dict[str, int] = {}
                for o in ch["offers"]:
                    per_dev[o["device"]] = per_dev.get(o["device"], 0) + o["usd_cents"]
                rec = {"t": round(at, 3), "t_sent": round(t, 3), "node": i, "request": ch["request_id"],
                       "ok": ch["ok"], "target_cents": ch["target_cents"], "total_cents": ch["total_cents"],
                       "overshoot_cents": ch["overshoot_cents"], "proposals": ch["proposals"],
                       "chunks": len(ch["offers"]), "reason": ch["reason"][:120], "per_device": per_dev}
                self.decided.append(rec)
                self.log({"ev": "chosen", **rec})

            # not a `with`: on Ctrl-C or an error the pool must not wait for open requests before
            # the processes are stopped (they answer fast once their daemon is gone)
            ex = cf.ThreadPoolExecutor(16)
            try:
                for k, (t, usd, i, asset) in enumerate(sched):
                    while True:
                        el = time.monotonic() - t_req
                        if el >= t * self.scale:
                            break
                        self._tick(el / self.scale)
                        time.sleep(min(0.25, t * self.scale - el))
                    self.requests_sent += 1
                    self.log({"t": round(t, 3), "ev": "request", "node": i, "asset": asset,
                              "usd_cents": round(usd * 100)})
                    futs.append(ex.submit(one, k, t, usd, i, asset))
                while time.monotonic() - t_req < span or not all(f.done() for f in futs):
                    self._tick((time.monotonic() - t_req) / self.scale)
                    time.sleep(0.25)
            except BaseException:
                ex.shutdown(wait=False, cancel_futures=True)
                raise
            ex.shutdown(wait=True)
            self._tick((time.monotonic() - t_req) / self.scale)
            self.peak_rss_mib = self._rss_mib()
            # CPU each daemon used (with its enclave process), from its start to here
            self.daemon_cpu_s = [round(_tree_cpu_s(p.pid), 2) for p in daemons]
            self.daemons_wall_s = round(time.monotonic() - w0, 2)
            self.rfp_stats = self._rfp_stats(apis)
        finally:
            stop_all(self.procs)
        self.wall_s = time.monotonic() - w0

    def _rfp_stats(self, apis: list) -> dict[str, int]:
        """The daemons' own RFP counters, summed: proposals sent, received in time, refused, and why."""
        tot: dict[str, int] = {}
        for a in apis:
            try:
                st = a.get("/v1/status")["requests"]
            except Exception:
                continue
            for k, v in st.items():
                if isinstance(v, int):
                    tot[k] = tot.get(k, 0) + v
            for why, v in st.get("reasons", {}).items():
                key = "why: " + why[:60]
                tot[key] = tot.get(key, 0) + v
        self.log({"ev": "rfp_stats", **tot})
        return dict(sorted(tot.items()))

    def _rss_mib(self) -> float:
        tot = 0
        for p in self.procs:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        tot += int(line.split()[1])
            except OSError:
                pass
        return round(tot / 1024, 1)

    def _tick(self, t: float) -> None:
        ok = sum(1 for r in self.decided if r["ok"])
        self.completed_over_time.append((round(t, 3), ok, len(self.decided)))
        if self.progress:
            self.progress(min(t, self.sc["run"]["duration"]), self.sc["run"]["duration"], "scenario s")

    # ------------------------------------------------------------------ metrics
    def exposure(self) -> tuple[dict[str, int], dict[str, int]]:
        """Peak cents per device across all clients, and the most one client held on it, from the chosen
        allocations each held for ``contract_seconds`` (scenario seconds) after its decision."""
        hold = self.sc["requests"]["contract_seconds"]
        ev = []
        for r in self.decided:
            if r["ok"]:
                for dev, c in r["per_device"].items():
                    ev.append((r["t"], 1, dev, r["node"], c))
                    ev.append((r["t"] + hold, 0, dev, r["node"], c))
        ev.sort()
        now: dict[str, int] = {}
        per: dict[tuple, int] = {}
        peak: dict[str, int] = {}
        peak_client: dict[str, int] = {}
        for _, add, dev, node, c in ev:
            s = c if add else -c
            now[dev] = now.get(dev, 0) + s
            per[(dev, node)] = per.get((dev, node), 0) + s
            peak[dev] = max(peak.get(dev, 0), now[dev])
            peak_client[dev] = max(peak_client.get(dev, 0), per[(dev, node)])
        return peak, peak_client

    def summary(self) -> dict[str, Any]:
        from node.risk.classes import ClassRegistry

        decided = self.decided
        ok = [r for r in decided if r["ok"]]
        full = np.asarray([x for x in self.book_full_s if x is not None]) if self.book_full_s else np.zeros(0)
        peak, peak_client = self.exposure()
        devs = [self.device_of[i] for i in self.offering]
        cap = ClassRegistry().resolve("sim").max_limit_cents
        chunks = self.sc["deposits"]["chunks_per_node"]
        return {
            "scenario": self.sc["run"]["name"],
            "seed": self.seed,
            "engine": "real",
            "nodes": self.n + self.n_boot + 1,
            "full_nodes": self.n,
            "publishers": len(self.offering),
            "simulated_seconds": self.sc["run"]["duration"],
            "events": len(decided) + self.requests_sent + len(self.offering),
            "gossip": {
                "sheets_published": len(self.offering),
                "offers_published": len(self.offering) * chunks,
                "full_books": int(len(full)),
                "book_latency_s": ({"p50": round(float(np.quantile(full, 0.5)), 3),
                                    "p90": round(float(np.quantile(full, 0.9)), 3),
                                    "max": round(float(full.max()), 3)} if len(full) else None),
                "coverage_mean": round(self.coverage, 4) if self.coverage is not None else None,
                "note": f"book latency = deposits made -> a daemon's book holds every other daemon's offers, "
                        f"polled every {POLL} s",
            },
            "requests": {
                "sent": self.requests_sent,
                "not_sent": self.requests_not_sent,
                "asked_again_busy": self.requests_asked_again,
                "decided": len(decided),
                "ok": len(ok),
                "ok_share": round(len(ok) / len(decided), 4) if decided else None,
                "proposals_per_request_mean": round(float(np.mean([r["proposals"] for r in decided])), 3)
                if decided else None,
                "proposals_per_request_min": min((r["proposals"] for r in decided), default=None),
                "proposals_per_request_max": max((r["proposals"] for r in decided), default=None),
                "overshoot_cents_mean": round(float(np.mean([r["overshoot_cents"] for r in ok])), 2) if ok else None,
                "overshoot_cents_max": max((r["overshoot_cents"] for r in ok), default=None),
                "failure_reasons": _count(r["reason"][:160] for r in decided if not r["ok"]),
            },
            "exposure": {"honest": {
                "devices": len(devs),
                "peak_total_cents_max": max((peak.get(d, 0) for d in devs), default=0),
                "peak_total_cents_sum": int(sum(peak.get(d, 0) for d in devs)),
                "peak_per_client_cents_max": max((peak_client.get(d, 0) for d in devs), default=0),
                "devices_used": sum(1 for d in devs if peak.get(d, 0) > 0),
                "devices_over_their_class_cap_at_one_client": sum(1 for d in devs if peak_client.get(d, 0) > cap)}},
            "real": {"daemons": self.n, "bootstrap": self.n_boot, "time_scale": round(self.scale, 4),
                     "startup_wall_s": round(self.startup_s, 2), "notes": self.notes,
                     "rfp_counters_summed": self.rfp_stats,
                     "not_modelled": ["latency/loss model", "mesh degree", "churn", "price paths",
                                      "device classes (all sim)", "adversaries",
                                      "exposure held inside the daemons"]},
        }


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live child processes (Linux /proc; 0 if gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    kids: dict[int, list[int]] = {}
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = st.read_text().rsplit(")", 1)[1].split()
            kids.setdefault(int(f[1]), []).append(int(st.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
        todo += kids.get(p, [])
    return total


def _count(items) -> dict:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def plots(engine: RealEngine, outdir: Path) -> list[str]:
    """The plots that apply: requests over time, time to full books, exposure per device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulations.report import requests_plot, save_figure

    made = []
    requests_plot(engine.completed_over_time, outdir / "requests_over_time.png",
                  "scenario seconds (after full books)", "Requests completed over time (real daemons)")
    made.append("requests_over_time.png")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    vals = [x for x in engine.book_full_s if x is not None]
    if vals:
        ax.hist(vals, bins=min(30, max(5, len(vals))))
    ax.set_xlabel("wall seconds from the deposits to a full book")
    ax.set_ylabel("daemons")
    ax.set_title("Gossip: time until every daemon's book holds every offer")
    save_figure(fig, outdir / "gossip_latency.png", made)
    peak, peak_client = engine.exposure()
    devs = [engine.device_of[i] for i in engine.offering]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, table, what in ((axes[0], peak, "peak exposure, USD (all clients)"),
                            (axes[1], peak_client, "peak held by one client, USD")):
        v = sorted((table.get(d, 0) / 100 for d in devs), reverse=True)
        ax.plot(range(len(v)), v, "o", ms=3, color="tab:blue", label=f"honest ({len(v)} devices)")
        ax.set_xlabel("device (sorted)")
        ax.set_ylabel(what)
        ax.legend(fontsize=8)
    fig.suptitle("Exposure per device (from the chosen allocations)")
    save_figure(fig, outdir / "exposure_per_device.png", made)
    return made
