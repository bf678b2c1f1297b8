"""node.fsutil.atomic_write: the file ends with the old or the new content, with the mode asked."""

from __future__ import annotations

import os
import stat

import pytest

from node.fsutil import atomic_write


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_write_replaces_whole_and_keeps_the_mode(tmp_path, durable):
    p = tmp_path / "f"
    atomic_write(p, b"old", durable=durable)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    atomic_write(p, b"new" * 100_000, mode=0o644, durable=durable)
    assert p.read_bytes() == b"new" * 100_000
    assert not (tmp_path / "f.tmp").exists()


def test_a_failed_write_leaves_the_old_content(tmp_path, monkeypatch):
    p = tmp_path / "f"
    atomic_write(p, b"old")

    def boom(fd, data):
        raise OSError("disk full")

    monkeypatch.setattr(os, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, b"new")
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
