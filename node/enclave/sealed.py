"""Sealed storage: the enclave's state encrypted at rest; a snapshot plus an append-only journal.

Snapshot ``vault.sealed``::

    b"KSSEAL" | version (1) | counter (8, big-endian) | nonce (12) | AES-256-GCM(state)

with the header as associated data, so the counter cannot be altered without
breaking authentication. It is written to a temporary file, fsync'd, renamed
over the old file, and the directory is fsync'd: a ``kill -9`` at any instant
leaves either the old or the new snapshot, never a torn one.

Journal ``vault.journal``: every later state is *appended* as one record and
fsync'd (one fsync, no rename: a release costs a fraction of a snapshot)::

    magic (4) | length (4) | counter (8) | nonce (12) | AES-256-GCM(body)   (the first 16 bytes as AAD)

with magic ``b"KSJR"`` when the body is a whole state (``save``) and ``b"KSJD"`` when it is what changed
since the record before (``save_delta``; ``node.enclave.statedelta``: a release appends its key record and
journal entry, not the enclave's whole history). The magic is authenticated, so one kind cannot be passed
off as the other. The state is the snapshot with the chain of records counter + 1, + 2, ... applied in
order (a whole-state record replaces what came before it); records at or below the snapshot's counter are
stale (a compaction that stopped before it emptied the journal). A record that is torn (a crash in the
middle of the append) or does not authenticate ends the chain; the next save cuts the journal there before
appending. Once the journal would outgrow ``JOURNAL_MAX`` or the snapshot's size, whichever is larger, the
next save writes a snapshot of the whole state instead and empties it: a save's cost stays that of what it
changed (a snapshot every so many saves, amortised), and a load replays at most about a snapshot's worth.

Rollback: every save increments the counter; after the state is durable, the
counter is appended to ``counter``, and fsync'd by ``sync_counter`` (the
enclave process calls it once its reply is on its way, so the flush overlaps
the host's work; the next save calls it first in any case). The counter is
never ahead of the durable state, so a crash at any instant still opens (the
simulated *monotonic counter*; on hardware this would be a TPM/SGX/RPMB counter the host cannot
decrement; the file holds 8-byte big-endian values, the largest counts, so a
torn append cannot lower it). On load, a state older than the counter is
refused: replaying an older snapshot and journal, or cutting the journal, is
detected.

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

from node.fsutil import atomic_write, fsync_dir

SEAL_MAGIC = b"KSSEAL"
SEAL_VERSION = 1
SEALED_FILE = "vault.sealed"
JOURNAL_FILE = "vault.journal"
COUNTER_FILE = "counter"
JOURNAL_MAGIC = b"KSJR"  # a record holding a whole state
DELTA_MAGIC = b"KSJD"  # a record holding what changed since the record before it
JOURNAL_MAX = 1 << 20  # bytes of journal before the next save writes a snapshot instead
_REC_HEAD = len(JOURNAL_MAGIC) + 4 + 8
COUNTER_MAX = 4096  # bytes of counter log before it is rewritten as one value
SECRET_FILE = "sealing.secret"
_HEADER = len(SEAL_MAGIC) + 1 + 8


class SealedStateError(Exception):
    """The sealed state cannot be opened; ``reason`` says why (no key material in it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def _append(path: Path, data: bytes, at: int | None = None, *, sync: bool = True) -> None:
    """Write ``data`` at offset ``at`` (default: the end), cutting the file there first, then fsync (unless
    ``sync`` is False); a new file's directory entry is fsync'd too."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if at is not None and at != end:
            os.ftruncate(fd, at)
            end = at
        view, off = memoryview(data), end
        while view:
            n = os.pwrite(fd, view, off)
            view, off = view[n:], off + n
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


class SealedStore:
    def __init__(self, directory: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("sealing key must be 32 bytes")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._aead = AESGCM(key)
        self.counter = 0
        self._counter_dirty = False  # appended, not yet fsync'd
        self._journal_end = 0  # where the valid chain of journal records ends (the next append goes there)
        self._snapshot_size = 0  # bytes of the last snapshot read or written (the journal may grow as large)
        self._must_snapshot = False  # a save failed: the next one writes a snapshot (``_save``)
        for stale in (self.dir / (SEALED_FILE + ".tmp"), self.dir / (COUNTER_FILE + ".tmp")):
            stale.unlink(missing_ok=True)

    @property
    def path(self) -> Path:
        return self.dir / SEALED_FILE

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL_FILE

    def _read_counter(self) -> int:
        p = self.dir / COUNTER_FILE
        if not p.exists():
            return 0
        raw = p.read_bytes()
        if len(raw) < 8:
            raise SealedStateError("monotonic counter file is corrupt")
        return max(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw) - 7, 8))

    def _replay(self, plain: bytes, counter: int) -> tuple[bytes, list[bytes], int]:
        """The journal's chain after the snapshot (``plain`` at ``counter``): the last whole state in it (or
        ``plain``), the deltas after that one, in order, and the chain's last counter."""
        self._journal_end = 0
        deltas: list[bytes] = []
        if not self.journal_path.exists():
            return plain, deltas, counter
        blob = self.journal_path.read_bytes()
        pos = 0
        while pos + _REC_HEAD + 12 + 16 <= len(blob) and blob[pos : pos + 4] in (JOURNAL_MAGIC, DELTA_MAGIC):
            head = blob[pos : pos + _REC_HEAD]
            size = int.from_bytes(head[4:8], "big")
            n = int.from_bytes(head[8:16], "big")
            end = pos + _REC_HEAD + 12 + size
            if size < 16 or end > len(blob) or n > counter + 1:
                break  # torn, or a gap in the chain
            if n == counter + 1:
                body = pos + _REC_HEAD
                try:
                    record = self._aead.decrypt(blob[body : body + 12], blob[body + 12 : end], head)
                except Exception:
                    break  # does not authenticate: the chain ends here
                if head[:4] == JOURNAL_MAGIC:
                    plain, deltas = record, []
                else:
                    deltas.append(record)
                counter = n
                self._journal_end = end
            pos = end
        return plain, deltas, counter

    def load_chain(self) -> tuple[bytes, list[bytes]] | None:
        """The last whole sealed state and the deltas sealed after it, in order (the caller applies them), or
        None if nothing was ever sealed here. Refuses a state older than the monotonic counter."""
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
        self._snapshot_size = len(blob)
        plain, deltas, counter = self._replay(plain, counter)
        if counter < hw_counter:
            raise SealedStateError(
                f"rollback detected: sealed state counter {counter} < monotonic counter {hw_counter}"
            )
        self.counter = counter
        return plain, deltas

    def sync_counter(self) -> None:
        """Make the last counter advance durable (it trails the state it counts, never leads it)."""
        if self._counter_dirty:
            fd = os.open(self.dir / COUNTER_FILE, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._counter_dirty = False

    def save(self, plaintext: bytes) -> None:
        """Seal a whole state: a journal record, or a snapshot when the journal is full or none exists."""
        self._save(plaintext, lambda: plaintext, JOURNAL_MAGIC)

    def save_delta(self, delta: bytes, whole) -> None:
        """Seal what changed since the last save (``delta``, applied by the reader to the state before it); a
        snapshot of ``whole()`` instead when the journal is full or no snapshot exists."""
        self._save(delta, whole, DELTA_MAGIC)

    def _save(self, body: bytes, whole, magic: bytes) -> None:
        counter = self.counter + 1
        try:
            self.sync_counter()
            self._write(counter, body, whole, magic)
        except BaseException:
            # The record may be on disk all the same (a write reported failed, or a hostile host keeping its
            # bytes): its counter is never used again, and the next save is a whole snapshot past it, so no
            # two states ever share a counter and no delta is read on top of a state the enclave undid (the
            # caller's next delta, made from the failed state, is not written).
            self.counter = counter
            self._must_snapshot = True
            raise

    def _write(self, counter: int, body: bytes, whole, magic: bytes) -> None:
        nonce = os.urandom(12)
        if (self._must_snapshot or not self.path.exists()
                or self._journal_end + len(body) > max(JOURNAL_MAX, self._snapshot_size)):
            header = SEAL_MAGIC + bytes([SEAL_VERSION]) + counter.to_bytes(8, "big")
            snapshot = header + nonce + self._aead.encrypt(nonce, whole(), header)
            atomic_write(self.path, snapshot)
            self._snapshot_size = len(snapshot)
            if self._journal_end or self.journal_path.exists():
                _append(self.journal_path, b"", at=0)  # its records are all stale now
            self._journal_end = 0
            self._must_snapshot = False
        else:
            head = magic + (len(body) + 16).to_bytes(4, "big") + counter.to_bytes(8, "big")
            rec = head + nonce + self._aead.encrypt(nonce, body, head)
            _append(self.journal_path, rec, at=self._journal_end)
            self._journal_end += len(rec)
        self.counter = counter
        # After the new state is durable: advance the (simulated) monotonic counter.
        cpath = self.dir / COUNTER_FILE
        if cpath.exists() and cpath.stat().st_size + 8 <= COUNTER_MAX:
            _append(cpath, counter.to_bytes(8, "big"), sync=False)
            self._counter_dirty = True
        else:
            atomic_write(cpath, counter.to_bytes(8, "big"))
