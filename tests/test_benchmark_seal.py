"""The sealed-write benchmark in its quick mode: a release sealed after 100 and after 1,000 earlier releases,
bytes per seal beside the whole state, and verdict lines that agree with the figures and the exit status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_seal_benchmark_prints_a_row_per_history_and_verdicts_that_follow_from_them():
    out = subprocess.run([sys.executable, "-m", "benchmarks.seal", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    text = out.stdout
    assert out.returncode in (0, 1), out.stderr[-3000:]
    rows = {int(h.replace(",", "")): (float(w), float(c), int(b.replace(",", "")), int(s.replace(",", "")))
            for h, w, c, b, s in re.findall(r"^\s*([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d,]+)\s+([\d,]+)$", text, re.M)}
    assert set(rows) == {100, 1_000}, text
    (w0, _, b0, s0), (w1, _, b1, s1) = rows[100], rows[1_000]
    assert s1 > 5 * s0 and s1 > 100_000  # the history grew the state ...
    assert 0 < b1 < 2_000 and b1 < s1 / 100  # ... and a seal wrote what changed, not the state
    verdicts = dict(re.findall(r"^(bytes|time) per seal .*?: ([\d.]+)x \(target", text, re.M))
    assert abs(float(verdicts["bytes"]) - b1 / b0) < 0.01 + 0.01 * b1 / b0, text
    assert abs(float(verdicts["time"]) - w1 / w0) < 0.01 + 0.02 * w1 / w0, text
    met = re.findall(r": (MET|MISSED)$", text, re.M)
    assert len(met) == 2 and (met == ["MET", "MET"]) == (out.returncode == 0), text
