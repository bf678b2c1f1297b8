"""The evidence benchmark runs (tiny iteration counts) and prints a line for every format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "testdata" / "attestation"
FORMATS = ["DCAP SGX", "DCAP TDX", "AWS Nitro", "AMD SEV-SNP", "Intel IAS", "simulated quote"]


def run(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "benchmarks.evidence", "--quick", "--n", "3", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(not SAMPLES.exists(), reason=f"attestation samples not found at {SAMPLES}")
def test_quick_run_prints_every_format_and_the_anchors():
    text = run()
    for name in ("ECDSA P-256", "ECDSA P-384", "RSA-2048"):
        assert f"{name}" in text and "verify" in text
    lines = text.splitlines()
    for fmt in FORMATS:
        line = next((ln for ln in lines if ln.strip().startswith(fmt)), None)
        assert line is not None, f"no line for {fmt}:\n{text}"
        assert "x ECDSA P-" in line or "x RSA-2048" in line
        assert "within a few" in line or "MORE than a few" in line
    assert "formats within a few (<= 10) raw verifications of their own kind:" in text


def test_without_samples_only_the_sim_quote_is_measured(tmp_path):
    text = run("--samples", str(tmp_path / "nowhere"))
    assert "attestation samples not found" in text and "simulated quote" in text and "DCAP" not in text
