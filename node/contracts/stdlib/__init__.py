"""The standard library of contracts: ``swap``, ``escrow``, ``option``, ``ring`` (and ``turns``, the swap ``keyswitch swap`` runs).

``source(name)`` returns the source text; ``names()`` lists them. Examples of
each are in ``node/contracts/README.md``.

**Identity by hash, never by text.** A host deciding whether a proposed contract *is* the stdlib option
(say) must not search its source for words: a contract whose text merely contains the stdlib's words (in a
comment, or the stdlib text with one clause changed) is another contract. ``SOURCE_HASHES`` pins the
SHA-256 of each stdlib source (UTF-8 bytes, exactly as shipped) and ``SCHEMAS`` its parameters (name ->
type); ``identify(source, params)`` names the stdlib contract whose hash *and* parameter schema both
match exactly, else None. ``tests/contracts/test_stdlib_hashes.py`` checks the pinned hashes against the
sources, so a change to a stdlib contract is a reviewed change of its hash.
"""

from __future__ import annotations

import hashlib

from . import escrow, option, ring, swap, turns

#: name -> source text (each in its own module, ``stdlib/<name>.py``: the package reads no file)
_SOURCES: dict[str, str] = {m.__name__.rsplit(".", 1)[1]: m.SOURCE for m in (escrow, option, ring, swap, turns)}

#: SHA-256 (hex) of each stdlib contract's source text, pinned
SOURCE_HASHES: dict[str, str] = {
    "escrow": "4c12b2819c682007197ecf4ed7c61bde6c5adbae69ff013a0165b91d787a5010",
    "option": "b77880eed186af3beee72d49f729f14b45b4697ed9cfb81f0221bf374547f788",
    "ring": "24acfb49fd2a10f249ac727925fe0129d844252542e1ed4ec816d0550ffc9e27",
    "swap": "2cf2f66c8d4ff6ab73c17cdac9871afe9a66ffa1a05a06494e13ac1cef9a26d2",
    "turns": "701a52c0dbc2284260e309487f9bc4a2367ab42d3c6ac4739f8a71ec4c2f9736",
}

#: each stdlib contract's parameters: name -> type ("int" or "str"), exactly
SCHEMAS: dict[str, dict[str, str]] = {
    "escrow": {"height_asset": "str", "refund_height": "int"},
    "option": {"height_asset": "str", "premium_chunks": "int", "premium_by": "int", "expiry": "int"},
    "ring": {"usd": "int", "height_asset": "str", "deadline": "int"},
    "swap": {"asset_a": "str", "asset_b": "str", "usd": "int", "deadline": "int"},
    "turns": {},
}


def names() -> list[str]:
    return sorted(_SOURCES)


def source(name: str) -> str:
    if name not in _SOURCES:
        raise KeyError(f"no standard contract {name!r} (have: {', '.join(names())})")
    return _SOURCES[name]


def source_hash(text: str) -> str:
    """SHA-256 (hex) of a contract source's UTF-8 bytes: what identifies a contract to a host's policy."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _type_name(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    return {int: "int", str: "str"}.get(type(v), type(v).__name__)


def schema_mismatch(name: str, params: dict) -> str | None:
    """None when ``params`` has exactly the stdlib ``name``'s parameters with their types, else the reason."""
    want = SCHEMAS[name]
    if set(params) != set(want):
        return (f"parameters {sorted(params)} are not the stdlib {name}'s {sorted(want)}")
    for k, t in sorted(want.items()):
        if _type_name(params[k]) != t:
            return f"parameter {k} is {_type_name(params[k])}, the stdlib {name} takes {t}"
    return None


def identify(text: str, params: dict) -> tuple[str | None, str]:
    """(name, "") of the stdlib contract whose source hash is exactly ``text``'s and whose parameter schema
    ``params`` matches; else (None, reason)."""
    h = source_hash(text)
    name = next((n for n, x in SOURCE_HASHES.items() if x == h), None)
    if name is None:
        return None, f"source hash {h} is no stdlib contract's"
    bad = schema_mismatch(name, params)
    return (None, bad) if bad else (name, "")
