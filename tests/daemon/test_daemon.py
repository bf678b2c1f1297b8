"""The daemon as an operator runs it: `keyswitch run` in its own process, the CLI and API against it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import coincurve
import httpx
import pytest

from node.assets import address_for
from node.dev.localnet import init_datadir
from tests.functional.framework import QUICK_REQUESTS, Daemon, Process

ROOT = Path(__file__).resolve().parents[2]


def cli(datadir, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "node", "--datadir", str(datadir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "node", env=QUICK_REQUESTS)
    yield d
    d.stop()


def test_readiness_lines_cli_and_auth(daemon):
    url = daemon.value("API listening on ")
    assert url.startswith("http://127.0.0.1:")
    swarm = daemon.value("swarm listening on ")
    assert swarm.startswith("/ip4/127.0.0.1/tcp/") and "/p2p/12D3Koo" in swarm
    st = json.loads(cli(daemon.datadir, "status", "--json").stdout)
    assert st["ready"] and st["enclave"]["simulated"] is True and swarm.endswith(st["peer_id"])
    for cmd, key in [("peers", "peers"), ("offers", "offers"), ("deposits", "deposits"),
                     ("contracts", "contracts"), ("reputation", "devices")]:
        out = cli(daemon.datadir, cmd, "--json")
        assert out.returncode == 0, out.stderr
        assert isinstance(json.loads(out.stdout)[key], list)
    table = cli(daemon.datadir, "status")
    assert table.returncode == 0 and "peer id" in table.stdout  # for people: one fact a line
    assert swarm in table.stdout.replace("\n", "")  # the multiaddr to copy, whole
    # deposit --wait beside a running daemon: made through its API, confirmations read from the shared ledger
    out = cli(daemon.datadir, "deposit", "--chunks", "1", "--wait", "2", "--block-interval", "0.1", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["confirmations"] >= 2
    assert httpx.get(url + "/v1/status").status_code == 401
    cookie = (daemon.datadir / ".cookie").read_text().strip()
    assert oct(os.stat(daemon.datadir / ".cookie").st_mode & 0o777) == "0o600"
    r = httpx.post(url + "/v1/deposits", content=b"{", headers={"Authorization": f"Bearer {cookie}"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    # a request on an empty network: answered (no allocation), with the reason, by the CLI
    out = cli(daemon.datadir, "request", "--asset", "BTC-REG", "--usd", "100", "--json")
    assert out.returncode == 4, out.stderr  # no allocation: the same exit code as the table below (issue #21)
    ans = json.loads(out.stdout)
    assert ans["ok"] is False and ans["reason"] == "the offer book holds no offers for this asset"
    out = cli(daemon.datadir, "request", "--asset", "BTC-REG", "--usd", "100")
    assert out.returncode == 4 and "no allocation" in out.stderr
    out = cli(daemon.datadir, "request", "--asset", "NOPE", "--usd", "100")
    assert out.returncode != 0 and "unknown asset" in out.stderr
    # the operator revokes a class: applied here at once (its own notice), with the reason
    out = cli(daemon.datadir, "revoke", "--class", "sgx:OutOfDate", "--reason", "test: a broken platform")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["applied_here"][0]["target"] == "sgx:OutOfDate"
    st = json.loads(cli(daemon.datadir, "status", "--json").stdout)
    assert st["revocations"]["applied"][0]["reason"] == "test: a broken platform"
    out = cli(daemon.datadir, "revoke", "--device", "zz", "--reason", "x")
    assert out.returncode != 0 and "32-byte hex" in out.stderr


def test_status_counts_trio_tasks_and_names_the_last_published_sheet(daemon):
    """``/v1/status`` ``tasks`` (what the soak watches for a task leak) and ``sheet`` (what every other book
    must hold for this origin: ``benchmarks.soak``)."""
    st = json.loads(cli(daemon.datadir, "status", "--json").stdout)
    assert isinstance(st["tasks"], int) and st["tasks"] > 5  # the API server, the host, the gossip, ...
    # ``task_groups``: the biggest groups of them by name (> where they wait), what tells a leak's cause (issue #22)
    groups = st["task_groups"]
    assert 0 < len(groups) <= 25 and sum(groups.values()) <= st["tasks"], groups
    assert all(k and isinstance(v, int) and v > 0 for k, v in groups.items()), groups
    assert st["sheet"] == {"seq": 0, "addresses": []}  # nothing deposited: no sheet
    out = cli(daemon.datadir, "deposit", "--chunks", "2", "--wait", "1", "--block-interval", "0.1", "--json")
    assert out.returncode == 0, out.stderr
    made = sorted(d["address"] for d in json.loads(out.stdout))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and st["sheet"]["addresses"] != made:
        time.sleep(0.2)
        st = json.loads(cli(daemon.datadir, "status", "--json").stdout)
    assert st["sheet"]["addresses"] == made and st["sheet"]["seq"] > 0, st["sheet"]


def test_graceful_sigterm_keeps_state_and_restarts(tmp_path):
    d = Daemon(tmp_path / "node")
    first = json.loads(cli(d.datadir, "status", "--json").stdout)
    assert d.stop(signal.SIGTERM) == 0
    out = d.output()
    assert "shutting down" in out and out.rstrip().endswith("stopped")
    assert not (d.datadir / ".cookie").exists() and not (d.datadir / "api.url").exists()
    gone = cli(d.datadir, "status")
    assert gone.returncode == 3 and "no daemon running" in gone.stderr
    again = Daemon(tmp_path / "node")
    try:
        second = json.loads(cli(again.datadir, "status", "--json").stdout)
        assert second["peer_id"] == first["peer_id"]
        assert second["enclave"]["device_id"] == first["enclave"]["device_id"]  # sealed state reopened
    finally:
        assert again.stop(signal.SIGINT) == 0


def test_two_daemons_exchange_offer_sheets(tmp_path):
    """A node's offers (made by the network test factory) reach a daemon's book; metrics count them."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    mport = s.getsockname()[1]
    s.close()
    a = Daemon(tmp_path / "a", "--metrics-port", str(mport))
    try:
        boot = a.value("swarm listening on ")
        b_dir = tmp_path / "b"
        proc = Process("b", [sys.executable, "-m", "node.runtime", "--datadir", str(b_dir), "--bootnodes", boot,
                             "--protocol", "node.dev.factory:offers_factory", "--opt", "republish=1", "--opt", "keys=3"],
                       tmp_path / "b.out").start()
        try:
            deadline = time.monotonic() + 60
            offers = []
            while time.monotonic() < deadline and len(offers) < 3:
                out = cli(a.datadir, "offers", "--json")
                offers = json.loads(out.stdout)["offers"] if out.returncode == 0 else []
                time.sleep(0.5)
            assert len(offers) == 3, a.output()
            assert {o["asset"] for o in offers} == {"BTC-REG"} and all(o["usd_cents"] == 5000 for o in offers)
            murl = a.value("metrics on ")
            text = ""
            for _ in range(30):
                text = httpx.get(murl).text
                if 'result="accept"' in text:
                    break
                time.sleep(0.3)
            assert 'keyswitch_gossip_messages_total{direction="in",reason="",result="accept"' in text, text
            assert "keyswitch_offers_in_book" in text and "keyswitch_peers 1.0" in text
            assert 'keyswitch_reputation_devices{band="[0,10)"}' in text
            assert 'keyswitch_requests{event="requests_in"} 0.0' in text and "keyswitch_revocations_applied 0.0" in text
        finally:
            proc.stop()
    finally:
        a.stop()


def test_deposit_offer_and_withdraw_across_two_daemons(tmp_path):
    """DESIGN steps 1-3 on real parts: keys in the enclave, funded on the dev ledger, offered, seen by a peer;
    then withdrawn (swept home) and retracted from the peer's book."""
    a = Daemon(tmp_path / "a")
    try:
        b = Daemon(tmp_path / "b", "--bootnodes", a.value("swarm listening on "))
        try:
            made = json.loads(cli(a.datadir, "deposit", "--asset", "BTC-REG", "--chunks", "2", "--json").stdout)
            assert len(made) == 2 and all(d["address"].startswith("bcrt1q") and d["usd_cents"] == 5000 for d in made)
            listed = json.loads(cli(a.datadir, "deposits", "--json").stdout)
            deps = listed["deposits"]
            assert listed["source"].startswith("daemon API (http://127.0.0.1:")
            assert {d["address"] for d in deps} == {d["address"] for d in made}
            assert all(d["confirmed"] == d["amount"] and d["key_state"] == "held" for d in deps)
            assert all(d["status"] == f"confirmed({d['confirmations']})" and d["confirmations"] >= 1 for d in deps)

            def book_of_b() -> list:
                out = cli(b.datadir, "offers", "--json")
                return json.loads(out.stdout)["offers"] if out.returncode == 0 else []

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(book_of_b()) < 2:
                time.sleep(0.5)
            assert {o["address"] for o in book_of_b()} == {d["address"] for d in made}
            # withdraw one chunk home: swept on the ledger, retracted from the peer's book
            url = a.value("API listening on ")
            cookie = (a.datadir / ".cookie").read_text().strip()
            home = address_for("BTC-REG", coincurve.PrivateKey(b"\x0b" * 32).public_key.format())
            r = httpx.post(url + "/v1/sweep", json={"deposit": made[0]["pubkey"], "to": home},
                           headers={"Authorization": f"Bearer {cookie}"}, timeout=60)
            assert r.status_code == 200, r.text
            assert not list((a.datadir / "owner-exports").glob("*.key"))  # swept: no exported key left on disk
            again = httpx.post(url + "/v1/sweep", json={"deposit": made[0]["pubkey"], "to": home},
                               headers={"Authorization": f"Bearer {cookie}"}, timeout=60)
            # the second sweep finds nothing to sweep: the ledger refuses, and the exported key is kept for
            # its owner (0600) rather than lost; the first, successful sweep left no key file behind
            assert again.status_code == 409 and "the ledger refused" in again.json()["error"]
            kept = list((a.datadir / "owner-exports").glob("*.key"))
            assert len(kept) == 1 and str(kept[0]) in again.json()["error"]
            assert oct(os.stat(kept[0]).st_mode & 0o777) == "0o600"
            assert kept[0].read_text().strip() not in (a.output() + again.text)  # the key itself is never echoed
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(book_of_b()) != 1:
                time.sleep(0.5)
            assert [o["address"] for o in book_of_b()] == [made[1]["address"]]
            status = {d["address"]: d["status"] for d in json.loads(cli(a.datadir, "deposits", "--json").stdout)["deposits"]}
            assert status[made[0]["address"]] == "swept" and status[made[1]["address"]].startswith("confirmed(")
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_hardware_backend_on_a_machine_without_it_is_refused_at_start(tmp_path):
    env = dict(os.environ, KEYSWITCH_TEE_BACKEND="configfs")
    init_datadir(tmp_path / "n")
    r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "n"), "run"], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "tee.backend='configfs'" in r.stderr and "/sys/kernel/config/tsm/report" in r.stderr
