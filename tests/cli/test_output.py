"""Output for people: log noise, attest verify wording, and the tables of status/peers/deposits/contracts."""

from __future__ import annotations

import io
import json
import logging

from node import logs


def test_httpx_request_lines_are_quiet_at_info():
    """A dev node's log was ~90 % httpx "HTTP Request: POST .../rpc" lines (logged at INFO by httpx). Checked in
    a fresh interpreter, as a daemon configures its logging at start (earlier tests of this process leave
    logging state of their own), with the state libraries may leave: a level on a child logger, loggers
    disabled by a dictConfig."""
    import subprocess
    import sys

    code = """
import io, json, logging, logging.config
from node import logs
logging.getLogger("httpx"); logging.getLogger("keyswitch")
logging.config.dictConfig({"version": 1})  # disable_existing_loggers, as a library's configuration may do
logging.getLogger("httpcore.connection").setLevel(logging.DEBUG)
buf = io.StringIO()
logs.configure(level="info", fmt="json", stream=buf)
logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1:1/rpc "HTTP/1.1 200 OK"')
logging.getLogger("httpcore.connection").info("connect_tcp.started")
logging.getLogger("httpx").warning("a real httpx problem")
logs.get("keyswitch").info("ours")
print(json.dumps([json.loads(l)["event"] for l in buf.getvalue().splitlines()]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout.strip().splitlines()[-1])
    assert "ours" in events and "a real httpx problem" in events, events
    assert not any("HTTP Request" in e or "connect_tcp" in e for e in events), events


def test_httpx_follows_debug_when_asked():
    buf = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=buf)
    logging.getLogger("httpx").info("HTTP Request: POST http://x/rpc")
    assert "HTTP Request" in buf.getvalue()


# ------------------------------------------------------------------ attest verify
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "testdata" / "attestation"


def ks(*a, datadir=None):
    pre = ["--datadir", str(datadir)] if datadir else []
    return subprocess.run([sys.executable, "-m", "node", *pre, *map(str, a)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def sim_quote(tmp_path_factory):
    d = tmp_path_factory.mktemp("attest") / "n"
    assert ks("init", datadir=d).returncode == 0
    assert ks("vault", "new", "--keys", "1", datadir=d).returncode == 0
    q = d.parent / "q.bin"
    out = ks("attest", "quote", "--out", q, datadir=d)
    assert out.returncode == 0, out.stderr
    return q


def test_verify_without_binding_says_the_binding_went_unchecked(sim_quote, tmp_path):
    lone = tmp_path / "lone.bin"
    lone.write_bytes(sim_quote.read_bytes())  # the quote alone, without lone.bin.binding.json
    r = ks("attest", "verify", lone)
    assert r.returncode == 0 and r.stdout.startswith("TRUSTED")
    assert "binding: NOT CHECKED" in r.stdout, r.stdout
    j = ks("attest", "verify", "--json", lone)
    assert json.loads(j.stdout)["binding_checked"] is False
    both = ks("attest", "verify", sim_quote)  # with its binding file: checked, and said so
    assert both.returncode == 0 and "binding: checked against" in both.stdout, both.stdout
    assert json.loads(ks("attest", "verify", "--json", sim_quote).stdout)["binding_checked"] is True


def test_verify_format_bogus_exits_2_with_one_line(sim_quote):
    r = ks("attest", "verify", "--format", "bogus", sim_quote)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "bogus" in lines[0] and "intel-dcap" in lines[0], r.stderr


@pytest.mark.skipif(not SAMPLES.exists(), reason=f"attestation samples not found at {SAMPLES}")
def test_expired_collateral_without_at_suggests_at():
    q = SAMPLES / "intel-dcap" / "sgx_quote_v3.bin"
    coll = SAMPLES / "intel-dcap" / "sgx_quote_v3_collateral.json"
    r = ks("attest", "verify", q, "--collateral", coll)
    assert r.returncode == 4 and "Expired" in r.stdout, r.stdout
    assert "--at" in r.stdout, r.stdout


# ------------------------------------------------------------------ tables for people
import http.server  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

PEER = "12D3KooWDBx973NP1SG7SVgGL7gefH6pwsRbmSfTBqqGucgtu6bc"
OTHER = "12D3KooWQm2bTHU8vLTrRpgmkqeMQnXfc5a9eP8S3ATz7YzWhN1H"
MADDR = f"/ip4/127.0.0.1/tcp/39989/p2p/{PEER}"
NOW = time.time()
CANNED = {
    "/v1/status": {"peer_id": PEER, "net": "dev", "listen": [MADDR], "peers": 1, "offers_in_book": 3,
                   "own_offers": 2, "uptime": 3725.4, "ready": True,
                   "enclave": {"simulated": True, "device_id": "6259c72c" * 8, "measurement": "ab" * 32,
                               "broken": ""},
                   "requests": {"made": 2, "ok": 1, "reasons": {"no offers": 1}},
                   "revocations": {"applied": 0}, "outcomes": {"seen": 0, "cheaters": []}},
    "/v1/peers": {"peers": [{"peer": OTHER, "in_offer_mesh": True, "bootstrap": False, "direction": "in",
                             "address": "/ip4/10.0.0.7/tcp/4001", "latency_ms": 0.4213, "agent": "keyswitch/0.1.0",
                             "score": 1.5, "score_components": {"p4_invalid": -2.0}, "below": [],
                             "publish_dropped": 0, "graylist_dropped": 3}]},
    "/v1/balance": {"claims": [], "totals": [
        {"asset": "BTC-REG", "status": "claimed", "destination": "bcrt1qmxe5s6e7dpq6vvnyqz9ctmfyj7clwzx4pxf4uf",
         "amount": 150000, "keys": 3},
        {"asset": "ETH-DEV", "status": "kept", "destination": "kept in this node's enclave (offered again as a "
         "deposit)", "amount": 25 * 10 ** 15, "keys": 1}]},
    "/v1/deposits": {"deposits": [{"pubkey": "02" + "11" * 32, "asset": "BTC-REG",
                                   "address": "bcrt1qxz3z2078m4wsxu6nffdhxd3n2gf7a39r4n0scn", "amount": 50000,
                                   "usd_cents": 5000, "price": "100000", "price_at": NOW - 7200, "txid": "66" * 32,
                                   "created_at": NOW - 7200, "key_state": "held", "confirmations": 3,
                                   "confirmed": 50000, "status": "confirmed(3)", "kept_from": ""}]},
    "/v1/contracts": {"contracts": [
        {"contract": "c0" * 32, "peer": OTHER, "role": "initiator", "state": "done", "reason": "", "rounds": 2,
         "spent_ms": {"verify": 12.5, "release": 3.1}, "keys_in_at": NOW - 60,
         "outcome": {"kind": "completed", "by": OTHER}},
        {"contract": "d1" * 32, "kind": "ring", "parties": [PEER, OTHER], "role": 0, "state": "running",
         "reason": ""}]},
}


class _Fake(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps(CANNED[self.path.split("?")[0]]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def fake_daemon(tmp_path_factory):
    from node.dev.localnet import init_datadir

    d = tmp_path_factory.mktemp("fake") / "n"
    init_datadir(d)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    (d / "api.url").write_text(f"http://127.0.0.1:{srv.server_address[1]}")
    (d / ".cookie").write_text("c" * 64)
    yield d
    srv.shutdown()


def run80(d, *a):
    env = dict(os.environ, COLUMNS="80", TERM="dumb")
    r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(d), *a], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


JSONISH = re.compile(r'[{\[]"|":|\{\}|\[\]')


def test_status_for_people(fake_daemon):
    out = run80(fake_daemon, "status")
    assert not JSONISH.search(out), out  # old code: JSON in the value cells
    assert MADDR in [l.strip() for l in out.splitlines()], out  # the multiaddr whole, on its own line
    assert "1.0 h" in out or "62 min" in out, out  # uptime as an age, not 3725.4
    assert "3725" not in out
    assert "made=2" in out and "no offers=1" in out, out
    full = json.loads(run80(fake_daemon, "status", "--json"))
    assert full["peer_id"] == PEER


def test_peers_for_people(fake_daemon):
    out = run80(fake_daemon, "peers")
    assert OTHER not in out and OTHER[:8] in out and OTHER[-6:] in out, out  # shortened
    assert not JSONISH.search(out), out
    assert "yes" in out and "/ip4/10.0.0.7/tcp/4001" in out, out
    assert OTHER in run80(fake_daemon, "peers", "--json")  # the full id via --json


def test_peers_show_direction_ping_agent_and_score_at_80_columns(fake_daemon):
    out = run80(fake_daemon, "peers")
    assert max(map(len, out.splitlines())) <= 80, out
    assert "in" in out and "0.42 ms" in out and "1.5 (P4 -2)" in out and "0/3" in out, out
    assert "#1 /ip4/10.0.0.7/tcp/4001  keyswitch/0.1.0" in out.splitlines(), out


def test_balance_for_people(fake_daemon):
    out = run80(fake_daemon, "balance")
    assert not JSONISH.search(out), out
    assert "0.0015 BTC-REG" in out and "0.025 ETH-DEV" in out and "150000" not in out, out  # coin units
    lines = out.splitlines()
    assert "#1 swept to bcrt1qmxe5s6e7dpq6vvnyqz9ctmfyj7clwzx4pxf4uf" in lines, out  # the destination whole
    assert any(l.startswith("#2 kept in this node's enclave") for l in lines), out


def test_deposits_for_people(fake_daemon):
    out = run80(fake_daemon, "deposits")
    assert "0.0005 BTC-REG" in out and "$50.00" in out, out  # coin units and USD (old: 50000 and 50.00)
    assert "50000" not in out and "5000" not in out, out
    assert str(int(NOW - 7200))[:6] not in out, out  # no Unix epochs
    assert re.search(r"\b2\.\d h ago", out), out  # (NOW is taken at import: a slow run may show 2.1 h)
    addr = CANNED["/v1/deposits"]["deposits"][0]["address"]
    assert any(addr in l for l in out.splitlines()), out  # the address whole on one line


def test_contracts_for_people(fake_daemon):
    out = run80(fake_daemon, "contracts")
    assert not JSONISH.search(out), out  # old code: spent_ms / outcome / parties as JSON
    assert "c0" * 32 not in out and OTHER not in out, out
    assert "done" in out and "running" in out and "ring" in out, out
    assert str(int(NOW - 60))[:6] not in out, out


# ------------------------------------------------------------------ make demo installs no test-only packages
def test_make_demo_installs_neither_electrum_nor_chromium():
    script = ROOT / "scripts" / "sysdeps.sh"
    assert "SYSDEPS_DRY_RUN" in script.read_text()  # (else running it below would really install)
    env = dict(os.environ, SYSDEPS_DRY_RUN="1")
    base = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=30).stdout
    full = subprocess.run([str(script), "--test"], capture_output=True, text=True, env=env, timeout=30).stdout
    assert "electrum" not in base and "chromium" not in base, base
    assert "electrum" in full and "chromium" in full, full
    chains = subprocess.run([str(script), "--chains"], capture_output=True, text=True, env=env, timeout=30).stdout
    assert "litecoind" in chains and "electrum" not in chains and "chromium" not in chains, chains
    demo = subprocess.run(["make", "-n", "-B", "demo"], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout
    test = subprocess.run(["make", "-n", "-B", "test"], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout
    assert "sysdeps.sh" in demo and "--test" not in demo, demo
    assert "sysdeps.sh --chains" in demo and "anvil.sh" in demo, demo  # the real nodes of the demo's swap
    assert "sysdeps.sh --test" in test, test


def test_dashboard_without_a_daemon_is_one_line(tmp_path):
    from node.dev.localnet import init_datadir

    d = tmp_path / "n"
    init_datadir(d)
    r = ks("dashboard", datadir=d)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 3 and len(lines) == 1 and "no daemon running" in lines[0], r.stderr
