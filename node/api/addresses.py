"""Is a destination an address of the deposit's chain? Checked before a key is exported or anything signed.

A sweep sends everything a deposit key controls to ``to``. A string that is not an address of the asset's
own chain (another asset's format, another network's bech32 HRP or base58 version byte, a typo caught by
the checksum, a future segwit version nobody can spend yet, the zero address) burns the funds or strands
them, so it is refused with the reason. Decoding uses embit's bech32/base58 and eth-utils' EIP-55, the
libraries ``node.assets`` encodes with.

``check_destination(asset, address)`` returns ``(canonical, None)`` (bech32 lower case, EIP-55 for
Ethereum-like assets: a dev ledger keys accounts by that exact string) or ``(None, reason)``.
"""

from __future__ import annotations

from node.assets import ASSETS, UnknownAsset, get_asset

MAX_ADDRESS_CHARS = 128  # a bech32 address is at most 90 characters, an Ethereum one 42
_B58 = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_BECH32 = set("qpzry9x8gf2tvdw0s3jn54khce6mua7l")


def _short(address: str) -> str:
    return repr(address if len(address) <= 48 else address[:40] + "…")


def _hrps() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in ASSETS.values():
        if a.kind == "utxo" and a.network.get("bech32"):
            out.setdefault(a.network["bech32"], []).append(a.symbol)
    return out


def _versions() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for a in ASSETS.values():
        if a.kind == "utxo":
            for k in ("p2pkh", "p2sh"):
                out.setdefault(a.network[k][0], []).append(a.symbol)
    return out


def check_destination(asset: str, address: str) -> tuple[str, None] | tuple[None, str]:
    try:
        a = get_asset(asset)
    except UnknownAsset as exc:
        return None, str(exc)
    if not address:
        return None, "the destination address is empty"
    if len(address) > MAX_ADDRESS_CHARS:
        return None, f"a destination address has at most {MAX_ADDRESS_CHARS} characters, got {len(address)}"
    if not all(33 <= ord(ch) <= 126 for ch in address):
        return None, f"{_short(address)} has characters no address has (spaces, control or non-ASCII characters)"
    if a.kind == "account":
        return _account(a.symbol, address)
    return _utxo(a, address)


def _account(asset: str, address: str):
    from eth_utils import to_checksum_address

    if not address.startswith("0x"):
        return None, f"{_short(address)} is not an {asset} address: one is 0x and 40 hex digits"
    body = address[2:]
    if len(body) != 40 or any(ch not in "0123456789abcdefABCDEF" for ch in body):
        return None, f"{_short(address)} is not an {asset} address: one is 0x and 40 hex digits"
    if int(body, 16) == 0:
        return None, "the zero address burns what is sent to it"
    canonical = to_checksum_address(address)
    if body not in (body.lower(), body.upper()) and address != canonical:
        return None, f"{_short(address)} fails its EIP-55 checksum (its mixed case does not match: a typo?)"
    return canonical, None


def _utxo(a, address: str):
    from embit import bech32

    hrp = a.network.get("bech32") or ""
    lowered = address.lower()
    hrps = _hrps()
    looks_bech32 = any(lowered.startswith(h + "1") for h in hrps) or (
        "1" in lowered and lowered[:lowered.rfind("1")].isalpha() and address in (lowered, address.upper())
        and any(ch not in _B58 for ch in address))
    if looks_bech32:
        if address not in (lowered, address.upper()):
            return None, f"{_short(address)} mixes upper and lower case, which a bech32 address never does"
        enc, got_hrp, _ = bech32.bech32_decode(lowered)
        if enc is None:
            data = lowered[lowered.rfind("1") + 1:]
            if any(ch not in _BECH32 for ch in data) or not 7 <= len(data) <= 89 or len(lowered) > 90:
                return None, f"{_short(address)} is not a bech32 address (characters outside the bech32 set or " \
                             f"wrong length)"
            return None, f"{_short(address)} fails its bech32 checksum (a typo?)"
        if not hrp:
            return None, f"{a.symbol} has no bech32 (segwit) addresses: send to a base58 address of {a.symbol}"
        if got_hrp != hrp:
            others = ", ".join(hrps.get(got_hrp, [])) or "no asset this node knows"
            return None, f"{got_hrp}1… is another network's address ({others}); {a.symbol} addresses start {hrp}1"
        version, program = bech32.decode(hrp, lowered)
        if version is None:
            return None, f"{_short(address)} is not a valid segwit address (witness version, program length or " \
                         f"bech32/bech32m encoding)"
        if not (version == 0 or (version == 1 and len(program) == 32)):
            return None, f"segwit version {version} (program of {len(program)} bytes) is not spendable by any " \
                         f"wallet yet: what is sent there can be lost"
        return lowered, None
    from embit import base58

    if any(ch not in _B58 for ch in address):
        return None, f"{_short(address)} is not a {a.symbol} address: neither bech32" \
                     + (f" ({hrp}1…)" if hrp else "") + " nor base58check"
    try:
        payload = base58.decode_check(address)
    except ValueError:
        return None, f"{_short(address)} fails its base58check checksum (a typo?)"
    if len(payload) != 21:
        return None, f"{_short(address)} is not a {a.symbol} address: base58check payload of {len(payload)} " \
                     f"bytes, not 21"
    mine = (a.network["p2pkh"][0], a.network["p2sh"][0])
    if payload[0] not in mine:
        others = ", ".join(_versions().get(payload[0], [])) or "no asset this node knows"
        return None, f"base58 version byte 0x{payload[0]:02x} is another network's ({others}); {a.symbol} uses " \
                     f"0x{mine[0]:02x} (P2PKH) or 0x{mine[1]:02x} (P2SH)"
    return address, None
