"""The wallet side without a daemon: `keyswitch deposit --wait N` and `keyswitch deposits` from the local store."""

from __future__ import annotations

import json

import coincurve
import pytest

from node.assets import address_for
from node.app.deposits import ConfirmationTimeout, Deposit, deposit_status, wait_confirmations
from node.ledger.devnet import DevLedger


from tests.cli_fixtures import cli, datadir, run  # noqa: F401 (fixtures)


def test_deposit_wait_and_list_without_a_daemon(cli, datadir):
    assert run(cli, datadir, "init").exit_code == 0
    r = run(cli, datadir, "deposits", "--json")
    assert r.exit_code == 0, r.output
    empty = json.loads(r.output)
    assert empty["deposits"] == [] and "no daemon running" in empty["source"]

    r = run(cli, datadir, "deposit", "--asset", "BTC-REG", "--chunks", "2", "--wait", "3",
            "--block-interval", "0.05", "--timeout", "60")
    assert r.exit_code == 0, r.output
    assert "waiting for 3 confirmation(s) of 2 funding transaction(s) on the embedded dev ledger" in r.output
    assert "deposits with 3 confirmations" in r.output and "2/2" in r.output  # the progress display
    lines = [l for l in r.output.splitlines() if l.startswith("BTC-REG bcrt1q")]
    assert len(lines) == 2 and all("confirmations)" in l for l in lines)

    r = run(cli, datadir, "deposits", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert "local deposit store" in data["source"] and "no daemon running" in data["source"]
    assert len(data["deposits"]) == 2
    for d in data["deposits"]:
        assert d["confirmations"] >= 3 and d["status"] == f"confirmed({d['confirmations']})"
        assert d["key_state"] == "held" and d["confirmed"] == d["amount"]

    r = run(cli, datadir, "deposits")
    assert r.exit_code == 0, r.output
    assert "source: local deposit store" in r.output and "confirmed(" in r.output

    # a wait that cannot finish in time: a clear error, exit 4, and the deposit is made all the same
    r = run(cli, datadir, "deposit", "--chunks", "1", "--wait", "1000", "--block-interval", "10", "--timeout", "0.3")
    assert r.exit_code == 4, r.output
    assert "timed out after 0.3 s waiting for 1000 confirmation(s)" in r.output and "keyswitch deposits" in r.output
    assert len(json.loads(run(cli, datadir, "deposits", "--json").output)["deposits"]) == 3

    r = run(cli, datadir, "deposit", "--chunks", "1", "--wait", "1", "--json")
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)  # --json: the progress display stays off, the output is plain JSON
    assert made[0]["confirmations"] >= 1


def _deposit(k: coincurve.PrivateKey, txid: str, amount: int) -> Deposit:
    pub = k.public_key.format()
    return Deposit(pub, "BTC-REG", address_for("BTC-REG", pub), amount, 5000, "1", 0.0, txid, 0.0)


def test_deposit_status_funded_confirmed_released_swept():
    led = DevLedger(None)
    k = coincurve.PrivateKey(b"\x09" * 32)
    addr = address_for("BTC-REG", k.public_key.format())
    d = _deposit(k, led.faucet("BTC-REG", addr, 10_000), 10_000)
    assert deposit_status(d, led, "held")["status"] == "funded"
    led.mine("BTC-REG", 2)
    row = deposit_status(d, led, "held")
    assert row["status"] == "confirmed(2)" and row["confirmations"] == 2 and row["confirmed"] == 10_000
    assert deposit_status(d, led, "released")["status"] == "released"
    assert deposit_status(d, led, "exported")["status"] == "released"
    led.sweep("BTC-REG", k.secret, address_for("BTC-REG", coincurve.PrivateKey(b"\x0a" * 32).public_key.format()))
    assert deposit_status(d, led, "exported")["status"] == "swept"


def test_wait_confirmations_progress_and_timeout():
    led = DevLedger(None)
    t = led.faucet("BTC-REG", "bcrt1qsomeone", 1000)
    clock = [0.0]
    seen = []

    def sleep(s):  # each poll, time passes and a block is mined
        clock[0] += s
        led.mine("BTC-REG")

    confs = wait_confirmations(led, [("BTC-REG", t)], 3, timeout=10, poll=1, on_progress=lambda c: seen.append(c[t]),
                               monotonic=lambda: clock[0], sleep=sleep)
    assert confs == {t: 3} and seen == [0, 1, 2, 3]
    with pytest.raises(ConfirmationTimeout, match="timed out after 2 s waiting for 10 confirmation"):
        wait_confirmations(led, [("BTC-REG", t)], 10, timeout=2, poll=1, monotonic=lambda: clock[0], sleep=sleep)
