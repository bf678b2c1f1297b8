"""The request benchmark's CPU accounting (``benchmarks._cpu``) and its reading of a daemon's counters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from benchmarks._cpu import CpuSampler, children, floor_line
from benchmarks.request import busy, work_line


def test_the_sampler_counts_a_busy_child_and_not_an_idle_window():
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, "
                               f"'-c', {spin!r}])"])
    try:
        with CpuSampler({"R": parent.pid}, interval=0.02) as cpu:
            t0 = time.time()
            end = time.monotonic() + 30
            while time.monotonic() < end and cpu.samples[-1].get("R/enclave", 0.0) < 0.6:
                time.sleep(0.05)
            t1 = time.time()
            time.sleep(0.3)
            t2 = time.time()
            time.sleep(0.1)
        busy_w, idle_w = cpu.window(t0, t1), cpu.window(t1 + 0.05, t2)
        assert busy_w["R/enclave"] >= 0.4  # the child ("enclave") spun 0.6 s, most of it inside the window
        assert busy_w["R"] < 0.3  # its parent waited
        assert idle_w["R/enclave"] < 0.1  # then slept
        line = floor_line({"R": 0.2, "R/enclave": 0.6, "P1": 0.5, "P2": 0.3, "P1/enclave": 0.1}, 1.0, cores=2)
        assert line.startswith("CPU floor  0.85 s (1.70 CPU s / 2 cores")
        assert "P* 0.80" in line and "R/enclave 0.60" in line and "P*/enclave 0.10" in line
    finally:
        for pid in children(parent.pid):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_busy_is_what_the_counters_grew_by():
    before = {"enclave": {"calls": {"Sign": {"calls": 2, "call_s": 0.5, "wait_s": 0.1}}},
              "driver": {"protocols": {"ContractRun": {"handles": 3, "handle_s": 1.0, "wait_s": 0.0}}}}
    after = {"enclave": {"calls": {"Sign": {"calls": 5, "call_s": 0.8, "wait_s": 0.1},
                                   "ListKeys": {"calls": 1, "call_s": 0.25, "wait_s": 0.0}}},
             "driver": {"protocols": {"ContractRun": {"handles": 3, "handle_s": 1.0, "wait_s": 0.0}}}}
    w = busy(before, after)
    assert w["calls"]["Sign"]["calls"] == 3 and abs(w["calls"]["Sign"]["call_s"] - 0.3) < 1e-9
    assert w["calls"]["ListKeys"]["calls"] == 1 and w["handles"] == {}  # ContractRun did not move
    assert work_line(w).startswith("enclave 4 calls 0.55 s (0.00 s waiting; Sign 3x 0.30 s, ListKeys 1x 0.25 s)")
