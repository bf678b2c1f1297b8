"""A real anvil on 127.0.0.1 for the EVM ledger tests (skipped when anvil is not installed)."""

import pytest

from node.dev.localnet import find_anvil, start_anvil, stop_all


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


@pytest.fixture(scope="module")
def litecoind(tmp_path_factory):
    """A real litecoind -regtest on 127.0.0.1 (free ports, a temp datadir, txindex), stopped even on failure.
    Yields (RPC URL, cookie path). Skipped with the reason when litecoind is not installed."""
    from node.dev.localnet import find_litecoind, start_litecoind

    exe = find_litecoind()
    if exe is None:
        pytest.skip("litecoind not installed: apt-get install litecoind (scripts/sysdeps.sh litecoind; make test does)")
    proc, url, cookie = start_litecoind(exe, tmp_path_factory.mktemp("litecoind"))
    try:
        yield url, cookie
    finally:
        stop_all([proc], timeout=30)


@pytest.fixture(scope="module")
def ltc(litecoind):
    from node.ledger.bitcoind import BitcoindLedger

    url, cookie = litecoind
    led = BitcoindLedger(url, asset="LTC-REG", cookie=cookie)
    led.mine("LTC-REG", 101)  # a mature coinbase for the faucet wallet
    yield led
    led.close()
