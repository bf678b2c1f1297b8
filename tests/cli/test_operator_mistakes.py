"""Issue #21: an operator's CLI mistakes get one clear line (and the right exit code), never a traceback or a
silent wrong action. Each test drives ``python -m node`` as a user would: a subprocess, its exit code, stderr."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_fixtures import ctrl_c_default, one_line_error
from tests.functional.framework import QUICK_REQUESTS, Process

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def ks(*args, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env=env or ENV)


def start(args: list, log: Path, env: dict[str, str] | None = None) -> Process:
    """``python -m node ARGS`` (``env`` added to this process's), its output in ``log``."""
    return Process(log.stem, [sys.executable, "-m", "node", *map(str, args)], log, env).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ a mistyped --datadir
@pytest.mark.parametrize("cmd", [
    ["vault", "new", "--keys", "1"],
    ["deposit", "--asset", "BTC-REG", "--chunks", "1"],
    ["deposits"],
    ["config", "show"],
    ["run"],
    ["stop"],
])
def test_a_mistyped_datadir_is_refused_not_made_into_a_new_node(tmp_path, cmd):
    typo = tmp_path / "nodee"
    r = ks("--datadir", typo, *cmd, timeout=60)
    line = one_line_error(r)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert str(typo) in line and f"keyswitch --datadir {typo} init" in line
    assert not typo.exists()  # no identity, enclave, ledger or funded chunk made there


def test_an_empty_folder_is_not_a_data_directory_but_init_makes_one(tmp_path):
    d = tmp_path / "n"
    d.mkdir()
    r = ks("--datadir", d, "vault", "new", "--keys", "1")
    assert r.returncode == 2 and "keyswitch --datadir" in one_line_error(r)
    assert list(d.iterdir()) == []
    assert ks("--datadir", d, "init").returncode == 0
    r = ks("--datadir", d, "vault", "new", "--keys", "1")
    assert r.returncode == 0, r.stderr
    # help never needs a data directory
    assert ks("--datadir", tmp_path / "nothing", "vault", "new", "-h").returncode == 0


# ------------------------------------------------------------------ version, -h
def test_version_and_h_alias():
    r = ks("--version")
    assert r.returncode == 0 and r.stdout.startswith("keyswitch ") and r.stdout.split()[1][0].isdigit(), r
    h = ks("-h")
    assert h.returncode == 0 and "Usage" in h.stdout and "deposit" in h.stdout, h.stderr
    assert ks("deposit", "-h").stdout == ks("deposit", "--help").stdout


# ------------------------------------------------------------------ DNS bootnodes
def test_a_dns_bootnode_is_refused_at_config_check(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    boot = "/dns4/boot.example.org/tcp/4001/p2p/12D3KooWGzh9Qb7Lw3Hzq4XW3nRz6JY3mAi2a2ZGqSQ8cpaKJ3V1"
    r = ks("--datadir", d, "config", "show", env=dict(ENV, KEYSWITCH_NETWORK_BOOTNODES=boot))
    line = one_line_error(r)
    assert r.returncode == 2 and "network.bootnodes" in line and "DNS bootnodes are not dialled" in line
    log = tmp_path / "run.out"
    p = start(["--datadir", d, "run", "--bootnodes", boot], log)
    rc, out = p.finish(60)
    assert rc == 2, out[-3000:]  # on the old code: the node ran with 0 peers and no warning
    assert "DNS bootnodes are not dialled" in out and "Traceback" not in out
    b = ks("bootstrap", "--datadir", tmp_path / "b", "--bootnodes", boot, timeout=60)
    assert b.returncode == 2 and "DNS bootnodes" in one_line_error(b)


# ------------------------------------------------------------------ ports in use
def test_a_swarm_api_or_metrics_port_in_use_is_one_line_naming_the_port(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    # a listener as py-libp2p opens its swarm port: SO_REUSEADDR + SO_REUSEPORT
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        for flags, setting in ((["--listen", f"/ip4/127.0.0.1/tcp/{port}"], "network.listen"),
                               (["--api-port", port], "api.port"),
                               (["--metrics-port", port], "api.metrics_port")):
            log = tmp_path / f"{setting}.out"
            p = start(["--datadir", d, "run", *flags], log)
            rc, out = p.finish(60)
            assert rc == 2, (setting, rc, out[-3000:])  # old code: swarm shared the port; API: 100-line traceback
            assert "Traceback" not in out and "ExceptionGroup" not in out, out[-3000:]
            errors = [l for l in out.splitlines() if l.startswith("error: ")]
            assert len(errors) == 1 and str(port) in errors[0] and setting in errors[0], out[-3000:]
            assert "\nready " not in "\n" + out  # never started
        b = ks("bootstrap", "--datadir", tmp_path / "b", "--listen", f"/ip4/127.0.0.1/tcp/{port}", timeout=60)
        assert b.returncode == 2, b.stdout + b.stderr
        line = one_line_error(b)
        assert str(port) in line and "network.listen" in line
    finally:
        holder.close()


def test_two_nodes_on_one_fixed_swarm_port_second_refused(tmp_path):
    port = free_port()
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert ks("--datadir", d, "init").returncode == 0
    la, lb = tmp_path / "a.out", tmp_path / "b.out"
    pa = start(["--datadir", a, "run", "--listen", f"/ip4/127.0.0.1/tcp/{port}"], la)
    try:
        pa.wait_line("ready ")
        pb = start(["--datadir", b, "run", "--listen", f"/ip4/127.0.0.1/tcp/{port}"], lb)
        rc, out = pb.finish(60)
        assert rc == 2, out[-3000:]  # old code: both printed "swarm listening on .../tcp/<port>"
        assert f"swarm port 127.0.0.1:{port} is already in use (network.listen" in out
        assert f"swarm listening on /ip4/127.0.0.1/tcp/{port}" not in out
    finally:
        pa.stop(timeout=30)


# ------------------------------------------------------------------ the data directory lock, stop, request --json
def test_second_daemon_on_a_datadir_gets_one_line_and_stop_stops_the_first(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    log = tmp_path / "a.out"
    p = start(["--datadir", d, "run"], log, env=QUICK_REQUESTS)  # its requests below find no peer
    try:
        p.wait_line("ready ")
        log2 = tmp_path / "b.out"
        p2 = start(["--datadir", d, "run"], log2)
        rc, out = p2.finish(60)
        assert rc == 3, out[-3000:]
        assert "Traceback" not in out and "ExceptionGroup" not in out, out[-3000:]
        assert [l for l in out.splitlines() if l.strip()] == [
            f"error: Cannot obtain a lock on data directory {d}. Keyswitch is probably already running "
            f"(stop it with `keyswitch --datadir {d} stop`)."]

        # --json and the table agree on the exit code when nothing is allocated (no peers here)
        table = ks("--datadir", d, "request", "--asset", "BTC-REG", "--usd", "10")
        js = ks("--datadir", d, "request", "--asset", "BTC-REG", "--usd", "10", "--json")
        assert table.returncode == 4, table.stdout + table.stderr
        assert js.returncode == 4, js.stdout + js.stderr  # old code: 0
        assert json.loads(js.stdout)["ok"] is False
        # a request to contracts too (--give): nothing allocated is exit 4 for both, the reason on the last line
        table = ks("--datadir", d, "request", "--asset", "BTC-REG", "--usd", "10", "--give", "ETH-DEV")
        js = ks("--datadir", d, "request", "--asset", "BTC-REG", "--usd", "10", "--give", "ETH-DEV", "--json")
        assert table.returncode == 4 and table.stdout.splitlines()[-1].startswith("no-allocation: "), table.stdout
        assert js.returncode == 4 and json.loads(js.stdout)["state"] == "no-allocation", js.stdout + js.stderr

        s = ks("--datadir", d, "stop", timeout=60)
        assert s.returncode == 0, s.stdout + s.stderr  # old code: no such command (exit 2)
        assert "stopped" in s.stdout
        assert p.wait(30) == 0
        assert "stopped" in log.read_text()
        assert not (d / ".cookie").exists() and not (d / "keyswitch.pid").exists()
        again = ks("--datadir", d, "stop")
        assert again.returncode == 3 and "no daemon running" in one_line_error(again)
    finally:
        p.stop(timeout=30)


# ------------------------------------------------------------------ keyswitch bootstrap
def test_keyswitch_bootstrap_runs_the_bootstrap_node(tmp_path):
    log = tmp_path / "boot.out"
    p = start(["bootstrap", "--datadir", tmp_path / "b", "--net", "t"], log)
    try:
        text = p.wait_line("\nready ").string  # as `keyswitch run` prints it (old: READY); the lines
        assert "LISTEN /ip4/127.0.0.1/tcp/" in text and "/p2p/" in text  # framework.py and `keyswitch dev` parse
        assert "READY" not in text
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    assert "stopped" in log.read_text().splitlines()
    h = subprocess.run([sys.executable, "-m", "bootstrap", "-h"], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert h.returncode == 0 and "--listen" in h.stdout


# ------------------------------------------------------------------ Ctrl-C during deposit --wait
def test_ctrl_c_during_deposit_wait_says_what_was_made(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    p = subprocess.Popen([sys.executable, "-m", "node", "--datadir", str(d), "deposit", "--asset", "BTC-REG",
                          "--chunks", "2", "--wait", "1000", "--block-interval", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
                         preexec_fn=ctrl_c_default)
    seen = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and "waiting for 1000" not in seen:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    assert "waiting for 1000" in seen, seen
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    err = seen + err
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert "2 deposit(s) are made and funded" in err and "bcrt1q" in err, err  # old code: silent
    assert f"keyswitch --datadir {d} deposits" in err
    listed = ks("--datadir", d, "deposits", "--json")
    assert len(json.loads(listed.stdout)["deposits"]) == 2
