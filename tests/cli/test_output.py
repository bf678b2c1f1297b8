"""Output for people: log noise, attest verify wording, and the tables of status/peers/deposits/contracts."""

from __future__ import annotations

import io
import json
import logging

from node import logs


def test_httpx_request_lines_are_quiet_at_info():
    """A dev node's log was ~90 % httpx "HTTP Request: POST .../rpc" lines (logged at INFO by httpx)."""
    buf = io.StringIO()
    logs.configure(level="info", fmt="json", stream=buf)
    logging.getLogger("httpx").info('HTTP Request: POST http://127.0.0.1:1/rpc "HTTP/1.1 200 OK"')
    logging.getLogger("httpcore.connection").info("connect_tcp.started")
    logging.getLogger("httpx").warning("a real httpx problem")
    logs.get("keyswitch").info("ours")
    events = [json.loads(l)["event"] for l in buf.getvalue().splitlines()]
    assert "ours" in events and "a real httpx problem" in events
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
