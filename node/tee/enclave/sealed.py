"""Sealed storage: the enclave's state encrypted at rest, written atomically.

File ``vault.sealed``::

    b"KSSEAL" | version (1) | counter (8, big-endian) | nonce (12) | AES-256-GCM(state)

with the header as associated data, so the counter cannot be altered without
breaking authentication. A write goes to a temporary file, is fsync'd, renamed
over the old file, and the directory is fsync'd: a ``kill -9`` at any instant
leaves either the old or the new state, never a torn one.

Rollback: every write increments the counter; after the sealed file is in
place, the counter is also written to ``counter`` (the simulated *monotonic
counter*; on hardware this would be a TPM/SGX/RPMB counter the host cannot
decrement). On load, a sealed state older than the counter is refused.

Sealing key (SIMULATED, INSECURE): HKDF over a 32-byte secret in
``sealing.secret`` (mode 0600) created on first use. Anyone who can read that
file can open the vault; a hardware backend derives it from the CPU instead.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEAL_MAGIC = b"KSSEAL"
SEAL_VERSION = 1
SEALED_FILE = "vault.sealed"
COUNTER_FILE = "counter"
SECRET_FILE = "sealing.secret"
_HEADER = len(SEAL_MAGIC) + 1 + 8


class SealedStateError(Exception):
    """The sealed state cannot be opened; ``reason`` says why (no key material in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sim_sealing_key(enclave_dir: Path) -> bytes:
    """The simulated backend's sealing key, from a per-datadir secret file (0600)."""
    enclave_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = enclave_dir / SECRET_FILE
    if not path.exists():
        atomic_write(path, secrets.token_bytes(32))
    secret = path.read_bytes()
    if len(secret) != 32:
        raise SealedStateError(f"{SECRET_FILE}: expected 32 bytes, found {len(secret)}")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyswitch/seal/1").derive(secret)


class SealedStore:
    def __init__(self, directory: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("sealing key must be 32 bytes")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._aead = AESGCM(key)
        self.counter = 0
        for stale in (self.dir / (SEALED_FILE + ".tmp"), self.dir / (COUNTER_FILE + ".tmp")):
            stale.unlink(missing_ok=True)

    @property
    def path(self) -> Path:
        return self.dir / SEALED_FILE

    def _read_counter(self) -> int:
        p = self.dir / COUNTER_FILE
        if not p.exists():
            return 0
        raw = p.read_bytes()
        if len(raw) != 8:
            raise SealedStateError("monotonic counter file is corrupt")
        return int.from_bytes(raw, "big")

    def load(self) -> bytes | None:
        """The sealed plaintext, or None if nothing was ever sealed here."""
        hw_counter = self._read_counter()
        if not self.path.exists():
            if hw_counter:
                raise SealedStateError("sealed state missing although the monotonic counter is set (deleted?)")
            return None
        blob = self.path.read_bytes()
        if len(blob) < _HEADER + 12 + 16 or not blob.startswith(SEAL_MAGIC):
            raise SealedStateError("sealed state is not a Keyswitch sealed file")
        if blob[len(SEAL_MAGIC)] != SEAL_VERSION:
            raise SealedStateError(f"unsupported sealed state version {blob[len(SEAL_MAGIC)]}")
        header = blob[:_HEADER]
        counter = int.from_bytes(header[-8:], "big")
        nonce, ct = blob[_HEADER : _HEADER + 12], blob[_HEADER + 12 :]
        try:
            plain = self._aead.decrypt(nonce, ct, header)
        except Exception:
            raise SealedStateError("sealed state does not authenticate (wrong sealing key or tampered)") from None
        if counter < hw_counter:
            raise SealedStateError(
                f"rollback detected: sealed state counter {counter} < monotonic counter {hw_counter}"
            )
        self.counter = counter
        return plain

    def save(self, plaintext: bytes) -> None:
        counter = self.counter + 1
        header = SEAL_MAGIC + bytes([SEAL_VERSION]) + counter.to_bytes(8, "big")
        nonce = os.urandom(12)
        atomic_write(self.path, header + nonce + self._aead.encrypt(nonce, plaintext, header))
        self.counter = counter
        # After the new state is durable: advance the (simulated) monotonic counter.
        atomic_write(self.dir / COUNTER_FILE, counter.to_bytes(8, "big"))
