"""Shared fixtures for tests that drive the ``keyswitch`` CLI in-process (typer's CliRunner), and the check of
an operator's error for those that run it as a subprocess."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from node.cli import _load, app, state


@pytest.fixture(scope="module")
def cli():
    _load()  # registers the command modules once per process
    return CliRunner()


@pytest.fixture
def datadir(tmp_path):
    old = state.get_datadir()
    yield tmp_path / "node"
    state.set_datadir(old)


def run(cli, datadir, *args):
    return cli.invoke(app, ["--datadir", str(datadir), *args])


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """stderr is exactly one line starting with "error: " (no traceback)."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert "Traceback" not in r.stderr and "ExceptionGroup" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


def ctrl_c_default() -> None:
    """``preexec_fn`` of a child a test interrupts with SIGINT (Ctrl-C): SIGINT at its default, whatever the test
    run inherited (a suite started in the background by a non-interactive shell ignores SIGINT, and Python keeps an
    ignored SIGINT ignored: the child never saw the test's Ctrl-C)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
