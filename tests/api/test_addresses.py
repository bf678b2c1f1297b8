"""node.api.addresses: which sweep destinations are addresses of a deposit's chain (the daemon's check)."""

import coincurve
import pytest
from embit import ec, networks, script

from node.api.addresses import check_destination
from node.assets import ASSETS, address_for, address_kinds


def _pub(i: int) -> bytes:
    return coincurve.PrivateKey(bytes([i]) * 32).public_key.format()


@pytest.mark.parametrize("asset", sorted(ASSETS))
def test_every_own_address_kind_is_accepted_in_canonical_form(asset):
    for i in (1, 2, 3):
        for kind in address_kinds(asset):
            addr = address_for(asset, _pub(i), kind=kind)
            assert check_destination(asset, addr) == (addr, None)
            if kind == "p2wpkh":
                assert check_destination(asset, addr.upper()) == (addr, None)  # all upper case is bech32 too
            if kind == "eip55":
                assert check_destination(asset, addr.lower()) == (addr, None)  # no checksum: taken, canonicalised
                assert check_destination(asset, "0x" + addr[2:].upper()) == (addr, None)


def test_script_addresses_and_taproot_are_accepted_on_bitcoin_regtest():
    pub = ec.PublicKey.parse(_pub(5))
    net = networks.NETWORKS["regtest"]
    for s in (script.p2tr(pub), script.p2wsh(script.p2pkh(pub)), script.p2sh(script.p2pkh(pub))):
        addr = s.address(net)
        assert check_destination("BTC-REG", addr) == (addr, None)


def test_every_other_assets_address_is_refused_with_a_reason():
    """An address of any other asset (network) is refused, but where two share a format (BTC-TEST and
    BTC-REG base58 versions; ETH and ETH-DEV), which no string can tell apart."""
    same_format = {frozenset({"ETH", "ETH-DEV"})}
    for mine in ASSETS:
        for other in ASSETS:
            if other == mine or frozenset({mine, other}) in same_format:
                continue
            for kind in address_kinds(other):
                addr = address_for(other, _pub(9), kind=kind)
                got, why = check_destination(mine, addr)
                if why is None:
                    # a legacy base58 address whose version byte two testnets share
                    assert kind == "p2pkh" and {mine, other} <= {"BTC-TEST", "BTC-REG", "LTC-TEST", "LTC-REG"}, (mine, addr)
                else:
                    assert got is None and len(why) < 200 and "\n" not in why


@pytest.mark.parametrize("asset, addr, reason", [
    ("BTC", "", "empty"),
    ("BTC", "x" * 129, "at most 128"),
    ("BTC", "bc1q w508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "characters no address has"),
    ("BTC", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "checksum"),
    ("BTC", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", None),  # BIP-173's own example
    ("BTC", "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "segwit version 2"),  # BIP-350: v2, 16 bytes
    ("BTC", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", None),
    ("BTC", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", None),
    ("BTC", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "base58check checksum"),
    ("BTC", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", None),
    ("DOGE", address_for("BTC", _pub(3)), "no bech32"),
    ("ETH", "0x" + "0" * 40, "zero address"),
    ("ETH", "0x52908400098527886E0F7030069857D2E4169EE7", None),  # EIP-55's all-caps example
    ("ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", None),  # EIP-55's mixed-case example
    ("ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "EIP-55"),
    ("ETH", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x and 40 hex"),
    ("NOPE", "x", "unknown asset"),
])
def test_known_cases(asset, addr, reason):
    got, why = check_destination(asset, addr)
    if reason is None:
        assert why is None and got, why
    else:
        assert got is None and reason in why, why
