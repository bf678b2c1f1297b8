import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_main_job_runs_end_to_end():
    out = subprocess.run([sys.executable, "-m", "node", "demo"], capture_output=True, text=True, timeout=240,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SIMULATED" in out.stdout
    assert "binding-mismatch" in out.stdout and "measurement-not-allowed" in out.stdout
    assert "every node holds every other node's attested offers" in out.stdout
    assert "the swap completed: every key released once, each side claimed what it got" in out.stdout
    assert "view of bob's device: score +2.00" in out.stdout
    # the broken TEE: announced, caught by a proof assembled from the victims' reports, dropped everywhere
    assert "the escrow paid out on the arbiter's approval" in out.stdout
    assert "the option was exercised: premium and strike to alice, the underlying to bob" in out.stdout
    assert "BROKEN SIMULATED TEE (double-release)" in out.stdout
    assert "mallory was caught: the two release records met in the outcome reports" in out.stdout
    assert "every node's view of mallory: a cheater with 0 exposure, its offers gone" in out.stdout
    # ETH-DEV on anvil when it is installed (make test installs it), else on the dev ledger, said either way
    from node.localnet import find_anvil

    flat = " ".join(out.stdout.split())  # rich wraps lines at the terminal width
    if find_anvil():
        assert "ETH-DEV on anvil (a real EVM node)" in flat
        assert "every daemon serves ETH-DEV from anvil (5/5 say so at start)" in flat
        assert flat.count(" ETH-DEV = the chunk's ") == 2 and flat.count(" gas") >= 2  # bob's two chunks
        assert "does not add up" not in out.stdout
    else:
        assert "ETH-DEV on the dev ledger: anvil not installed" in flat


def test_a_failed_demo_keeps_its_data_directory_and_says_where(tmp_path, monkeypatch):
    """The demo's red lines name the logs' folder: a failed run must not delete it (a passing one does)."""
    import tempfile

    import node.demo
    from node.cli import _load, app
    from typer.testing import CliRunner

    _load()
    made = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda prefix="": made.append(tmp_path / f"{prefix}{len(made)}")
                        or made[-1].mkdir() or str(made[-1]))
    for ok in (False, True):
        monkeypatch.setattr(node.demo, "run_demo", lambda root, ok=ok: (root / "net").mkdir() or ok)
        r = CliRunner().invoke(app, ["demo"])
        assert r.exit_code == (0 if ok else 1), r.output
        assert made[-1].exists() == (not ok), r.output
        assert ("demo data kept in" in r.output) == (not ok)
