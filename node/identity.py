"""The node's libp2p identity, and the owner's claim seed: two separate secrets in the data directory.

* ``identity.key`` holds the 32-byte Ed25519 seed of the node's *network*
  identity (its peer id), mode 0600, written atomically. The libp2p stack
  uses it online, all the time.
* ``claim.seed`` holds the 32-byte seed the owner's claim (sweep
  destination) keys derive from (``node.contracts.desk.swaps.claim_key``), mode 0600,
  created once. It is not derived from the identity key and the identity key
  is not derived from it: a leaked network key reveals no claim key.

Deposit keys and the enclave's own keys never leave the enclave (``node.enclave``).

Migration: a data directory from before the claim seed has no
``claim.seed``; the node creates it (random) on its first start. Addresses
claimed before then were derived from ``identity.key``
(``node.contracts.desk.swaps.claim_key(identity seed, deposit pub)``), which stays where it
is, so those keys can still be re-derived.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from node.fsutil import atomic_write

IDENTITY_FILE = "identity.key"
CLAIM_SEED_FILE = "claim.seed"
SEED_LEN = 32


class IdentityError(Exception):
    pass


def load_or_create_seed(datadir: Path) -> bytes:
    """Return the 32-byte identity seed, creating it (0600) if absent."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / IDENTITY_FILE
    if path.exists():
        return _read_seed(path, "identity seed")
    seed = secrets.token_bytes(SEED_LEN)
    atomic_write(path, seed)
    return seed


def _read_seed(path: Path, what: str) -> bytes:
    seed = path.read_bytes()
    if len(seed) != SEED_LEN:
        raise IdentityError(f"{path}: expected a {SEED_LEN}-byte {what}, found {len(seed)} bytes")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return seed


def _create_once(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (0600, fsynced) only if ``path`` does not exist: the bytes go to a private
    temporary file first, which is then hard-linked into place (atomic, and never replaces an existing file:
    two processes starting at once agree on one seed). False if ``path`` already existed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return True


def load_or_create_claim_seed(datadir: Path) -> bytes:
    """The owner's 32-byte claim seed (``claim.seed``), created once (random, 0600) if absent.

    Never the identity seed: a ``claim.seed`` equal to ``identity.key`` (copied by hand) is refused."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / CLAIM_SEED_FILE
    if not path.exists():
        _create_once(path, secrets.token_bytes(SEED_LEN))
    seed = _read_seed(path, "claim seed")
    ident = datadir / IDENTITY_FILE
    if ident.exists() and secrets.compare_digest(ident.read_bytes(), seed):
        raise IdentityError(f"{path}: the claim seed is the network identity seed ({ident}); claim keys must "
                            f"not derive from the libp2p key: move {path} away and restart to create a new one")
    return seed


def key_pair(datadir: Path):
    """The py-libp2p ``KeyPair`` for this node (imports libp2p lazily)."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    return create_new_key_pair(load_or_create_seed(datadir))


def peer_id(datadir: Path) -> str:
    """The base58 peer id (``12D3Koo...``) of this node."""
    from libp2p.peer.id import ID

    return ID.from_pubkey(key_pair(datadir).public_key).to_base58()
