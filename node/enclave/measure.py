"""The measurement of the enclave's trusted code (the simulated MRENCLAVE).

``TRUSTED_CODE`` is the enclave's trusted code set, decided here and nowhere
else: the enclave package plus the pure shared modules it loads (wire format,
crypto, bindings, the contract interpreter and its grammar and stdlib, the
attestation verifiers ``node.attest.binding`` calls, the hardware quote and
sealing providers). ``measured_files`` expands it into files; the
measurement is a SHA-256 over those files, each as its path relative to the
repository root and its bytes, in sorted order. Anyone with the same source
revision computes the same value.

Two tests hold the set to the truth (``tests/test_layering.py``): no module in
it imports a project module outside it (a static scan, imports inside
functions included), and an enclave process started the way the client
starts it loads no project file that is not measured. Third-party libraries
(coincurve, cryptography, msgspec, lark) and the standard library are not
measured: they come from the installed environment, pinned by the package
lock, not from this checkout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MEASURE_TAG = b"keyswitch/sim-measurement/2"

#: The enclave's trusted code set, relative to the repository root. An entry ending in "/" is a directory:
#: every file under it is measured (code and the data files the code reads: the contract grammar and stdlib,
#: the pinned vendor roots), except ``__pycache__`` and documentation (``*.md``: never loaded).
TRUSTED_CODE = (
    "node/__init__.py",
    "node/wire.py",
    "node/crypto.py",
    "node/fsutil.py",  # the atomic file write the sealed store uses
    "node/contracts/",
    "node/attest/__init__.py",
    "node/attest/binding.py",
    "node/attest/policy.py",  # the policy the enclave verifies peers under (attest_peer, I3)
    "node/attest/verdict.py",
    "node/attest/simquote.py",
    "node/attest/evidence/",
    "node/enclave/",  # with its hardware quote and sealing providers (node/enclave/hw/)
)
_NOT_LOADED_SUFFIXES = (".md", ".pyc", ".pyo")
#: Host code inside a measured directory, never loaded by the enclave: a contract's protocol and desk live in
#: one folder with its language (issue #19), but only the language runs inside the enclave. The enclave process
#: test in ``tests/test_layering.py`` fails if the enclave ever loads one of these files.
HOST_CODE = ("node/contracts/protocol/", "node/contracts/desk/")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def measured_files(root: Path | None = None) -> list[str]:
    """Relative paths (posix) of the measured files, sorted: ``TRUSTED_CODE`` expanded."""
    root = project_root() if root is None else Path(root)
    rels: set[str] = set()
    for entry in TRUSTED_CODE:
        if entry.endswith("/"):
            for p in (root / entry).rglob("*"):
                rel = p.relative_to(root).as_posix()
                if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(_NOT_LOADED_SUFFIXES) \
                        and not rel.startswith(HOST_CODE):
                    rels.add(rel)
        else:
            rels.add(entry)
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
