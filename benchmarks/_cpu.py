"""CPU seconds of a benchmark's processes over a time window, read from ``/proc`` by a background sampler.

``CpuSampler(roots)`` samples, every ``interval`` seconds, the user + system CPU time (``/proc/PID/stat``) of each
root process and of its children (a daemon's enclave process), with the wall time (``time.time()``, the
daemons' own clock). ``window(t0, t1)`` is each process's CPU over ``[t0, t1]``, read between the samples around
each end (linear in between). The "CPU floor" of a phase is the CPU of every process over it divided by the
cores: no schedule of that work on this machine can end sooner, whatever runs concurrently.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

from benchmarks._netcost import cpu_seconds


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's list), [] when it is gone."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


class CpuSampler:
    """``roots``: name -> pid. The processes sampled: each root (``name``) and each of its children
    (``name/enclave`` for one child, ``name/child<pid>`` when there are more)."""

    def __init__(self, roots: dict[str, int], interval: float = 0.05) -> None:
        self.roots, self.interval = roots, interval
        self.times: list[float] = []
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def pids(self) -> dict[str, int]:
        out = {}
        for name, pid in self.roots.items():
            out[name] = pid
            kids = children(pid)
            for k in kids:
                out[f"{name}/enclave" if len(kids) == 1 else f"{name}/child{k}"] = k
        return out

    def sample(self) -> None:
        row = {}
        for name, pid in self.pids().items():
            try:
                row[name] = cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                pass
        self.times.append(time.time())
        self.samples.append(row)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "CpuSampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, t: float) -> dict[str, float]:
        """Each process's CPU seconds at wall time ``t`` (interpolated between the samples around it)."""
        i = bisect.bisect_left(self.times, t)
        if i <= 0:
            return dict(self.samples[0])
        if i >= len(self.times):
            return dict(self.samples[-1])
        t0, t1, a, b = self.times[i - 1], self.times[i], self.samples[i - 1], self.samples[i]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        return {k: a.get(k, 0.0) + f * (b[k] - a.get(k, 0.0)) for k in b}  # (a process started since: from 0)

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds each process used between wall times ``t0`` and ``t1`` (one started meanwhile: all its
        CPU; one gone by ``t1`` is not counted)."""
        a, b = self.at(t0), self.at(t1)
        return {k: b[k] - a.get(k, 0.0) for k in b}


def floor_line(cpu: dict[str, float], seconds: float, cores: int | None = None) -> str:
    """'CPU floor X s (all processes' CPU C s / N cores)' and each group of processes (R, its enclave, the providers' daemons P*, their enclaves...)."""
    cores = cores or os.cpu_count() or 1
    total = sum(cpu.values())
    groups: dict[str, float] = {}
    for name, v in cpu.items():  # R, R/enclave, the providers' daemons (P*), their enclaves, ledger, boot
        daemon, _, child = name.partition("/")
        key = ("P*" if daemon.startswith("P") and daemon[1:].isdigit() else daemon) + (f"/{child}" if child else "")
        groups[key] = groups.get(key, 0.0) + v
    top = sorted(groups.items(), key=lambda kv: -kv[1])
    return (f"CPU floor {total / cores:5.2f} s ({total:.2f} CPU s / {cores} cores over the {seconds:.2f} s phase); "
            f"by process: {', '.join(f'{k} {v:.2f}' for k, v in top)}")
