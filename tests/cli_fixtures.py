"""Shared fixtures for tests that drive the ``keyswitch`` CLI in-process (typer's CliRunner)."""

from __future__ import annotations

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
