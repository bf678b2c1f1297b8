"""Assets: native address formats from a deposit key, key export, prices, chunk sizes.

A deposit key is a compressed secp256k1 public key. For Bitcoin-like assets
the deposit address is P2WPKH (bech32) by default, P2PKH (base58check) on
request, and P2PKH only for Dogecoin (no segwit); for Ethereum-like assets it
is the EIP-55 checksummed address. Encoders are embit's (Bitcoin-like) and
eth-keys' (Ethereum-like), not hand-written, but for one fast path:
``validate_address`` and offer-sheet validation derive P2WPKH addresses with
their own table-driven bech32 and libsecp256k1's point check
(``_p2wpkh_addresses``, tested equal to embit's for random keys and for random
non-points). Exported private keys are WIF for
Bitcoin-like assets and 0x-hex for Ethereum-like ones; exporting happens only
at the final hand-over to the owner's wallet (``Enclave.export_to_owner``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _secp
from coincurve.context import GLOBAL_CONTEXT as _GLOBAL_CONTEXT
from embit.hashes import ripemd160 as _embit_ripemd160  # OpenSSL's, or embit's own where OpenSSL lacks it

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
#: Litecoin Core's regtest (chainparams.cpp CRegTestParams: PUBKEY_ADDRESS 111, SCRIPT_ADDRESS2 58, SECRET_KEY 239,
#: bech32 "rltc"), as litecoind -regtest answers getnewaddress (rltc1q..., m/n..., Q...)
_LTC_REG = {"name": "Litecoin regtest", "wif": b"\xef", "p2pkh": b"\x6f", "p2sh": b"\x3a", "bech32": "rltc"}
_DOGE = {"name": "Dogecoin", "wif": b"\x9e", "p2pkh": b"\x1e", "p2sh": b"\x16", "bech32": ""}
_DOGE_TEST = {"name": "Dogecoin testnet", "wif": b"\xf1", "p2pkh": b"\x71", "p2sh": b"\xc4", "bech32": ""}


def _registry() -> dict[str, Asset]:
    return {a.symbol: a for a in [
        Asset("BTC", "Bitcoin", "utxo", 8, _btc_net("main")),
        Asset("BTC-TEST", "Bitcoin testnet", "utxo", 8, _btc_net("test")),
        Asset("BTC-REG", "Bitcoin regtest", "utxo", 8, _btc_net("regtest")),
        Asset("LTC", "Litecoin", "utxo", 8, _LTC),
        Asset("LTC-TEST", "Litecoin testnet", "utxo", 8, _LTC_TEST),
        Asset("LTC-REG", "Litecoin regtest (litecoind -regtest)", "utxo", 8, _LTC_REG),
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


_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_step_xor(top: int) -> int:
    x = 0
    for i, g in enumerate(_BECH32_GEN):
        if top >> i & 1:
            x ^= g
    return x


#: BIP-173's polymod step: its five conditional generator XORs, looked up by the top 5 bits
_BECH32_TABLE = tuple(_bech32_step_xor(top) for top in range(32))
_hrp_state: dict[str, int] = {}


def _openssl_ripemd160():
    """RIPEMD-160 by copying one OpenSSL hash object (``hashlib.new("ripemd160")`` looks the digest up again
    on every call under OpenSSL 3, ~4x the hash itself), or embit's where OpenSSL lacks it."""
    try:
        template = hashlib.new("ripemd160")
    except ValueError:
        return _embit_ripemd160

    def ripemd160(msg: bytes) -> bytes:
        h = template.copy()
        h.update(msg)
        return h.digest()

    return ripemd160


_ripemd160 = _openssl_ripemd160()

_SECP_CTX = _GLOBAL_CONTEXT.ctx
_secp_parse = _secp.secp256k1_ec_pubkey_parse
_POINT_BUF = _ffi.new("secp256k1_pubkey *")  # parse's output, discarded: only its success is used


def _bech32_polymod(values, chk: int = 1) -> int:
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v ^ _BECH32_TABLE[top]
    return chk


_program_tables: list[list[int]] = []  # [byte position][byte value] -> its share of the checksum (built once)
#: every pair of bech32 symbols, by their 10 bits
_BECH32_PAIRS = tuple(a + b for a in _BECH32_CHARSET for b in _BECH32_CHARSET)


def _p2wpkh_program_tables() -> list[list[int]]:
    """BIP-173's checksum is linear over GF(2) in the data: each of the program's 20 bytes adds (XOR) a
    share that depends only on its position and value, tabulated here (20 x 256 entries)."""
    if not _program_tables:
        data0 = [0] * 39  # witness version 0, 32 program symbols, 6 checksum symbols (zero)
        bit = []
        for i in range(160):  # program bit i (0 = most significant) is bit 4 - i % 5 of symbol 1 + i // 5
            d = list(data0)
            d[1 + i // 5] = 1 << (4 - i % 5)
            bit.append(_bech32_polymod(d, 0))
        for j in range(20):
            row = [0] * 256
            for v in range(1, 256):
                low = v & -v  # the lowest set bit: bit 7 - k of the byte counted from its most significant
                row[v] = row[v ^ low] ^ bit[8 * j + 8 - low.bit_length()]
            _program_tables.append(row)
    return _program_tables


def _p2wpkh_address(network: dict, pubkey33: bytes) -> str:
    """What ``address_for(..., kind="p2wpkh")`` returns, computed for speed (``_p2wpkh_addresses`` for
    one key); ``ValueError`` if the key is not a compressed secp256k1 point."""
    address = _p2wpkh_addresses(network, [bytes(pubkey33)])[0]
    if address is None:
        raise ValueError("not a valid public key: not a point on secp256k1")
    return address


_SYMBOL_PAIR_SHIFTS = tuple(range(180, -10, -10))  # 19 pairs of bech32 symbols: 32 of the program, 6 of checksum


def _p2wpkh_addresses(network: dict, pubkeys: list[bytes]) -> list[str | None]:
    """The P2WPKH address of each key (``address_for(..., kind="p2wpkh")``), None for a key that is not a
    compressed secp256k1 point, computed for speed in one loop over a sheet's keys.

    Validating a sheet seen for the first time derives the address of every
    offer's key, where embit's encoder (three bech32 checksums, a generic bit
    converter, five conditionals per checksum step) was most of the cost.
    Same result: the key is checked to be a curve point (libsecp256k1's
    ``ec_pubkey_parse``, ~5 us of the ~11 us a key costs), the program is its HASH160, BIP-173's checksum,
    linear in the data, is the hrp's part (computed once per hrp) XOR one
    tabulated share per program byte, and the program's 160 bits and the
    checksum's 30 are written as 19 pairs of bech32 symbols. ``tests/assets`` checks it equals ``address_for``
    (embit) for random keys on every segwit asset, and that non-points fail."""
    hrp = network["bech32"]
    state = _hrp_state.get(hrp)
    if state is None:
        hrp_part = _bech32_polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp])
        state = _hrp_state[hrp] = _bech32_polymod([0] * 39, hrp_part) ^ 1  # bech32 (not bech32m) constant
    tables = _program_tables or _p2wpkh_program_tables()
    parse, ctx, point, sha256, hash160 = _secp_parse, _SECP_CTX, _POINT_BUF, hashlib.sha256, _ripemd160
    pairs, shifts, from_bytes, join = _BECH32_PAIRS, _SYMBOL_PAIR_SHIFTS, int.from_bytes, "".join
    prefix = hrp + "1q"
    out: list[str | None] = []
    for pubkey33 in pubkeys:
        if len(pubkey33) != 33 or not parse(ctx, point, pubkey33, 33):
            out.append(None)
            continue
        program = hash160(sha256(pubkey33).digest())
        mod = state
        for row, b in zip(tables, program):
            mod ^= row[b]
        n = from_bytes(program, "big") << 30 | mod  # the 32 program symbols, then the 6 checksum symbols
        out.append(prefix + join([pairs[n >> s & 1023] for s in shifts]))
    return out


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
