"""Addresses and exported keys, cross-checked against published vectors and second implementations."""

import hashlib
from decimal import Decimal

import coincurve
import pytest
from eth_account import Account
from hypothesis import given, settings, strategies as st

from node.assets import (
    ASSETS, CsvPrices, JsonPrices, Price, PriceSeries, StaticPrices, UnknownAsset, address_for, address_kinds,
    chunk_amount, export_key, get_asset, usd_value_cents, validate_address,
)
from node.assets.prices import PriceError

G = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")  # key 1


def test_published_vectors():
    assert address_for("BTC", G) == "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP-173
    assert address_for("BTC-TEST", G) == "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"  # BIP-173
    assert address_for("BTC", G, kind="p2pkh") == "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"
    assert export_key("BTC", (1).to_bytes(32, "big")) == "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn"
    assert address_for("ETH", G) == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"  # address of key 1


# a second, independent base58check/hash160 implementation (test-only), checked against embit
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def hash160(b: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=2**255))
def test_every_asset_matches_a_second_implementation(secret_int):
    secret = secret_int.to_bytes(32, "big")
    key = coincurve.PrivateKey(secret)
    pub = key.public_key.format()
    for sym, a in ASSETS.items():
        if a.kind == "account":
            assert address_for(sym, pub) == Account.from_key(secret).address
            assert export_key(sym, secret) == "0x" + secret.hex()
            continue
        assert address_for(sym, pub, kind="p2pkh") == b58check(a.network["p2pkh"] + hash160(pub))
        assert export_key(sym, secret) == b58check(a.network["wif"] + secret + b"\x01")
        if a.segwit:
            assert address_for(sym, pub).startswith(a.network["bech32"] + "1q")
        assert validate_address(sym, pub, address_for(sym, pub)) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140))
def test_validate_address_fast_path_is_address_for(secret_int):
    from node.assets import _p2wpkh_address

    pub = coincurve.PrivateKey(secret_int.to_bytes(32, "big")).public_key.format()
    for a in ASSETS.values():
        if a.kind == "utxo" and a.segwit:
            assert _p2wpkh_address(a.network, pub) == address_for(a.symbol, pub, kind="p2wpkh")
            assert validate_address(a.symbol, pub, address_for(a.symbol, pub, kind="p2pkh")) is None
            assert validate_address(a.symbol, pub, address_for(a.symbol, pub).upper()) is not None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([2, 3]), st.binary(min_size=32, max_size=32))
def test_fast_path_accepts_exactly_the_curve_points_embit_accepts(prefix, x):
    """The fast path's point check (libsecp256k1 directly) agrees with embit's parse on random x
    coordinates (about half of them are not on the curve)."""
    from embit import ec
    from embit.base import EmbitError

    from node.assets import _p2wpkh_address

    pub = bytes([prefix]) + x
    try:
        ec.PublicKey.parse(pub)
        on_curve = True
    except (EmbitError, ValueError):
        on_curve = False
    net = ASSETS["BTC"].network
    if on_curve:
        assert _p2wpkh_address(net, pub) == address_for("BTC", pub, kind="p2wpkh")
    else:
        with pytest.raises(ValueError, match="not a point on secp256k1"):
            _p2wpkh_address(net, pub)
        assert validate_address("BTC", pub, "bc1qanything") is not None


def test_bad_input_gets_clear_errors():
    with pytest.raises(UnknownAsset, match="unknown asset 'XYZ'; known: BTC"):
        get_asset("XYZ")
    with pytest.raises(ValueError, match="33-byte compressed"):
        address_for("BTC", b"\x04" + b"\x00" * 64)
    with pytest.raises(ValueError, match="DOGE has no p2wpkh"):
        address_for("DOGE", G, kind="p2wpkh")
    assert "not derived" in validate_address("BTC", G, "bc1qsomethingelse")
    assert "unknown asset" in validate_address("NOPE", G, "x")
    off_curve = b"\x02" + b"\xff" * 32  # right length and prefix, not a point: a reason, not an exception
    assert "not a valid public key" in validate_address("BTC-REG", off_curve, "bcrt1qxyz")
    assert validate_address("ETH-DEV", off_curve, "0xabc")
    assert address_kinds("DOGE") == ("p2pkh",)


def test_chunks_round_down_and_round_trip():
    p = StaticPrices().price("BTC-REG", 1000.0)
    assert p.usd_per_unit == Decimal(100000) and p.at == 1000.0
    assert chunk_amount("BTC-REG", 5000, p) == 50_000  # $50 at $100k = 0.0005 BTC
    eth = Price("ETH", Decimal("3333.33"), 0, "t")
    amt = chunk_amount("ETH", 5000, eth)
    assert usd_value_cents("ETH", amt, eth) == 5000 and usd_value_cents("ETH", amt + 10**16, eth) > 5000
    with pytest.raises(ValueError, match="less than one smallest unit"):
        chunk_amount("BTC", 1, Price("BTC", Decimal("1e12"), 0, "t"))


def test_price_sources(tmp_path):
    (tmp_path / "p.json").write_text('{"at": 1700000000, "prices": {"BTC": 50000, "ETH": "2500.5"}}')
    jp = JsonPrices(tmp_path / "p.json")
    assert jp.price("BTC-TEST", 0).usd_per_unit == 50000 and jp.price("ETH", 0).at == 1700000000
    (tmp_path / "p.csv").write_text("time,asset,usd\n0,BTC,100\n10,BTC,200\n")
    cp = CsvPrices(tmp_path / "p.csv")
    assert cp.price("BTC", 5).usd_per_unit == 100 and cp.price("BTC", 10).usd_per_unit == 200
    with pytest.raises(PriceError, match="no BTC price at or before"):
        cp.price("BTC", -1)
    (tmp_path / "bad.csv").write_text("when,what\n1,2\n")
    with pytest.raises(PriceError, match="expected columns"):
        CsvPrices(tmp_path / "bad.csv")
    with pytest.raises(PriceError, match="positive finite"):
        PriceSeries([(0, "BTC", "-1")])
    with pytest.raises(PriceError, match="no price for 'XMR'"):
        StaticPrices().price("XMR", 0)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(ASSETS)), st.integers(1, 10**7),
       st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1000000"), places=4))
def test_chunk_is_the_largest_amount_not_worth_more_than_asked(asset, usd_cents, usd_per_unit):
    price = Price(asset, usd_per_unit, 0, "t")
    unit = get_asset(asset).unit
    try:
        amount = chunk_amount(asset, usd_cents, price)
    except ValueError:
        assert Decimal(usd_cents) / 100 < usd_per_unit / unit  # less than one smallest unit: refused
        return
    exact = lambda a: Decimal(a) * usd_per_unit / unit  # noqa: E731  (USD value, exact)
    assert exact(amount) <= Decimal(usd_cents) / 100 < exact(amount + 1)  # never over, one unit short at most


def test_a_declared_usd_value_is_checked_against_our_own_price_both_ways():
    from node.assets.prices import StaticPrices, chunk_amount, declared_usd_mismatch

    p = StaticPrices().price("BTC-REG", 0)
    amt = chunk_amount("BTC-REG", 5000, p)
    assert declared_usd_mismatch("BTC-REG", amt, 5000, p) is None
    assert declared_usd_mismatch("BTC-REG", amt, 5400, p) is None  # within 10 %
    assert "risk.price_tolerance" in declared_usd_mismatch("BTC-REG", 1, 5000, p)  # 1 sat declared as $50
    assert declared_usd_mismatch("BTC-REG", amt, 50000, p)  # $50 of coin declared as $500
    assert declared_usd_mismatch("BTC-REG", amt, 5400, p, tolerance=0.01)
    assert declared_usd_mismatch("BTC-REG", 0, 5000, p) and declared_usd_mismatch("BTC-REG", amt, 0, p)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_the_copied_ripemd160_is_ripemd160_and_its_fallback_is_embits_own(msg):
    """``node.assets._ripemd160`` (one OpenSSL object copied per call, for the addresses of a sheet's keys)
    against a second implementation (embit's pure Python), and, where OpenSSL lacks RIPEMD-160, embit's."""
    from unittest import mock

    from embit.util.py_ripemd160 import ripemd160 as pure

    import node.assets as assets

    assert assets._ripemd160(msg) == pure(msg) == assets._ripemd160(msg)  # (the template is never consumed)

    def no_ripemd(name, *a, **kw):
        raise ValueError(f"unsupported hash type {name}")

    with mock.patch.object(assets.hashlib, "new", no_ripemd):
        assert assets._openssl_ripemd160() is assets._embit_ripemd160
