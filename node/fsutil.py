"""Writing a file so that a crash leaves either the old content or the new, never a mix: the one atomic write,
of the host and of the enclave's sealed store alike (so this module is part of the enclave's measured code,
``node.enclave.measure.TRUSTED_CODE``: it imports nothing of the project)."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, created with ``mode`` (never
    wider, whatever the umask allows), then renamed over ``path``. ``durable``: fsync the file before the rename
    and the folder after it, so the new content survives a power cut too (keys, seeds); without it only a crash
    of this process is covered (status files written several times a second)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that a file created or renamed in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
