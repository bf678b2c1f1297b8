"""The dev ledger: UTXO and account models, real signatures, typed errors; in-process and over HTTP."""

import coincurve
import pytest

from node.assets import address_for, export_key
from node.ledger.base import AlreadySpent, InsufficientFunds, InvalidTransaction, UnknownAsset
from node.ledger.devnet import FEES, DevLedger, UtxoTx, TxOut, Outpoint, Witness, sighash
from node import wire
from node.crypto import sign_digest
from tests.functional.framework import Process


def key(i: int) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(i.to_bytes(32, "big"))


@pytest.fixture(params=["inproc", "http"])
def ledger(request, tmp_path):
    led = DevLedger(tmp_path / "ledger.sqlite")
    if request.param == "inproc":
        yield led
        led.close()
        return
    from node.ledger.client import DevLedgerClient
    from node.ledger.server import serve_in_thread

    url, stop = serve_in_thread(led)
    try:
        yield DevLedgerClient(url, admin=True)
    finally:
        stop()
        led.close()


@pytest.mark.parametrize("asset", ["BTC-REG", "LTC", "DOGE"])
def test_utxo_deposit_confirm_send_sweep(ledger, asset):
    k1, k2 = key(11), key(12)
    a1, a2 = address_for(asset, k1.public_key.format()), address_for(asset, k2.public_key.format())
    fee = FEES["utxo"]
    t0 = ledger.faucet(asset, a1, 100_000)
    assert ledger.balance(asset, a1).confirmed == 0 and ledger.balance(asset, a1).unconfirmed == 100_000
    assert ledger.confirmations(asset, t0) == 0
    ledger.mine(asset)
    assert ledger.balance(asset, a1).confirmed == 100_000 and ledger.confirmations(asset, t0) == 1
    tx = ledger.send(asset, k1.secret, a2, 30_000)
    assert ledger.balance(asset, a2).unconfirmed == 30_000
    assert ledger.balance(asset, a1).unconfirmed == 100_000 - 30_000 - fee
    ledger.mine(asset, 2)
    assert ledger.confirmations(asset, tx) == 2 and ledger.height(asset) == 3
    sw = ledger.sweep(asset, k2.secret, a1)
    ledger.mine(asset)
    assert ledger.balance(asset, a2) .confirmed == 0
    assert ledger.balance(asset, a1).confirmed == 100_000 - 2 * fee and ledger.confirmations(asset, sw) == 1
    with pytest.raises(InsufficientFunds):
        ledger.sweep(asset, k2.secret, a1)
    with pytest.raises(InsufficientFunds, match="needed"):
        ledger.send(asset, k1.secret, a2, 10**9)


def test_account_model_nonces_and_balances(ledger):
    k1, k2 = key(21), key(22)
    a1, a2 = address_for("ETH-DEV", k1.public_key.format()), address_for("ETH-DEV", k2.public_key.format())
    ledger.faucet("ETH-DEV", a1, 10**18)
    ledger.mine("ETH-DEV")
    ledger.send("ETH-DEV", k1.secret, a2, 10**17)
    ledger.send("ETH-DEV", k1.secret, a2, 10**17)  # nonce 1
    ledger.mine("ETH-DEV")
    fee = FEES["account"]
    assert ledger.balance("ETH-DEV", a2).confirmed == 2 * 10**17
    assert ledger.balance("ETH-DEV", a1).confirmed == 10**18 - 2 * 10**17 - 2 * fee
    ledger.sweep("ETH-DEV", k2.secret, a1)
    ledger.mine("ETH-DEV")
    assert ledger.balance("ETH-DEV", a2).confirmed == 0


def test_double_spend_and_forged_spend_are_refused(tmp_path):
    led = DevLedger(tmp_path / "l.sqlite", automine=True)
    owner, thief = key(31), key(32)
    addr = address_for("BTC-REG", owner.public_key.format())
    t = led.faucet("BTC-REG", addr, 50_000)
    # the owner's key sweeps it; a second sweep of the same coin (a broken TEE's double spend) fails
    unsigned = UtxoTx(1, "BTC-REG", [Outpoint(t, 0)], [TxOut(address_for("BTC-REG", thief.public_key.format()), 40_000)])
    forged = wire.encode(UtxoTx(1, "BTC-REG", unsigned.inputs, unsigned.outputs,
                                [Witness(thief.public_key.format(), sign_digest(thief, sighash(unsigned)))]))
    with pytest.raises(InvalidTransaction, match="ownership"):
        led.submit("BTC-REG", forged)
    led.sweep("BTC-REG", owner.secret, address_for("BTC-REG", key(33).public_key.format()))
    replay = UtxoTx(1, "BTC-REG", [Outpoint(t, 0)], [TxOut(addr, 40_000)])
    import msgspec

    signed = msgspec.structs.replace(replay, witnesses=[Witness(owner.public_key.format(),
                                                                sign_digest(owner, sighash(replay)))])
    with pytest.raises(AlreadySpent, match="already spent"):
        led.submit("BTC-REG", wire.encode(signed))
    with pytest.raises(InvalidTransaction, match="malformed"):
        led.submit("BTC-REG", b"\x00garbage")
    with pytest.raises(UnknownAsset, match="unknown asset 'XMR'"):
        led.balance("XMR", addr)


def test_watch_reports_deposits_and_spends_with_a_cursor(tmp_path):
    led = DevLedger(tmp_path / "w.sqlite", automine=True)
    k = key(41)
    addr = address_for("BTC-REG", k.public_key.format())
    events, cur = led.watch([addr])
    assert events == []
    led.faucet("BTC-REG", addr, 10_000)
    events, cur = led.watch([addr], cur)
    assert [(e.kind, e.amount) for e in events] == [("deposit", 10_000)]
    led.sweep("BTC-REG", k.secret, address_for("BTC-REG", key(42).public_key.format()))
    events, cur2 = led.watch([addr], cur)
    assert [e.kind for e in events] == ["spend"] and cur2 > cur


def test_state_survives_reopen(tmp_path):
    p = tmp_path / "persist.sqlite"
    led = DevLedger(p, automine=True)
    addr = address_for("LTC", key(51).public_key.format())
    led.faucet("LTC", addr, 7)
    led.close()
    again = DevLedger(p)
    assert again.balance("LTC", addr).confirmed == 7 and again.height("LTC") == 1


def test_devnet_server_process_and_typed_errors_over_http(tmp_path):
    import sys

    from node.ledger.base import LedgerUnreachable
    from node.ledger.client import DevLedgerClient

    proc = Process("ledger", [sys.executable, "-m", "node.ledger.server", "serve", "--db", str(tmp_path / "d.sqlite"),
                              "--automine"], tmp_path / "ledger.out").start()
    try:
        line = proc.wait_line(r"^dev ledger listening on .+$").group(0)
        assert line.startswith("dev ledger listening on http://127.0.0.1:"), line
        c = DevLedgerClient(line.split()[4])
        addr = address_for("DOGE", key(61).public_key.format())
        c.faucet("DOGE", addr, 10**8)
        assert c.balance("DOGE", addr).confirmed == 10**8 and c.height("DOGE") == 1
        with pytest.raises(UnknownAsset):
            c.height("NOPE")
        with pytest.raises(InvalidTransaction):
            c.submit("DOGE", b"\x01\x02")
    finally:
        proc.stop(timeout=10)
    with pytest.raises(LedgerUnreachable, match="unreachable"):
        DevLedgerClient(line.split()[4], timeout=2).height("DOGE")


def test_blocks_follow_the_clock():
    from node.clock import ManualClock

    clock = ManualClock(1000.0)
    led = DevLedger(None, clock=clock, block_interval=10.0)
    addr = address_for("BTC-REG", key(81).public_key.format())
    t = led.faucet("BTC-REG", addr, 5000)
    assert led.confirmations("BTC-REG", t) == 0
    clock.advance(10)
    assert led.confirmations("BTC-REG", t) == 1
    clock.advance(35)
    assert led.confirmations("BTC-REG", t) == 4 and led.height("BTC-REG") == 4


def test_double_spend_evidence_is_queryable(tmp_path):
    led = DevLedger(None, automine=True)
    k = key(82)
    addr = address_for("BTC-REG", k.public_key.format())
    t = led.faucet("BTC-REG", addr, 50_000)
    winner = led.sweep("BTC-REG", k.secret, address_for("BTC-REG", key(83).public_key.format()))
    with pytest.raises(AlreadySpent, match=winner):
        led.submit("BTC-REG", wire.encode(_signed_spend(k, t, addr)))
    assert led.spent_by("BTC-REG", t, 0) == winner


def _signed_spend(k, txid, to):
    import msgspec

    tx = UtxoTx(1, "BTC-REG", [Outpoint(txid, 0)], [TxOut(to, 1000)])
    return msgspec.structs.replace(tx, witnesses=[Witness(k.public_key.format(), sign_digest(k, sighash(tx)))])


def test_no_money_created_or_destroyed_under_random_transactions():
    from hypothesis import given, settings, strategies as st

    keys = [key(90 + i) for i in range(4)]

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["BTC-REG", "ETH-DEV"]), st.integers(0, 3), st.integers(0, 3),
                              st.integers(1, 10**6), st.booleans(), st.booleans()), max_size=25))
    def run(ops):
        led = DevLedger(None)
        minted = {"BTC-REG": 0, "ETH-DEV": 0}
        fees = {"BTC-REG": 0, "ETH-DEV": 0}
        unit = {"BTC-REG": 1, "ETH-DEV": 10**12}
        for asset, i, j, amt, sweep, mine in ops:
            amt *= unit[asset]
            src = address_for(asset, keys[i].public_key.format())
            dst = address_for(asset, keys[j].public_key.format())
            if led.balance(asset, src).unconfirmed < amt * 2:
                led.faucet(asset, src, amt * 3)
                minted[asset] += amt * 3
            try:
                (led.sweep(asset, keys[i].secret, dst) if sweep else led.send(asset, keys[i].secret, dst, amt))
                fees[asset] += FEES["utxo" if asset == "BTC-REG" else "account"]
            except InsufficientFunds:
                pass
            if mine:
                led.mine(asset)
        for asset in minted:
            total = sum(led.balance(asset, address_for(asset, k.public_key.format())).unconfirmed for k in keys)
            assert total == minted[asset] - fees[asset]
            led.mine(asset)
            assert sum(led.balance(asset, address_for(asset, k.public_key.format())).confirmed
                       for k in keys) == total

    run()


def test_two_senders_same_transfer_same_nonce_are_distinct_transactions():
    # found by the conservation property test: the txid must not collide across senders
    led = DevLedger(None, automine=True)
    a, b, to = key(101), key(102), address_for("ETH-DEV", key(103).public_key.format())
    for k in (a, b):
        led.faucet("ETH-DEV", address_for("ETH-DEV", k.public_key.format()), 10**18)
    t1 = led.send("ETH-DEV", a.secret, to, 10**17)
    t2 = led.send("ETH-DEV", b.secret, to, 10**17)
    assert t1 != t2 and led.balance("ETH-DEV", to).confirmed == 2 * 10**17


def test_devnet_server_mines_at_a_block_interval(tmp_path):
    import sys
    import time

    from node.ledger.client import DevLedgerClient

    proc = Process("ledger", [sys.executable, "-m", "node.ledger.server", "serve", "--db", str(tmp_path / "i.sqlite"),
                              "--block-interval", "0.1"], tmp_path / "ledger.out").start()
    try:
        c = DevLedgerClient(proc.wait_line(r"dev ledger listening on (\S+)").group(1))
        t = c.faucet("BTC-REG", address_for("BTC-REG", key(71).public_key.format()), 1000)
        deadline = time.monotonic() + 20
        while c.confirmations("BTC-REG", t) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.confirmations("BTC-REG", t) >= 3  # no --automine: the interval alone made the blocks
    finally:
        proc.stop(timeout=10)
