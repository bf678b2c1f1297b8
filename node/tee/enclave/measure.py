"""The measurement of the enclave's trusted code (the simulated MRENCLAVE).

A SHA-256 over the enclave's code files, reproducible from a source checkout:
every ``*.py`` under ``node/tee/enclave/`` plus the project modules it
loads (``EXTRA_FILES``: ``node/crypto.py``, ``node/wire.py``, ``node/tee/binding.py``, ...), each as its path relative to
the repository root and its bytes, in sorted order. Anyone with the same
source revision computes the same value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MEASURE_TAG = b"keyswitch/sim-measurement/1"
#: project modules outside this package that the enclave process loads
EXTRA_FILES = (
    "node/__init__.py",
    "node/crypto.py",
    "node/wire.py",
    "node/tee/__init__.py",
    "node/tee/binding.py",
    "node/tee/verdict.py",
)


def project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def measured_files(root: Path | None = None) -> list[str]:
    """Relative paths (posix) of the measured files, sorted."""
    root = project_root() if root is None else Path(root)
    pkg = root / "node" / "tee" / "enclave"
    rels = {p.relative_to(root).as_posix() for p in pkg.rglob("*.py") if "__pycache__" not in p.parts}
    rels.update(EXTRA_FILES)
    return sorted(rels)


def code_measurement(root: Path | None = None) -> str:
    """Hex SHA-256 of the enclave's trusted code files under ``root`` (default: this checkout)."""
    root = project_root() if root is None else Path(root)
    h = hashlib.sha256(MEASURE_TAG)
    for rel in measured_files(root):
        data = (root / rel).read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel.encode())
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()
