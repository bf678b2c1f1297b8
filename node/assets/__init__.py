"""Assets: native address formats from a deposit key, key export, prices, chunk sizes.

A deposit key is a compressed secp256k1 public key. For Bitcoin-like assets
the deposit address is P2WPKH (bech32) by default, P2PKH (base58check) on
request, and P2PKH only for Dogecoin (no segwit); for Ethereum-like assets it
is the EIP-55 checksummed address. Encoders are embit's (Bitcoin-like) and
eth-keys' (Ethereum-like), not hand-written. Exported private keys are WIF for
Bitcoin-like assets and 0x-hex for Ethereum-like ones; exporting happens only
at the final hand-over to the owner's wallet (``Enclave.export_to_owner``).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.assets.prices import (  # noqa: F401  (re-exported)
    CsvPrices, JsonPrices, Price, PriceFeed, PriceSeries, StaticPrices, chunk_amount, usd_value_cents,
)


class UnknownAsset(KeyError):
    def __init__(self, symbol: str):
        super().__init__(symbol)
        self.symbol = symbol

    def __str__(self) -> str:
        return f"unknown asset {self.symbol!r}; known: {', '.join(sorted(ASSETS))}"


@dataclass(frozen=True)
class Asset:
    symbol: str
    name: str
    kind: str  # "utxo" | "account"
    decimals: int
    network: dict | None = None  # embit-style prefixes for Bitcoin-like assets
    segwit: bool = True
    chain_id: int | None = None  # Ethereum-like

    @property
    def unit(self) -> int:
        return 10**self.decimals


def _btc_net(name: str) -> dict:
    from embit import networks

    return dict(networks.NETWORKS[name])


_LTC = {"name": "Litecoin", "wif": b"\xb0", "p2pkh": b"\x30", "p2sh": b"\x32", "bech32": "ltc"}
_LTC_TEST = {"name": "Litecoin testnet", "wif": b"\xef", "p2pkh": b"\x6f", "p2sh": b"\x3a", "bech32": "tltc"}
_DOGE = {"name": "Dogecoin", "wif": b"\x9e", "p2pkh": b"\x1e", "p2sh": b"\x16", "bech32": ""}
_DOGE_TEST = {"name": "Dogecoin testnet", "wif": b"\xf1", "p2pkh": b"\x71", "p2sh": b"\xc4", "bech32": ""}


def _registry() -> dict[str, Asset]:
    return {a.symbol: a for a in [
        Asset("BTC", "Bitcoin", "utxo", 8, _btc_net("main")),
        Asset("BTC-TEST", "Bitcoin testnet", "utxo", 8, _btc_net("test")),
        Asset("BTC-REG", "Bitcoin regtest", "utxo", 8, _btc_net("regtest")),
        Asset("LTC", "Litecoin", "utxo", 8, _LTC),
        Asset("LTC-TEST", "Litecoin testnet", "utxo", 8, _LTC_TEST),
        Asset("DOGE", "Dogecoin", "utxo", 8, _DOGE, segwit=False),
        Asset("DOGE-TEST", "Dogecoin testnet", "utxo", 8, _DOGE_TEST, segwit=False),
        Asset("ETH", "Ether", "account", 18, chain_id=1),
        Asset("ETH-DEV", "Ether (local dev chain)", "account", 18, chain_id=31337),
    ]}


ASSETS: dict[str, Asset] = _registry()


def get_asset(symbol: str) -> Asset:
    try:
        return ASSETS[symbol]
    except KeyError:
        raise UnknownAsset(symbol) from None


def _check_pub(pubkey33: bytes) -> None:
    if not isinstance(pubkey33, (bytes, bytearray)) or len(pubkey33) != 33 or pubkey33[0] not in (2, 3):
        raise ValueError("a deposit key is a 33-byte compressed secp256k1 public key")


def address_kinds(asset: str) -> tuple[str, ...]:
    a = get_asset(asset)
    if a.kind == "account":
        return ("eip55",)
    return ("p2wpkh", "p2pkh") if a.segwit else ("p2pkh",)


def address_for(asset: str, pubkey33: bytes, *, kind: str | None = None) -> str:
    """The deposit address of ``pubkey33`` on ``asset`` (default kind: first of ``address_kinds``)."""
    a = get_asset(asset)
    _check_pub(pubkey33)
    kinds = address_kinds(asset)
    kind = kind or kinds[0]
    if kind not in kinds:
        raise ValueError(f"{asset} has no {kind} addresses (it has {', '.join(kinds)})")
    if a.kind == "account":
        from eth_keys import keys

        return keys.PublicKey.from_compressed_bytes(bytes(pubkey33)).to_checksum_address()
    from embit import ec, script

    pub = ec.PublicKey.parse(bytes(pubkey33))
    s = script.p2wpkh(pub) if kind == "p2wpkh" else script.p2pkh(pub)
    return s.address(a.network)


def export_key(asset: str, secret32: bytes) -> str:
    """The owner-facing form of a private key: WIF (compressed) or 0x-hex. Never log the result."""
    a = get_asset(asset)
    if len(secret32) != 32:
        raise ValueError("a private key is 32 bytes")
    if a.kind == "account":
        return "0x" + secret32.hex()
    from embit import ec

    return ec.PrivateKey(secret32).wif(a.network)


def _p2wpkh_address(network: dict, pubkey33: bytes) -> str:
    """What ``address_for(..., kind="p2wpkh")`` returns, without embit's decode-after-encode self-check.

    The same embit encoder (hash160, convertbits, bech32_encode) with one
    bech32 checksum computation instead of three; ``validate_address`` runs
    it for every offer of every sheet it has not seen before, where it was
    most of the cost. ``tests/assets`` checks it equals ``address_for``."""
    from embit import bech32, ec, hashes

    ec.PublicKey.parse(bytes(pubkey33))  # a point on the curve (ValueError otherwise), as address_for checks
    return bech32.bech32_encode(bech32.Encoding.BECH32, network["bech32"],
                                [0] + bech32.convertbits(hashes.hash160(bytes(pubkey33)), 8, 5))


def validate_address(asset: str, pubkey33: bytes, address: str) -> str | None:
    """None when ``address`` is one of ``pubkey33``'s addresses on ``asset``, else the reason."""
    try:
        a = get_asset(asset)
        _check_pub(pubkey33)
        if a.kind == "utxo" and a.segwit and address == _p2wpkh_address(a.network, pubkey33):
            return None  # the default deposit address; anything else gets the full check below
        ok = any(address_for(asset, pubkey33, kind=k) == address for k in address_kinds(asset))
    except UnknownAsset as exc:
        return str(exc)
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # embit's ECError (not a ValueError): a 33-byte key that is not a curve point
        from embit.base import EmbitError

        if isinstance(exc, EmbitError):
            return f"not a valid public key: {exc}"
        raise
    return None if ok else f"address {address!r} is not derived from the offered deposit key on {asset}"
