import os
import re
import signal
import subprocess
import sys
from pathlib import Path


def run_demo(timeout: float, log: Path) -> subprocess.CompletedProcess:
    """``python -m node demo`` in a process group of its own, its output (stdout and stderr) in ``log``. Past
    ``timeout`` the whole group gets SIGTERM (then SIGKILL): the demo's daemons, dev ledger, anvil, litecoind
    and miner stop with it instead of running on, orphaned, and loading the machine for the tests after this one."""
    from node.dev.localnet import spawn

    p = spawn([sys.executable, "-m", "node", "demo"], log, new_session=True)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        raise AssertionError(f"the demo took more than {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}"
                             ) from None
    return subprocess.CompletedProcess(p.args, p.returncode, log.read_text(errors="replace"), "")


def test_make_demo_main_job_runs_end_to_end(tmp_path):
    from tests.functional.framework import FACTOR

    out = run_demo(timeout=240 * FACTOR, log=tmp_path / "demo.out")  # (KS_TIMEOUT_FACTOR, as every other wait)
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
    from node.dev.localnet import find_anvil

    flat = " ".join(out.stdout.split())  # rich wraps lines at the terminal width
    if find_anvil():
        assert "ETH-DEV on anvil (a real EVM node)" in flat
        assert "every daemon serves ETH-DEV from anvil (5/5 say so at start)" in flat
        assert flat.count(" ETH-DEV = the chunk's ") == 2 and flat.count(" gas") >= 2  # bob's two chunks
        assert "does not add up" not in out.stdout
    else:
        assert "ETH-DEV on the dev ledger: anvil not installed" in flat
    # LTC-REG on litecoind when it is installed (make test installs it): alice's leg of the swap is real
    # segwit transactions there, each claim read back from litecoind with its txid and the fee it paid
    from node.dev.localnet import find_litecoind

    if find_litecoind():
        assert "LTC-REG on litecoind (a real Bitcoin-family node, regtest)" in flat
        assert "every daemon serves LTC-REG from litecoind (5/5 say so at start)" in flat
        assert "A swap: alice's LTC-REG chunks on litecoind for bob's ETH-DEV" in flat
        claims = re.findall(r"on litecoind, sweep ([0-9a-f]{64}) \(block (\d+)\): claimed ([0-9.]+) LTC-REG = "
                            r"the chunk's ([0-9.]+) minus a (\d+) sat fee", flat)
        assert len(claims) == 2 and len({c[0] for c in claims}) == 2, flat[-4000:]  # bob's two chunks
        for _, _, got, chunk, fee in claims:
            assert int(fee) > 0 and round(float(chunk) * 1e8) - round(float(got) * 1e8) == int(fee)
        assert "litecoind's blocks: its time-lock counts a real chain's height" in flat  # the escrow
        assert "does not add up" not in out.stdout
    else:
        assert "LTC-REG on the dev ledger: litecoind not installed" in flat


def test_a_failed_demo_keeps_its_data_directory_and_says_where(tmp_path, monkeypatch):
    """The demo's red lines name the logs' folder: a failed run must not delete it (a passing one does)."""
    import tempfile

    import node.dev.demo
    from node.cli import _load, app
    from typer.testing import CliRunner

    _load()
    made = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda prefix="": made.append(tmp_path / f"{prefix}{len(made)}")
                        or made[-1].mkdir() or str(made[-1]))
    for ok in (False, True):
        monkeypatch.setattr(node.dev.demo, "run_demo", lambda root, ok=ok: (root / "net").mkdir() or ok)
        r = CliRunner().invoke(app, ["demo"])
        assert r.exit_code == (0 if ok else 1), r.output
        assert made[-1].exists() == (not ok), r.output
        assert ("demo data kept in" in r.output) == (not ok)
