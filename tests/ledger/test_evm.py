"""The ledger interface against a real EVM node: anvil (installed by scripts/anvil.sh) on 127.0.0.1."""

import time

import coincurve
import pytest

from node.assets import address_for
from node.ledger.base import InsufficientFunds, UnknownAsset


def settle(led, tx):
    for _ in range(50):  # anvil mines each transaction as it arrives, a moment later
        if led.confirmations("ETH-DEV", tx):
            return
        time.sleep(0.1)


def key(i):
    return coincurve.PrivateKey(i.to_bytes(32, "big"))


# anvil's first pre-funded development account (its well-known, public test key)
ANVIL0 = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")


def test_deposit_to_an_enclave_style_address_and_sweep_it(anvil):
    k, home = key(71), key(72)
    addr = address_for("ETH-DEV", k.public_key.format())
    dest = address_for("ETH-DEV", home.public_key.format())
    fund = anvil.send("ETH-DEV", ANVIL0, addr, 10**17)  # funded from an anvil account, a real signed transfer
    for _ in range(50):  # anvil mines each transaction as it arrives
        if anvil.confirmations("ETH-DEV", fund):
            break
        time.sleep(0.1)
    assert anvil.balance("ETH-DEV", addr).confirmed == 10**17
    h0 = anvil.height("ETH-DEV")
    tx = anvil.sweep("ETH-DEV", k.secret, dest)
    for _ in range(50):
        if anvil.confirmations("ETH-DEV", tx):
            break
        time.sleep(0.1)
    assert anvil.confirmations("ETH-DEV", tx) == 1 and anvil.height("ETH-DEV") == h0 + 1
    assert anvil.balance("ETH-DEV", addr).confirmed == 0
    got = anvil.balance("ETH-DEV", dest).confirmed
    assert 0 < got < 10**17  # the chunk minus the gas fee
    events, cur = anvil.watch([addr, dest], h0)
    assert {(e.kind, e.address.lower()) for e in events} == {("spend", addr.lower()), ("deposit", dest.lower())}
    with pytest.raises(InsufficientFunds):
        anvil.sweep("ETH-DEV", k.secret, dest)
    anvil.mine("ETH-DEV", 3)
    assert anvil.confirmations("ETH-DEV", tx) == 4


def test_send_partial_and_errors(anvil):
    k = key(73)
    addr = address_for("ETH-DEV", k.public_key.format())
    anvil.faucet("ETH-DEV", addr, 10**18)
    settle(anvil, anvil.send("ETH-DEV", k.secret, address_for("ETH-DEV", key(74).public_key.format()), 10**16))
    assert anvil.balance("ETH-DEV", address_for("ETH-DEV", key(74).public_key.format())).confirmed == 10**16
    assert anvil.balance("ETH-DEV", addr).confirmed < 10**18 - 10**16
    with pytest.raises(UnknownAsset):
        anvil.height("BTC")
    with pytest.raises(InsufficientFunds):
        anvil.send("ETH-DEV", k.secret, addr, 10**30)


def test_faucet_is_a_real_watchable_transfer(anvil):
    """The faucet funds with a signed transfer: a txid that confirms and a deposit event, as deposits need."""
    addrs = [address_for("ETH-DEV", key(i).public_key.format()) for i in (75, 76)]
    h0 = anvil.height("ETH-DEV")
    txs = [anvil.faucet("ETH-DEV", a, 3 * 10**16) for a in addrs]
    for tx in txs:
        settle(anvil, tx)
        assert anvil.confirmations("ETH-DEV", tx) >= 1
    assert [anvil.balance("ETH-DEV", a).confirmed for a in addrs] == [3 * 10**16] * 2
    events, _ = anvil.watch(addrs, h0)
    assert sorted((e.kind, e.txid) for e in events) == sorted(("deposit", t) for t in txs)
