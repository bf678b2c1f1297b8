"""``RoutedLedger``: ETH-DEV on a real anvil, everything else on a real DevLedger; the daemon's open_ledger."""

import time

import coincurve
import pytest

from node import config
from node.assets import address_for
from node.app.deposits import DepositStore, open_ledger
from node.ledger.base import LedgerError, LedgerUnreachable, UnknownAsset
from node.ledger.devnet import DevLedger
from node.ledger.router import RoutedLedger, with_evm
from node.dev.localnet import free_port


def key(i):
    return coincurve.PrivateKey(i.to_bytes(32, "big"))


def addr(asset, i):
    return address_for(asset, key(i).public_key.format())


def settle(led, asset, tx):
    for _ in range(50):
        if led.confirmations(asset, tx):
            return
        time.sleep(0.1)
    raise AssertionError(f"{tx} not mined")


@pytest.fixture
def routed(anvil_url):
    led = with_evm(DevLedger(automine=True), anvil_url, "ETH-DEV")
    yield led
    led.close()


def test_each_asset_goes_to_its_ledger_and_a_claim_sweeps_on_anvil(routed):
    assert isinstance(routed, RoutedLedger) and set(routed.describe()) == {"ETH-DEV"}
    dev, evm = routed.default, routed.routes["ETH-DEV"]
    btc, eth = addr("BTC-REG", 81), addr("ETH-DEV", 82)
    settle(routed, "BTC-REG", routed.faucet("BTC-REG", btc, 50_000))
    fund = routed.faucet("ETH-DEV", eth, 10**17)
    settle(routed, "ETH-DEV", fund)
    # each asset's funds are on its own ledger and nowhere else
    assert dev.balance("BTC-REG", btc).confirmed == 50_000
    assert evm.balance("ETH-DEV", eth).confirmed == 10**17 and dev.balance("ETH-DEV", eth).confirmed == 0
    assert routed.height("ETH-DEV") == evm.height("ETH-DEV") and routed.height("BTC-REG") == dev.height("BTC-REG")
    # a sweep of the ETH-DEV key pays gas on anvil: the owner gets the chunk minus the fee
    home = addr("ETH-DEV", 83)
    tx = routed.sweep("ETH-DEV", key(82).secret, home)
    settle(routed, "ETH-DEV", tx)
    got = routed.balance("ETH-DEV", home).confirmed
    assert 10**17 - 10**15 < got < 10**17 and routed.balance("ETH-DEV", eth).confirmed == 0
    tx2 = routed.sweep("BTC-REG", key(81).secret, addr("BTC-REG", 84))
    assert routed.confirmations("BTC-REG", tx2) >= 1
    # watch merges both ledgers' events for a mixed list of addresses
    events, cursor = routed.watch([btc, eth])
    assert {(e.asset, e.kind, e.txid) for e in events} >= {("ETH-DEV", "deposit", fund), ("ETH-DEV", "spend", tx),
                                                          ("BTC-REG", "spend", tx2)}
    with pytest.raises(LedgerError, match="watch from 0"):
        routed.watch([btc, eth], cursor + 1)
    # only-BTC addresses: the dev ledger's own cursor passes through
    assert routed.watch([btc], 0)[1] == dev.watch([btc], 0)[1]
    with pytest.raises(UnknownAsset):
        routed.routes["ETH-DEV"].height("BTC-REG")


def test_sweep_claimer_finds_its_earlier_sweep_through_the_router(routed):
    """A claim interrupted after its sweep (a crash) answers the same txid the second time: the router's
    watch reaches anvil for an ETH-DEV deposit."""
    from node.contracts.protocol.claims import sweep_claimer

    class Enc:
        def export_to_owner(self, pub):
            return key(85).secret

    class Chunk:
        asset, pubkey, address = "ETH-DEV", key(85).public_key.format(), addr("ETH-DEV", 85)

    settle(routed, "ETH-DEV", routed.faucet("ETH-DEV", Chunk.address, 10**17))
    claim = sweep_claimer(lambda: Enc(), routed, lambda c: addr("ETH-DEV", 86))
    first = claim(Chunk)
    settle(routed, "ETH-DEV", first)
    assert claim(Chunk) == first


def test_unreachable_or_wrong_evm_node_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(LedgerUnreachable, match="ledger.evm_url: EVM node at .* unreachable"):
        with_evm(DevLedger(), url, "ETH-DEV")
    with pytest.raises(LedgerError, match="not a utxo one|Ethereum-like"):
        with_evm(DevLedger(), url, "BTC-REG")
    assert isinstance(with_evm(dev := DevLedger(), "", "ETH-DEV"), DevLedger)
    dev.close()
    with pytest.raises(config.ConfigError, match="ledger.evm_asset"):
        config.load(tmp_path, env={"KEYSWITCH_LEDGER_EVM_ASSET": "BTC-REG"})
    cfg = config.load(tmp_path, env={"KEYSWITCH_LEDGER_EVM_URL": url})
    with pytest.raises(LedgerUnreachable, match="start the EVM node"):
        open_ledger(cfg)


def test_open_ledger_routes_deposits_to_anvil(tmp_path, anvil_url):
    """The daemon's ledger (``open_ledger``) with ``ledger.evm_url``: deposits of ETH-DEV are funded on anvil
    and BTC-REG ones on the embedded dev ledger, through ``make_deposits`` and a real enclave."""
    from node.app.deposits import make_deposits, offers_from
    from node.tee.client import InProcessEnclave

    cfg = config.load(tmp_path, env={"KEYSWITCH_LEDGER_EVM_URL": anvil_url})
    led = open_ledger(cfg)
    store = DepositStore(None)
    enc = InProcessEnclave(None)
    try:
        now = time.time()
        eth = make_deposits(enc, led, store, asset="ETH-DEV", chunks=2, chunk_usd_cents=5000, now=now)
        btc = make_deposits(enc, led, store, asset="BTC-REG", chunks=1, chunk_usd_cents=5000, now=now)
        for d in eth:
            settle(led, "ETH-DEV", d.txid)
            assert led.routes["ETH-DEV"].balance("ETH-DEV", d.address).confirmed == d.amount
        assert led.default.balance("BTC-REG", btc[0].address).confirmed == btc[0].amount
        assert len(offers_from(store.all(), led, enc, now=now)) == 3
    finally:
        enc.close()
        led.close()


def test_daemon_refuses_to_start_without_its_evm_node(tmp_path):
    """``keyswitch run`` with ``ledger.evm_url`` pointing at nothing: exit 3 with the reason, before the network."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    url = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, KEYSWITCH_LEDGER_EVM_URL=url, PYTHONPATH=str(root))
    from node.dev.localnet import init_datadir

    init_datadir(tmp_path / "n")  # `keyswitch init`: run refuses a data directory never initialised
    out = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "n"), "run", "--net", "t"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"error: ledger.evm_url: EVM node at {url} unreachable" in out.stderr
    assert "ready" not in out.stdout
