"""A request to contracts (``POST /v1/requests`` with ``give``) for 1, 3 and 6 providers, beside one two-party
swap in the same run.

    python -m benchmarks.request [--deadline 1.0]

Starts a dev ledger server, a bootstrap node and seven ``keyswitch run`` daemons on 127.0.0.1: the requester
R (14 ETH-DEV chunks) and six providers (3 BTC-REG chunks each; the first, whose chunks also serve the
anchor swaps, 5). Chunks are $50; with the default share cap (25% of the request, never below one chunk) a
request for N x $50 takes one chunk from each of N providers. R's ``risk.request_deadline`` is ``--deadline``
seconds (the time it collects proposals).

The anchor: one two-party swap of one chunk each way, R against the first provider (``POST /v1/contracts``,
what ``keyswitch swap --peer`` does), timed from the POST to R listing its outcome (polled every 20 ms), once
before and once after the requests; the mean is the anchor. Each request is timed by the daemon: its total
(the POST to the report's end: proposals collected for the deadline, allocated, every swap agreed, run and
its received keys claimed) and its contracts phase (the allocation to the last swap's outcome: the
``seconds`` of its slowest provider row). Target: the 6-provider contracts phase at most 2 x the anchor (the
swaps run concurrently). Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._cpu import CpuSampler, floor_line

TARGET = 2.0
NET = "reqbench"
PROVIDERS = 6
CORES = os.cpu_count() or 1
IDLE = 3.0  # s of no request before each, to measure what the processes use when idle (gossip, blocks)


def anchor_swap(r, peer: str, taken: set[str]) -> float:
    """Seconds from ``POST /v1/contracts`` (one chunk each way) to R listing the swap's outcome; the address
    of the chunk R took goes into ``taken``."""
    before = {c["contract"] for c in r.get("/v1/contracts")["contracts"]}
    t0 = time.perf_counter()
    resp = r.post("/v1/contracts", {"peer": peer, "give": "ETH-DEV", "take": "BTC-REG", "chunks": 1})
    assert resp.status_code in (200, 201), resp.text
    end = time.monotonic() + 120
    while time.monotonic() < end:
        new = [c for c in r.get("/v1/contracts")["contracts"] if c["contract"] not in before and "outcome" in c]
        if new:
            assert new[0]["state"] == "done", new[0]
            taken.update(ch["address"] for ch in new[0]["outcome"]["chunks"])
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise RuntimeError("the anchor swap did not end within 120 s")


def busy(before: dict, after: dict) -> dict:
    """What a daemon's ``/v1/status`` counters grew by between two reads: its enclave calls (count, seconds in
    the round trip, seconds waiting behind another call) and its protocol handles (count, seconds holding the
    driver's lock, seconds waiting for it), each summed and by kind."""
    def diff(a: dict, b: dict, keys: tuple[str, ...]) -> dict:
        return {k: {f: v[f] - a.get(k, {}).get(f, 0) for f in keys} for k, v in b.items()
                if v[keys[0]] != a.get(k, {}).get(keys[0], 0)}

    calls = diff(before["enclave"]["calls"], after["enclave"]["calls"], ("calls", "call_s", "wait_s"))
    handles = diff(before["driver"]["protocols"], after["driver"]["protocols"], ("handles", "handle_s", "wait_s"))
    return {"calls": calls, "handles": handles}


def run(tmp: Path, deadline: float) -> dict:
    from node.dev.localnet import init_datadir, spawn, stop_all, wait_for
    from tests.functional.framework import Api, ledger_and_boot, until

    procs: list = []
    try:
        lurl, boot = ledger_and_boot(tmp, NET, procs)
        names = ["R"] + [f"P{i}" for i in range(1, PROVIDERS + 1)]
        for n in names:
            init_datadir(tmp / n)
            procs.append(spawn([sys.executable, "-m", "node", "--datadir", str(tmp / n), "run", "--net", NET,
                                "--bootnodes", boot, "--republish", "2", "--log-level", "warning"],
                               tmp / n / "out.log",
                               env={"KEYSWITCH_LEDGER_URL": lurl, "KEYSWITCH_RISK_REQUEST_DEADLINE": str(deadline)}))
        api = {n: Api(tmp / n, wait_for(tmp / n / "out.log", r"ready (\S+)", p, timeout=120))
               for n, p in zip(names, procs[2:])}
        r = api["R"]
        assert r.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 14}).status_code == 201
        for n in names[1:]:
            assert api[n].post("/v1/deposits", {"asset": "BTC-REG", "chunks": 5 if n == "P1" else 3}).status_code \
                == 201
        want = 5 + 3 * (PROVIDERS - 1)
        until(lambda: len(r.get("/v1/offers?asset=BTC-REG")["offers"]) == want
              and all(len(api[n].get("/v1/offers?asset=ETH-DEV")["offers"]) == 14 for n in names[1:]), 180,
              "every book holds the others' offers")
        taken: set[str] = set()  # addresses of the chunks R took
        stale: list[str] = []

        def settled() -> None:
            """Until R's book no longer offers the chunks it took (their givers' retractions are gossiped: a
            stale offer would be refused by its giver, and counted here as a slower run); at most 60 s."""
            def left() -> set[str]:
                return taken & {o["address"] for o in r.get("/v1/offers?asset=BTC-REG")["offers"]}

            try:
                until(lambda: not left(), 60, "R's book drops the chunks it took")
            except AssertionError:
                stale.append(f"R's book still offered {len(left())} chunk(s) it had taken, after 60 s")

        roots = {"ledger": procs[0].pid, "boot": procs[1].pid, **{n: p.pid for n, p in zip(names, procs[2:])}}
        with CpuSampler(roots) as cpu:
            t0 = time.time()
            anchors = [anchor_swap(r, api["P1"].peer, taken)]
            windows = {"anchor": [cpu.window(t0, time.time())]}
            reports, work = {}, {}
            for k in (1, 3, PROVIDERS):
                settled()
                t0 = time.time()
                time.sleep(IDLE)
                windows[f"idle{k}"] = cpu.window(t0, time.time())
                before = {n: api[n].get("/v1/status") for n in ("R", "P1")}
                resp = r.post("/v1/requests", {"asset": "BTC-REG", "usd": 50 * k, "give": "ETH-DEV"})
                t1 = time.time()
                assert resp.status_code == 201, resp.text
                reports[k] = rep = resp.json()
                work[k] = {n: busy(before[n], api[n].get("/v1/status")) for n in before}
                phase = max((p["seconds"] or 0.0) for p in rep["providers"] if p["ask"] == 1)
                windows[k] = cpu.window(t1 - phase, t1)  # the contracts phase ends as the report does
                taken.update(a for p in rep["providers"] for a in p["received_addresses"])
            settled()
            t0 = time.time()
            anchors.append(anchor_swap(r, api["P1"].peer, taken))
            windows["anchor"].append(cpu.window(t0, time.time()))
        return {"anchors": anchors, "reports": reports, "stale": stale, "cpu": windows, "work": work}
    finally:
        stop_all(procs)


def work_line(w: dict) -> str:
    """'enclave N calls C s (W s waiting), handles N H s (W s waiting): the heaviest kinds'."""
    def tot(rows: dict, f: str) -> float:
        return sum(r[f] for r in rows.values())

    c, h = w["calls"], w["handles"]
    top = sorted(c.items(), key=lambda kv: -kv[1]["call_s"])
    toph = sorted(h.items(), key=lambda kv: -kv[1]["handle_s"])[:3]
    return (f"enclave {tot(c, 'calls'):.0f} calls {tot(c, 'call_s'):.2f} s ({tot(c, 'wait_s'):.2f} s waiting; "
            + ", ".join(f"{k} {v['calls']:.0f}x {v['call_s']:.2f} s" for k, v in top)
            + f"); handles {tot(h, 'handles'):.0f}, {tot(h, 'handle_s'):.2f} s under the driver lock "
            f"({tot(h, 'wait_s'):.2f} s waiting; " + ", ".join(f"{k} {v['handles']:.0f}x {v['handle_s']:.2f} s"
                                                               for k, v in toph) + ")")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.request", description=__doc__.splitlines()[0])
    ap.add_argument("--deadline", type=float, default=1.0, help="R's risk.request_deadline, seconds")
    args, _ = ap.parse_known_args(argv)  # under `python -m benchmarks NAME ...` argv holds the names
    print(__doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory(prefix="ks-bench-request-") as tmp:
        res = run(Path(tmp), args.deadline)
    for note in res["stale"]:
        print(f"note: {note}")
    anchor = statistics.mean(res["anchors"])
    print(f"one two-party swap (anchor)  {anchor:7.2f} s   (1 chunk each way; "
          f"{', '.join(f'{a:.2f}' for a in res['anchors'])} s before / after the requests; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end)")
    for i, w in enumerate(res["cpu"]["anchor"]):
        print(f"{'':>9} anchor swap {('before', 'after')[i]}: {floor_line(w, res['anchors'][i])}")
    print(f"{'providers':>9} {'state':>9} {'obtained':>9} {'total s':>8} {'contracts s':>12} {'x swap':>7} "
          f"{'x 1-provider':>12}  per provider s")
    met = True
    phases = {}
    for k, rep in sorted(res["reports"].items()):
        rows = [p for p in rep["providers"] if p["ask"] == 1]
        phases[k] = phase = max((p["seconds"] or 0.0) for p in rows) if rows else float("nan")
        ratio = phase / anchor
        per = ", ".join(f"{p['seconds']:.2f}" for p in rows)
        print(f"{len(rows):>9} {rep['state']:>9} {rep['obtained_cents'] / 100:>9.2f} {rep['seconds']:>8.2f} "
              f"{phase:>12.2f} {ratio:>6.2f}x {phase / phases[1]:>11.2f}x  {per}")
        cpu = res["cpu"][k]
        idle = sum(res["cpu"][f"idle{k}"].values()) / IDLE
        print(f"{'':>9} {floor_line(cpu, phase)}")
        print(f"{'':>9} idle before it: {idle:.2f} CPU s/s for all processes; the phase's work net of it "
              f"{sum(cpu.values()) - idle * phase:.2f} CPU s, floor {(sum(cpu.values()) - idle * phase) / CORES:.2f} s")
        for n, w in res["work"][k].items():
            print(f"{'':>9} {n}: {work_line(w)}")
        if k == PROVIDERS:
            floor = sum(cpu.values()) / CORES
            print(f"{'':>9} the CPU floor alone is {floor / anchor:.2f}x one swap (target {TARGET:g}x)")
            met = rep["state"] == "complete" and len(rows) == PROVIDERS and ratio <= TARGET
    print(f"target: {PROVIDERS} providers' contracts phase <= {TARGET:g} x one swap: {'MET' if met else 'MISSED'} "
          f"(total includes the {args.deadline:g} s of proposals collected before the allocation; 'x 1-provider' "
          f"compares with the 1-provider request's own swap, timed the same way by the daemon)")
    return 0 if met else 1


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    if rc:  # only on a missed target: a plain return keeps `python -m benchmarks` running the others
        sys.exit(rc)
