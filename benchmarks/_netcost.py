"""CPU per delivered gossip message: our node, stock py-libp2p and js-libp2p on the same graph.

``python -m benchmarks._netcost [--n 10] [--rounds 10] [--impls ours,stock,js]`` (``python -m
benchmarks.network`` runs it too and prints it beside its own figures).

For each implementation it starts ``n`` OS processes on 127.0.0.1 (``benchmarks/_netpeer.py --impl
ours|stock``, or the interop test's js-libp2p node ``tests/interop/jsnode/node.mjs``), wired as the same
graph: a ring plus one seeded chord per node, each node dialling only nodes started before it. All subscribe
to one topic. Once every mesh holds a peer it measures the processes' CPU time (``/proc/<pid>/stat``, user +
system: other load on the machine does not count; each thread's scheduler count in nanoseconds, not the 10 ms
clock ticks of ``/proc/<pid>/stat``, which read 0 for a small run's few milliseconds) over an idle window, then over ``rounds`` rounds in which
every node publishes one 40-byte message at once (the next round when every node has every message, or after
10 s). CPU per delivery = (CPU over the rounds - the idle rate x their duration) / messages delivered
(n(n-1) a round when none is lost). The three implementations print JSON lines alike, one per delivered
message, so each pays the same for its reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JSNODE = ROOT / "tests" / "interop" / "jsnode" / "node.mjs"
JS_MODULES = ROOT / ".tools" / "jslibp2p" / "node_modules"
TOPIC = "/keyswitch/bench/cost/1"
IMPLS = ("ours", "stock", "js")


def js_available() -> str:
    """'' when the js-libp2p node can run here, else why not."""
    if shutil.which("node") is None:
        return "node (Node.js 20) is not installed"
    if not (JS_MODULES / "libp2p" / "package.json").exists():
        return f"js-libp2p packages not installed in {JS_MODULES} (scripts/jslibp2p.sh)"
    return ""


def graph(n: int, seed: int) -> list[list[int]]:
    """Whom node i dials: a ring (i -> i-1, and n-1 -> 0) plus one seeded chord to an earlier node."""
    rng = random.Random(seed)
    out: list[list[int]] = [[] for _ in range(n)]
    for i in range(1, n):
        out[i].append(i - 1)
        if i >= 2:
            j = rng.randrange(i - 1)  # not i-1 again
            out[i].append(j)
    if n > 2 and 0 not in out[n - 1]:
        out[n - 1].append(0)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_ns(pids: list[int]) -> dict[tuple[int, int], int]:
    """CPU time (ns) of every live thread of ``pids``, by (pid, tid): the scheduler's own count
    (``/proc/PID/task/TID/schedstat``), exact where ``cpu_seconds`` counts in clock ticks (10 ms)."""
    out = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out[(pid, int(task.name))] = int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):  # the thread ended meanwhile
                pass
    return out


def cpu_between(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> float:
    """Seconds of CPU from one ``thread_cpu_ns`` reading to a later one (a thread started in between counts
    whole; one that ended in between counts nothing, its last moments lost)."""
    return sum(ns - before.get(key, 0) for key, ns in after.items()) / 1e9


@dataclass
class Peer:
    """One node process: JSON lines out (a log file, read incrementally), JSON commands in."""

    proc: subprocess.Popen
    log: Path
    peer: str = ""
    addr: str = ""
    messages: int = 0
    mesh: list[str] = field(default_factory=list)
    seen: set = field(default_factory=set)
    _offset: int = 0

    def poll(self) -> None:
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind = ev.get("event")
            if kind == "listening":
                self.peer, self.addr = ev["peer"], next(a for a in ev["addrs"] if "/ip4/127.0.0.1/" in a)
                if "/p2p/" not in self.addr:
                    self.addr += "/p2p/" + self.peer
            elif (kind == "message" and ev.get("topic") == TOPIC and ev.get("from") != self.peer
                  and (ev.get("from"), ev.get("hex")) not in self.seen):
                # (stock py-libp2p hands a node its own messages, and some others twice)
                self.seen.add((ev.get("from"), ev.get("hex")))
                self.messages += 1
            elif kind == "status":
                self.mesh = ev["mesh"].get(TOPIC, [])

    def send(self, **cmd) -> None:
        send_line(self.proc, cmd)

    def stop(self) -> None:
        stop_line_process(self.proc)


def send_line(proc: subprocess.Popen, cmd: dict) -> None:
    """One JSON command line to a node process's stdin (these peers and the interop test's js node)."""
    proc.stdin.write((json.dumps(cmd) + "\n").encode())
    proc.stdin.flush()


def stop_line_process(proc: subprocess.Popen) -> None:
    """Ask a JSON-lines node process to stop (``{"cmd": "stop"}``); kill it if it does not within 10 s."""
    if proc.poll() is None:
        try:
            send_line(proc, {"cmd": "stop"})
            proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)


def start(impl: str, i: int, dial: list[str], tmp: Path, profile: str = "") -> Peer:
    d = tmp / f"{impl}-{i}"
    d.mkdir(parents=True)
    if impl == "js":
        shutil.copy(JSNODE, d / "node.mjs")
        (d / "node_modules").symlink_to(JS_MODULES, target_is_directory=True)
        argv = ["node", str(d / "node.mjs"), "--topic", TOPIC]
    else:
        base, _, undone = impl.partition("-without-")  # e.g. ours-without-idontwant+record: ours, those undone
        argv = [sys.executable, "-m", "benchmarks._netpeer", "--impl", base, "--topic", TOPIC, "--datadir", str(d)]
        argv += [a for u in undone.split("+") if u for a in ("--undo", u)]
        if profile and i == 1:
            argv += ["--profile", f"{profile}/{impl}-node1.prof"]
    for a in dial:
        argv += ["--dial", a]
    log = d / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=d if impl == "js" else ROOT, stdin=subprocess.PIPE, stdout=out,
                                stderr=open(d / "err.log", "wb"))
    return Peer(proc, log)


def wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def run_impl(impl: str, n: int, rounds: int, seed: int, tmp: Path, *, idle: float = 5.0, settle: float = 3.0,
             profile: str = "") -> dict:
    """Start the network, measure idle CPU, run the rounds; the figures (see the module docstring)."""
    peers: list[Peer] = []
    try:
        for i, dial in enumerate(graph(n, seed)):
            p = start(impl, i, [peers[j].addr for j in dial], tmp, profile)
            peers.append(p)
            if not wait(lambda: (p.poll(), p.addr)[1] or p.proc.poll() is not None, 60) or not p.addr:
                raise RuntimeError(f"{impl} node {i} did not start: {(p.log.parent / 'err.log').read_text()[-2000:]}")

        def meshed() -> bool:
            for p in peers:
                p.send(cmd="status")
            time.sleep(0.3)
            for p in peers:
                p.poll()
            return all(p.mesh for p in peers)

        if not wait(meshed, 60):
            raise RuntimeError(f"{impl}: not every node has a mesh peer after 60 s")
        time.sleep(settle)  # let the meshes settle (grafts up to the degree)
        pids = [p.proc.pid for p in peers]
        c0 = thread_cpu_ns(pids)
        time.sleep(idle)
        idle_rate = cpu_between(c0, thread_cpu_ns(pids)) / idle
        for p in peers:
            p.poll()
        base = [p.messages for p in peers]
        t0, c_start = time.monotonic(), thread_cpu_ns(pids)
        lost_rounds = 0
        for r in range(rounds):
            for i, p in enumerate(peers):
                p.send(cmd="publish", topic=TOPIC, hex=(r.to_bytes(4, "big") + i.to_bytes(4, "big")).hex() + "00" * 32)
            want = (r + 1) * (n - 1)

            def done() -> bool:
                for p in peers:
                    p.poll()
                return all(p.messages - b >= want for p, b in zip(peers, base))

            if not wait(done, 10):
                lost_rounds += 1
        elapsed = time.monotonic() - t0
        cpu = cpu_between(c_start, thread_cpu_ns(pids))
        for p in peers:
            p.poll()
        delivered = sum(p.messages - b for p, b in zip(peers, base))
        net = cpu - idle_rate * elapsed
        return {"impl": impl, "n": n, "rounds": rounds, "delivered": delivered, "expected": rounds * n * (n - 1),
                "elapsed": elapsed, "cpu": cpu, "idle_rate": idle_rate, "net_cpu": net,
                "ms_per_delivery": 1e3 * net / max(1, delivered), "gross_ms_per_delivery": 1e3 * cpu / max(1, delivered),
                "lost_rounds": lost_rounds}
    finally:
        for p in peers:
            p.stop()


def compare(n: int, rounds: int, seed: int, impls: tuple[str, ...] = IMPLS, profile: str = "") -> list[dict]:
    """``run_impl`` for each implementation (js skipped, saying why, when it cannot run here)."""
    out = []
    for impl in impls:
        if impl == "js" and js_available():
            out.append({"impl": impl, "skipped": js_available()})
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out.append(run_impl(impl, n, rounds, seed, Path(tmp), profile=profile))
    return out


def report(rows: list[dict]) -> list[str]:
    """Lines: each implementation's CPU per delivery, and ours against stock py-libp2p (the goal: at most half)."""
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"  {r['impl']:>5}: skipped ({r['skipped']})")
            continue
        lines.append(f"  {r['impl']:>5}: {r['ms_per_delivery']:6.2f} ms CPU per delivery ({r['gross_ms_per_delivery']:.2f} "
                     f"gross; {r['delivered']}/{r['expected']} delivered in {r['elapsed']:.1f} s, CPU {r['cpu']:.1f} s, "
                     f"idle {r['idle_rate'] * 1e3:.0f} ms/s for all {r['n']} processes"
                     f"{', ' + str(r['lost_rounds']) + ' round(s) incomplete after 10 s' if r['lost_rounds'] else ''})")
    by = {r["impl"]: r for r in rows if "skipped" not in r}
    if "ours" in by and "stock" in by:
        x = by["ours"]["ms_per_delivery"] / by["stock"]["ms_per_delivery"]
        lines.append(f"  ours / stock py-libp2p: {x:.2f} (goal <= 0.5: {'met' if x <= 0.5 else 'NOT met'})")
    if "ours" in by and "js" in by:
        lines.append(f"  ours / js-libp2p: {by['ours']['ms_per_delivery'] / by['js']['ms_per_delivery']:.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks._netcost", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="ours, stock, js, and ours-without-<change>[+<change>] (idontwant, record: issue #23's "
                         "changes, yamux: issue #18's, taken back to measure each)")
    ap.add_argument("--profile", default="", metavar="DIR",
                    help="cProfile node 1 of each Python implementation into DIR/<impl>-node1.prof (diagnosis only)")
    args = ap.parse_args(argv)
    print(f"CPU per delivered message, n={args.n} processes per implementation, ring + chords (seed {args.seed}), "
          f"{args.rounds} rounds of one 40-byte message from every node:", flush=True)
    rows = compare(args.n, args.rounds, args.seed, tuple(args.impls.split(",")),
                   str(Path(args.profile).resolve()) if args.profile else "")
    print("\n".join(report(rows)))


if __name__ == "__main__":
    main()
