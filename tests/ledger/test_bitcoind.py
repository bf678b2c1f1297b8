"""The ledger interface on a real Bitcoin-family node: litecoind -regtest (Debian's package) on 127.0.0.1.

Started once per module by the ``litecoind`` fixture (tests/ledger/conftest.py), stopped even on failure;
skipped with the reason where litecoind is not installed. The LTC mainnet address vectors need no node.
"""

from __future__ import annotations

import coincurve
import pytest
from embit import ec

from node.assets import address_for, export_key, validate_address
from node.ledger.base import AlreadySpent, InsufficientFunds, InvalidTransaction, LedgerError, LedgerUnreachable
from node.ledger.base import Balance, UnknownAsset
from tests.ledger.ltckit import A, addr, key, spend_by_hand


# ------------------------------------------------------------------ LTC mainnet formats (published vectors)
# mrtnetwork/blockchain_utils test/address/p2wpkh/test_vector.dart: compressed public key -> ltc1q... (P2WPKH)
LTC_P2WPKH = [
    ("026759a817d8674f69b8c50c74bf225a7c4ae7f3e14afa40a9f241c2b8c2a04b52", "ltc1qx88q7zjd74lxwgkjmmwlqv5pd3vujuehexfttt"),
    ("03a33cbfd1b90cfb4f2a45b17c2fdcd1db0d7dd22de861f84c34625e5bcfdb1088", "ltc1qudhthew8h03vzc7x99m3qg0z8wjq2f759hp4ej"),
]
# WIF (compressed) -> P2PKH: tboydston/hdAddressGenerator tests/coins/LTC.js (BIP44 index 0) and Trust Wallet's
# LitecoinTests.testAddress
LTC_WIF_P2PKH = [
    ("TBHTWnbmjYkvNNkPGABxBeVKDjm5zA58jcfDJ1pCz6fCKLv1beGH", "LTVdcw8fdTTK4TcebTZ4jiiCbvTXaRxZNh"),
    ("T8VERgAiBcUnRXmWxgVzp6AaH1hKwPQQQeghi3n9ZY6nF59GuTJf", "LV7LV7Z4bWDEjYkfx9dQo6k6RjGbXsg6hS"),
]


@pytest.mark.parametrize("pub,address", LTC_P2WPKH)
def test_ltc_mainnet_p2wpkh_matches_published_vectors(pub, address):
    pub = bytes.fromhex(pub)
    assert address_for("LTC", pub) == address
    assert validate_address("LTC", pub, address) is None
    assert validate_address("LTC-REG", pub, address) is not None  # a mainnet address is not a regtest one


@pytest.mark.parametrize("wif,address", LTC_WIF_P2PKH)
def test_ltc_mainnet_wif_and_p2pkh_match_published_vectors(wif, address):
    k = ec.PrivateKey.from_wif(wif)
    pub = k.get_public_key().sec()
    assert address_for("LTC", pub, kind="p2pkh") == address
    assert export_key("LTC", k.secret) == wif  # our WIF export is Litecoin's (0xb0, compressed)


def test_ltc_reg_addresses_are_what_litecoind_calls_valid(ltc):
    k = key(1)
    for kind in ("p2wpkh", "p2pkh"):
        a = address_for(A, k.public_key.format(), kind=kind)
        got = ltc.rpc("validateaddress", a)
        assert got["isvalid"] is True and got["scriptPubKey"] == ltc.script_of(a).hex(), (kind, a, got)
    assert addr(k).startswith("rltc1q")
    lone = ltc.rpc("validateaddress", address_for("LTC", k.public_key.format()))
    assert lone["isvalid"] is False  # litecoind -regtest refuses the mainnet form


# ------------------------------------------------------------------ the ledger interface on litecoind
def test_deposit_send_sweep_and_watch(ltc):
    k, home, other = key(10), key(11), key(12)
    a, dest, dest2 = addr(k), addr(home), addr(other)
    h0 = ltc.height(A)
    fund = ltc.faucet(A, a, 2 * 10**8)
    assert ltc.balance(A, a) == Balance(0, 2 * 10**8)  # in the mempool: unconfirmed only
    assert ltc.confirmations(A, fund) == 0
    ltc.mine(A, 1)
    assert ltc.balance(A, a).confirmed == 2 * 10**8 and ltc.confirmations(A, fund) == 1
    sent = ltc.send(A, k.secret, dest2, 5 * 10**7)
    bal = ltc.balance(A, a)
    assert bal.confirmed == 2 * 10**8 and 2 * 10**8 - 5 * 10**7 - 10_000 < bal.unconfirmed < 2 * 10**8 - 5 * 10**7
    assert ltc.balance(A, dest2) == Balance(0, 5 * 10**7)
    swept = ltc.sweep(A, k.secret, dest)  # spends the unconfirmed change too
    assert ltc.balance(A, a).unconfirmed == 0
    ltc.mine(A, 2)
    assert ltc.confirmations(A, sent) == 2 and ltc.confirmations(A, swept) == 2 and ltc.height(A) == h0 + 3
    got = ltc.balance(A, dest).confirmed
    assert 2 * 10**8 - 5 * 10**7 - 10_000 < got < 2 * 10**8 - 5 * 10**7  # the rest minus two small fees
    raw = ltc.rpc("getrawtransaction", swept, True)
    assert raw["vin"][0]["txinwitness"][1] == k.public_key.format().hex()  # a real P2WPKH witness spend
    events, top = ltc.watch([a, dest], h0)
    assert top == h0 + 3
    assert sorted((e.kind, e.address, e.txid) for e in events) == sorted([
        ("deposit", a, fund), ("spend", a, sent), ("deposit", a, sent), ("spend", a, swept), ("deposit", dest, swept)])
    with pytest.raises(InsufficientFunds):
        ltc.sweep(A, k.secret, dest)
    with pytest.raises(InsufficientFunds):
        ltc.send(A, home.secret, a, 10**15)
    with pytest.raises(UnknownAsset):
        ltc.height("BTC-REG")
    with pytest.raises(InvalidTransaction, match="not a LTC-REG address"):
        ltc.sweep(A, home.secret, address_for("LTC", home.public_key.format()))  # mainnet destination


def test_a_double_spend_is_already_spent_with_the_nodes_reason(ltc):
    k = key(20)
    a = addr(k)
    fund = ltc.faucet(A, a, 10**8)
    ltc.mine(A, 1)
    vout = next(o["n"] for o in ltc.rpc("getrawtransaction", fund, True)["vout"]
                if o["scriptPubKey"]["hex"] == ltc.script_of(a).hex())
    first = ltc.sweep(A, k.secret, addr(key(21)))
    rival = spend_by_hand(k.secret, [(fund, vout, 10**8)], addr(key(22)), 5_000)
    with pytest.raises(AlreadySpent, match="txn-mempool-conflict"):
        ltc.submit(A, rival)
    ltc.mine(A, 1)
    assert ltc.confirmations(A, first) == 1
    with pytest.raises(AlreadySpent, match="missingorspent|missing-inputs"):
        ltc.submit(A, rival)
    with pytest.raises(AlreadySpent):
        ltc.test_accept(A, rival)
    with pytest.raises(InvalidTransaction, match="refused"):
        ltc.submit(A, b"\x02\x00\x00\x00garbage")


def test_fee_rate_falls_back_then_follows_the_node(ltc):
    est = ltc.rpc("estimatesmartfee", 2)
    if est.get("feerate") is None:  # a young regtest chain has no estimate: the stated fallback
        assert ltc.fee_rate() == ltc.fallback_sat_vb == 10.0
    else:
        assert ltc.fee_rate() == max(float(est["feerate"]) * 10**8 / 1000, 1.0)
    relay = float(ltc.rpc("getnetworkinfo")["relayfee"]) * 10**8 / 1000
    assert ltc.fee_rate() >= relay


def test_a_reorganisation_takes_confirmations_back_and_the_chain_resumes(ltc):
    k = key(30)
    a = addr(k)
    h0 = ltc.height(A)
    fund = ltc.faucet(A, a, 3 * 10**8)
    ltc.mine(A, 3)
    assert ltc.confirmations(A, fund) == 3 and ltc.balance(A, a).confirmed == 3 * 10**8
    block = ltc.rpc("getrawtransaction", fund, True)["blockhash"]
    ltc.rpc("invalidateblock", block)  # the block holding the deposit leaves the best chain
    assert ltc.height(A) == h0
    assert ltc.confirmations(A, fund) == 0  # back in the mempool
    assert ltc.balance(A, a) == Balance(0, 3 * 10**8)  # confirmed is gone; not counted twice
    events, _ = ltc.watch([a], h0)
    assert events == []  # no block above h0 holds it now
    assert ltc.rpc("getblock", block, 1)["confirmations"] == -1  # the node itself: off the best chain
    ltc.mine(A, 2)  # the chain re-mines: the deposit confirms in a new block
    assert ltc.confirmations(A, fund) == 2 and ltc.balance(A, a).confirmed == 3 * 10**8
    assert ltc.rpc("getrawtransaction", fund, True)["blockhash"] != block
    events, top = ltc.watch([a], h0)
    assert [(e.kind, e.txid, e.seq) for e in events] == [("deposit", fund, h0 + 1)] and top == h0 + 2
    swept = ltc.sweep(A, k.secret, addr(key(31)))  # and it spends as usual
    ltc.mine(A, 1)
    assert ltc.confirmations(A, swept) == 1


def test_a_key_released_by_an_enclave_spends_on_litecoind(ltc):
    """The enclave generates a deposit key and exports it to its owner; a transaction built from that key with
    embit alone (not our ledger code) is accepted by litecoind (testmempoolaccept), then broadcast."""
    from node.tee.client import InProcessEnclave

    enc = InProcessEnclave(None)
    try:
        pub = enc.generate_keys(1)[0]
        a = address_for(A, pub)
        fund = ltc.faucet(A, a, 7 * 10**7)
        ltc.mine(A, 1)
        secret = enc.export_to_owner(pub)
    finally:
        enc.close()
    assert coincurve.PrivateKey(secret).public_key.format() == pub
    vout = next(o["n"] for o in ltc.rpc("getrawtransaction", fund, True)["vout"]
                if o["scriptPubKey"]["hex"] == ltc.script_of(a).hex())
    raw = spend_by_hand(secret, [(fund, vout, 7 * 10**7)], addr(key(40)), 2_000)
    res = ltc.rpc("testmempoolaccept", [raw.hex()])[0]
    assert res["allowed"] is True, res
    assert ltc.test_accept(A, raw) == res["txid"]
    assert ltc.submit(A, raw) == res["txid"]


def test_router_serves_the_asset_from_the_node_and_checks_it(ltc, litecoind, tmp_path):
    from node.ledger.devnet import DevLedger
    from node.ledger.router import with_bitcoind

    url, cookie = litecoind
    base = DevLedger(tmp_path / "dev.sqlite", automine=True)
    cfg = {"ledger.rpc_url": url, "ledger.rpc_asset": A, "ledger.rpc_cookie": str(cookie)}
    routed = with_bitcoind(base, cfg)
    try:
        assert "BitcoindLedger" in routed.describe()[A]
        assert routed.height(A) == ltc.height(A)
        k = key(50)
        routed.faucet("BTC-REG", address_for("BTC-REG", k.public_key.format()), 1000)  # still the dev ledger
        fund = routed.faucet(A, addr(k), 10**6)
        routed.mine(A, 1)
        events, _ = routed.watch([addr(k), address_for("BTC-REG", k.public_key.format())])
        assert sorted((e.asset, e.kind, e.amount) for e in events) == [("BTC-REG", "deposit", 1000),
                                                                      (A, "deposit", 10**6)]
        assert [e.txid for e in events if e.asset == A] == [fund]
    finally:
        routed.routes[A].close()
    with pytest.raises(LedgerError, match="runs chain 'regtest'"):
        with_bitcoind(base, {**cfg, "ledger.rpc_asset": "LTC"})  # a mainnet asset on a regtest node
    with pytest.raises(LedgerError, match="genesis"):
        with_bitcoind(base, {**cfg, "ledger.rpc_asset": "BTC-REG"})  # litecoind is not bitcoind
    bad = tmp_path / "cookie"
    bad.write_text("__cookie__:wrong")
    with pytest.raises(LedgerUnreachable, match="refused the RPC credentials"):
        with_bitcoind(base, {**cfg, "ledger.rpc_cookie": str(bad)})
    base.close()


def test_a_node_configured_with_ledger_rpc_settings_opens_the_routed_ledger(ltc, litecoind, tmp_path):
    """The daemon's own path: KEYSWITCH_LEDGER_RPC_* in the environment -> node.app.deposits.open_ledger."""
    from node.config import ConfigError, load
    from node.app.deposits import open_ledger

    url, cookie = litecoind
    env = {"KEYSWITCH_LEDGER_RPC_URL": url, "KEYSWITCH_LEDGER_RPC_COOKIE": str(cookie),
           "KEYSWITCH_LEDGER_RPC_ASSET": A}
    cfg = load(tmp_path, env=env)
    led = open_ledger(cfg)
    try:
        assert led.height(A) == ltc.height(A) and "BitcoindLedger" in led.describe()[A]
        assert led.height("BTC-REG") == 0  # the embedded dev ledger still serves the rest
    finally:
        led.close()
    with pytest.raises(ConfigError, match="segwit Bitcoin-like"):
        load(tmp_path, env={**env, "KEYSWITCH_LEDGER_RPC_ASSET": "DOGE"})
    with pytest.raises(ConfigError, match="not in the URL"):
        load(tmp_path, env={**env, "KEYSWITCH_LEDGER_RPC_URL": "http://u:p@127.0.0.1:1"})


def test_the_wallet_commands_read_the_asset_from_the_node(ltc, litecoind, tmp_path, monkeypatch):
    """``keyswitch deposit``'s ledger (node.cli.deposit.watch_ledger) routes ledger.rpc_asset the same way."""
    from node.cli.deposit import watch_ledger

    url, cookie = litecoind
    monkeypatch.setenv("KEYSWITCH_LEDGER_RPC_URL", url)
    monkeypatch.setenv("KEYSWITCH_LEDGER_RPC_COOKIE", str(cookie))
    led, label = watch_ledger(tmp_path)
    try:
        assert f"LTC-REG on the node at {url}" in label
        assert led.height(A) == ltc.height(A)
    finally:
        led.close()
