"""The standard library of contracts: ``swap``, ``escrow``, ``option``, ``ring``.

``source(name)`` returns the source text; ``names()`` lists them. Examples of
each are in ``node/contracts/README.md``.
"""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.ks"))


def source(name: str) -> str:
    if name not in names():
        raise KeyError(f"no standard contract {name!r} (have: {', '.join(names())})")
    return (_DIR / f"{name}.ks").read_text(encoding="utf-8")
