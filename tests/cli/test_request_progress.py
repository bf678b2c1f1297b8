"""``keyswitch request --give``: the progress lines, the final summary, and exit codes that are the same for
the table and ``--json`` (0 all obtained, 5 less than asked for, 4 nothing allocated), against a daemon API
stood in for by recorded reports (the daemon side is tested in tests/functional/test_request_contracts.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from node.cli import _load, app, request_progress
from node.dev.localnet import init_datadir


def provider(peer, ask, state, received, chunks=2, lost=0, reason=""):
    return {"peer": peer, "ask": ask, "state": state, "chunks": chunks, "usd_cents": 5_000 * chunks,
            "received": received, "received_cents": 5_000 * received, "released": received + lost, "lost": lost,
            "lost_cents": 5_000 * lost, "reason": reason, "addresses": [], "received_addresses": [], "seconds": 1.0}


def report(state, providers, version, done, code, obtained, reason=""):
    return {"request_id": "abc123", "asset": "BTC-REG", "give": "ETH-DEV", "state": state, "done": done,
            "exit_code": code, "ok": state == "complete", "target_cents": 30_000, "obtained_cents": obtained,
            "shortfall_cents": max(0, 30_000 - obtained), "asks": max([p["ask"] for p in providers] or [1]),
            "lost": sum(p["lost"] for p in providers), "lost_cents": 5_000 * sum(p["lost"] for p in providers),
            "proposals": 3, "reason": reason, "notes": [], "providers": providers, "version": version,
            "seconds": 40.0 if done else None}


RUNNING = [provider("peerAAAAAAAAAAAA", 1, "running", 0), provider("peerWWWWWWWWWWWW", 1, "running", 0)]
SHORT_END = [provider("peerAAAAAAAAAAAA", 1, "done", 2),
             provider("peerWWWWWWWWWWWW", 1, "withheld", 1, lost=1, reason="peer silent for 30 s at round 3")]
CASES = {
    "complete": (report("complete", [provider("peerAAAAAAAAAAAA", 1, "done", 2)] * 3, 9, True, 0, 30_000), 0),
    "short": (report("short", SHORT_END, 9, True, 5, 15_000, "150.00 USD short after 2 asks"), 5),
    "no-allocation": (report("no-allocation", [], 2, True, 4, 0, "cannot cover 300.00 USD"), 4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_table_and_json_exit_with_the_same_code(case, monkeypatch, tmp_path):
    final, code = CASES[case]
    calls = []

    def fake_call(datadir, method, path, *, params=None, body=None, timeout=10.0):
        calls.append((method, path, params, body))
        if method == "POST":
            assert body["give"] == "ETH-DEV" and body["asset"] == "BTC-REG" and body["usd"] == 300
            return final if body["wait"] else report("running", RUNNING, 3, False, None, 0)
        assert path == "/v1/requests/abc123" and params["version"] >= 3  # a long poll from the version held
        return final

    monkeypatch.setattr(request_progress, "call", fake_call)
    _load()
    init_datadir(tmp_path)  # (every command but init refuses a data directory never initialised)
    args = ["--datadir", str(tmp_path), "request", "--asset", "BTC-REG", "--usd", "300", "--give", "ETH-DEV"]
    table = CliRunner().invoke(app, args)
    js = CliRunner().invoke(app, args + ["--json"])
    assert table.exit_code == code, table.output
    assert js.exit_code == code, js.output
    assert json.loads(js.output)["state"] == case
    assert table.output.splitlines()[-1].startswith(f"{case}: ")
    if case == "short":
        assert "withheld" in table.output and "lost 1 of ours (50.00 USD)" in table.output
        assert "lost 1 chunk(s) of ours (50.00 USD) to withholders" in table.output
        assert "peer silent for 30 s" in table.output


def test_an_option_request_sends_its_terms_and_shows_each_option_id_to_exercise(monkeypatch, tmp_path):
    cid = "ab" * 32
    final = {**report("complete", [{**provider("peerAAAAAAAAAAAA", 1, "done", 2), "contract": cid}], 9, True, 0,
                      30_000), "contract": "option", "premium_chunks": 2, "expiry_blocks": 300}
    bodies = []

    def fake_call(datadir, method, path, *, params=None, body=None, timeout=10.0):
        bodies.append(body)
        return final

    monkeypatch.setattr(request_progress, "call", fake_call)
    _load()
    init_datadir(tmp_path)
    args = ["--datadir", str(tmp_path), "request", "--asset", "BTC-REG", "--usd", "300", "--give", "ETH-DEV",
            "--contract", "option", "--premium-chunks", "2", "--expiry-blocks", "300"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert bodies[0]["contract"] == "option" and (bodies[0]["premium_chunks"], bodies[0]["expiry_blocks"]) == (2, 300)
    assert f"option {cid}" in out.output and "under option" in out.output.splitlines()[-1]
    assert "--message exercise" in out.output.splitlines()[-1]
    bad = CliRunner().invoke(app, args[:-3] + ["5"])  # --premium-chunks 5: out of 1..4, refused before any call
    assert bad.exit_code == 2 and len(bodies) == 1
