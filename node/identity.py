"""The node's libp2p identity: an Ed25519 key persisted in the data directory.

The file ``identity.key`` holds the 32-byte seed, mode 0600, written
atomically. This is the node's *network* identity only; deposit keys and the
enclave's own keys never leave the enclave (``node.tee``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

IDENTITY_FILE = "identity.key"


class IdentityError(Exception):
    pass


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_or_create_seed(datadir: Path) -> bytes:
    """Return the 32-byte identity seed, creating it (0600) if absent."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / IDENTITY_FILE
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise IdentityError(f"{path}: expected a 32-byte identity seed, found {len(seed)} bytes")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return seed
    seed = secrets.token_bytes(32)
    _atomic_write(path, seed)
    return seed


def key_pair(datadir: Path):
    """The py-libp2p ``KeyPair`` for this node (imports libp2p lazily)."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    return create_new_key_pair(load_or_create_seed(datadir))


def peer_id(datadir: Path) -> str:
    """The base58 peer id (``12D3Koo...``) of this node."""
    from libp2p.peer.id import ID

    return ID.from_pubkey(key_pair(datadir).public_key).to_base58()
