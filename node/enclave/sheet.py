"""The enclave's own reading of an offer sheet body (I4): which deposit keys the sheet offers.

The enclave signs a sheet's exact body bytes, so it reads those bytes itself rather than believing the list
of keys the host hands in with them. It imports nothing of the host: ``_Sheet`` mirrors the layout of the
version-3 ``SheetWire`` (``node.protocols.offers``)::

    [version, net, origin, seq, issued_at, [terms, entries], retracted, offers_root, quote, binding, unoffered]
    Entry = [terms, kind, pubkey, amount, usd_cents]

Only the version and the entries' keys are read; the rest is left as raw bytes (the receivers check it).
"""

from __future__ import annotations

import msgspec

from node.enclave.common import Refusal

SHEET_VERSION = 3  # the only sheet version the enclave signs (node.protocols.offers.SHEET_VERSION)


class _Entry(msgspec.Struct, array_like=True, frozen=True):
    terms: int
    kind: int
    pubkey: bytes
    amount: int
    usd_cents: int


class _Table(msgspec.Struct, array_like=True, frozen=True):
    terms: msgspec.Raw
    entries: list[_Entry]


class _Sheet(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    origin: str
    seq: int
    issued_at: float
    offers: _Table
    retracted: msgspec.Raw
    offers_root: bytes
    quote: bytes
    binding: msgspec.Raw
    unoffered: msgspec.Raw = msgspec.Raw(b"\x90")


_decoder = msgspec.msgpack.Decoder(_Sheet)


def offered_keys(body: bytes) -> list[bytes]:
    """The deposit keys a version-3 sheet body offers, in its order; ``Refusal("sheet-unreadable")`` for
    anything else."""
    try:
        sheet = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Refusal("sheet-unreadable", "the bytes to sign are not a version-3 offer sheet body") from None
    if sheet.version != SHEET_VERSION:
        raise Refusal("sheet-unreadable", f"sheet version {sheet.version}; this enclave signs version "
                      f"{SHEET_VERSION} only")
    return [e.pubkey for e in sheet.offers.entries]
