"""Issue #21, the operator's remaining commands, driven as an operator runs them (``python -m node`` in a
subprocess) against real daemons on 127.0.0.1: a bootstrap node, daemon A (with the bootstrap node as its
bootnode) and daemon B. ``status --wait`` is started before A exists and must return once A is ready.

``peers`` (address, direction, ping, agent, mesh, the bootstrap node labelled), ``id``, ``connect``, ``logs``,
``status --wait``, ``balance`` and ``completion bash``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.cli_fixtures import ctrl_c_default, one_line_error
from tests.functional.framework import FACTOR, Network, Process, terminate

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", COLUMNS="80", TERM="dumb")

pytestmark = pytest.mark.network


def ks(*args, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout * FACTOR, env=env or ENV)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    with Network(tmp, net="opsnet") as network:

        def start(args: list, log: Path) -> Process:
            return network.add_process(log.stem, [sys.executable, "-m", "node", *map(str, args)],
                                       env={"COLUMNS": "80", "TERM": "dumb"}, log=log)

        boot = start(["bootstrap", "--datadir", tmp / "boot", "--net", "opsnet"], tmp / "boot.out")
        boot_addr = boot.wait_line(r"^LISTEN (\S+)").group(1)
        a, b = tmp / "a", tmp / "b"
        for d in (a, b):
            assert ks("--datadir", d, "init").returncode == 0
        # an operator's script: start the daemon, wait until it is ready; the waiter starts first
        waiter = subprocess.Popen([sys.executable, "-m", "node", "--datadir", str(a), "status", "--wait",
                                   str(180 * FACTOR)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=ROOT, env=ENV)
        try:
            time.sleep(1)
            assert waiter.poll() is None  # (no daemon yet: still waiting, not failed)
            pa = start(["--datadir", a, "run", "--net", "opsnet", "--bootnodes", boot_addr], tmp / "a.out")
            pb = start(["--datadir", b, "run", "--net", "opsnet"], tmp / "b.out")
            out, err = waiter.communicate(timeout=200 * FACTOR)
        finally:
            terminate(waiter)
        ready_at = (a / "api.url").exists()
        pb.wait_line(r"^ready ")
        yield SimpleNamespace(tmp=tmp, a=a, b=b, boot=boot_addr, boot_id=boot_addr.rsplit("/", 1)[-1],
                              waited=(waiter.returncode, out, err, ready_at), pa=pa, pb=pb)


def ident(d: Path) -> dict:
    r = ks("--datadir", d, "id", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_status_wait_returns_once_the_daemon_is_ready(net):
    rc, out, err, ready_at = net.waited
    assert rc == 0, err  # old code: no such option (exit 2)
    assert ready_at and re.search(r"^ready\s+yes$", out, re.M), out


def test_status_wait_times_out_with_one_line_and_exit_3(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    t0 = time.monotonic()
    r = ks("--datadir", d, "status", "--wait", "1")
    assert r.returncode == 3 and "not ready within 1 s" in one_line_error(r)
    assert time.monotonic() - t0 < 60 * FACTOR
    assert ks("--datadir", d, "status", "7").returncode == 2  # a number without --wait is a mistake


def test_peers_show_address_direction_ping_agent_mesh_and_the_bootstrap_label(net):
    def listing():
        r = ks("--datadir", net.a, "peers", "--json")
        assert r.returncode == 0, r.stderr
        return {p["peer"]: p for p in json.loads(r.stdout)["peers"]}

    deadline = time.monotonic() + 60 * FACTOR
    while time.monotonic() < deadline:
        rows = listing()
        if net.boot_id in rows and rows[net.boot_id]["latency_ms"] is not None and rows[net.boot_id]["agent"]:
            break
        time.sleep(0.5)
    row = rows[net.boot_id]
    assert row["bootstrap"] is True and row["direction"] == "out" and row["in_offer_mesh"] is False, row
    assert net.boot.startswith(row["address"] + "/p2p/"), (row, net.boot)
    assert row["agent"].startswith("keyswitch/"), row
    out = ks("--datadir", net.a, "peers").stdout
    assert max(map(len, out.splitlines())) <= 80, out
    assert re.search(r"│\s+bootstrap\s+│", out), out  # the label under the bootstrap node's id
    assert "out" in out and " ms " in out and "score" in out and "dropped" in out, out
    assert re.search(rf"^#\d {re.escape(row['address'])}  bootstrap node, keyswitch/", out, re.M), out


def test_id_connect_and_the_other_side_sees_an_inbound_peer(net):
    a, b = ident(net.a), ident(net.b)
    assert a["source"] == "the running daemon" and re.fullmatch(r"[0-9a-f]{64}", a["device_id"]), a
    assert b["give_others"] in b["listen"] and b["give_others"].endswith("/p2p/" + b["peer_id"]), b
    text = ks("--datadir", net.b, "id").stdout
    assert b["peer_id"] in text and b["give_others"] in text.splitlines(), text  # whole, on its own line

    r = ks("--datadir", net.a, "connect", b["give_others"])
    assert r.returncode == 0, r.stderr  # old code: no such command
    assert f"connected to {b['peer_id']} (out, ping " in r.stdout, r.stdout
    rows = {p["peer"]: p for p in json.loads(ks("--datadir", net.b, "peers", "--json").stdout)["peers"]}
    assert rows[a["peer_id"]]["direction"] == "in", rows

    bad = ks("--datadir", net.a, "connect", "/ip4/127.0.0.1/tcp/4001")
    assert bad.returncode == 2 and "needs /p2p/<peer id>" in one_line_error(bad)
    dns = ks("--datadir", net.a, "connect", f"/dns4/example.org/tcp/4001/p2p/{b['peer_id']}")
    assert dns.returncode == 2 and "DNS" in one_line_error(dns)
    ghost = ident_of_fresh(net.tmp / "ghost")
    dead = ks("--datadir", net.a, "connect", b["give_others"].split("/p2p/")[0] + f"/p2p/{ghost}")
    assert dead.returncode == 4 and "could not connect" in one_line_error(dead), dead.stderr


def ident_of_fresh(d: Path) -> str:
    from node import identity

    return identity.peer_id(d)


def test_id_without_a_daemon_reads_the_data_directory(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    got = ident(d)
    from node import identity

    assert got["peer_id"] == identity.peer_id(d) and "no daemon running" in got["source"], got
    assert got["listen"] == [f"/ip4/127.0.0.1/tcp/0/p2p/{got['peer_id']}"] and re.fullmatch(r"[0-9a-f]{64}",
                                                                                            got["device_id"])


def test_logs_prints_the_last_lines_and_follows(net):
    log = net.a / "keyswitch.log"
    assert log.exists()  # written by default (log.file = keyswitch.log in the data directory)
    r = ks("--datadir", net.a, "logs", "-n", "1000")
    assert r.returncode == 0 and "listening on" in r.stdout, r.stdout[-2000:] + r.stderr
    assert len(ks("--datadir", net.a, "logs", "-n", "2").stdout.splitlines()) == 2

    f = subprocess.Popen([sys.executable, "-m", "node", "--datadir", str(net.a), "logs", "-f", "-n", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV,
                         preexec_fn=ctrl_c_default)
    try:
        time.sleep(2 * FACTOR)  # (it reads the end of the file first: what is written after comes out)
        marker = f"marker-{time.time_ns()}"
        with open(log, "a") as fh:
            fh.write(marker + "\n")
        deadline = time.monotonic() + 60 * FACTOR
        seen = ""
        while time.monotonic() < deadline and marker not in seen:
            seen += f.stdout.readline()
        assert marker in seen, seen
        f.send_signal(signal.SIGINT)
        assert f.wait(30) == 0 and "Traceback" not in f.stderr.read()
    finally:
        terminate(f)


def test_logs_without_a_log_file_says_so_in_one_line(tmp_path):
    d = tmp_path / "n"
    assert ks("--datadir", d, "init").returncode == 0
    r = ks("--datadir", d, "logs")
    assert r.returncode == 3 and "no log at" in one_line_error(r)
    r = ks("--datadir", d, "logs", env=dict(ENV, KEYSWITCH_LOG_FILE=""))
    assert r.returncode == 2 and "log.file is empty" in one_line_error(r)


def test_balance_with_nothing_claimed(net):
    r = ks("--datadir", net.a, "balance")
    assert r.returncode == 0 and "nothing claimed" in r.stdout, r.stdout + r.stderr
    assert json.loads(ks("--datadir", net.a, "balance", "--json").stdout) == {"claims": [], "totals": []}


def test_bash_completion_completes_the_commands(tmp_path):
    script = ks("completion", "bash")
    assert script.returncode == 0 and "_KEYSWITCH_COMPLETE" in script.stdout, script.stdout + script.stderr
    (tmp_path / "ks.bash").write_text(script.stdout)
    shim = tmp_path / "bin" / "keyswitch"  # the installed entry point, as the script calls it
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m node \"$@\"\n")
    shim.chmod(0o755)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        code = (f"source {tmp_path / 'ks.bash'}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                "_keyswitch_completion keyswitch; printf '%s\\n' \"${COMPREPLY[@]}\"")
        env = dict(ENV, PATH=f"{shim.parent}{os.pathsep}{ENV['PATH']}")
        r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=60 * FACTOR)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    every = complete("keyswitch", "")
    assert {"peers", "id", "connect", "balance", "logs", "status", "completion", "run"} <= set(every), every
    assert sorted(complete("keyswitch", "co")) == ["completion", "config", "connect", "contracts"]
    assert "--follow" in complete("keyswitch", "logs", "--")
    for shell in ("zsh", "fish"):
        r = ks("completion", shell)
        assert r.returncode == 0 and "_KEYSWITCH_COMPLETE" in r.stdout
