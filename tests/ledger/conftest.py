"""A real anvil on 127.0.0.1 for the EVM ledger tests (skipped when anvil is not installed)."""

import pytest

from node.localnet import find_anvil, start_anvil, stop_all


@pytest.fixture(scope="module")
def anvil_url(tmp_path_factory):
    exe = find_anvil()
    if exe is None:
        pytest.skip("anvil not installed: run scripts/anvil.sh (make test does) — needs npm")
    proc, url = start_anvil(exe, tmp_path_factory.mktemp("anvil") / "anvil.log")
    try:
        yield url
    finally:
        stop_all([proc], timeout=10)


@pytest.fixture(scope="module")
def anvil(anvil_url):
    from node.ledger.evm import EvmLedger

    led = EvmLedger(anvil_url)
    yield led
    led.close()
