import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from node.ledger.bitcoind import BitcoindLedger
from node.dev.localnet import find_anvil, find_litecoind
from tests.functional.framework import FACTOR

ROOT = Path(__file__).resolve().parents[2]


def test_keyswitch_dev_starts_a_connected_local_network_and_stops(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "node", "dev", "--nodes", "3", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    out = []
    try:
        deadline = time.monotonic() + 120 * FACTOR  # (KS_TIMEOUT_FACTOR, as every other wait)
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            out.append(line)
            if "network up" in line or not line:
                break
        assert any("network up" in l for l in out), "".join(out)
        peers = []
        for _ in range(100):
            r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node0"), "peers", "--json"],
                               capture_output=True, text=True, cwd=ROOT, timeout=30)
            peers = json.loads(r.stdout)["peers"] if r.returncode == 0 else []
            if len(peers) >= 2:
                break
            time.sleep(0.3)
        assert len(peers) >= 2, peers  # node0 found the other nodes through the bootstrap node
        assert any("dev ledger http://127.0.0.1:" in l for l in out), "".join(out)
        # a deposit on the shared dev ledger confirms with the next blocks and reaches node1's book
        r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node0"), "deposit",
                            "--asset", "BTC-REG", "--chunks", "2", "--json"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        # each node's config.toml names the dev ledger and the bootstrap node, so commands run by hand read the
        # ledger the daemons use (issue #21: `deposit --wait` watched an unused embedded ledger and hung)
        (lurl,) = [l.split()[2] for l in out if l.startswith("dev ledger http://127.0.0.1:")]
        shown = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node0"), "config", "show",
                                "--json"], capture_output=True, text=True, cwd=ROOT, timeout=30)
        values = json.loads(shown.stdout)["values"]
        assert values["ledger.url"] == lurl, values
        assert [b.split("/")[1:3] for b in values["network.bootnodes"]] == [["ip4", "127.0.0.1"]], values
        r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node0"), "deposit",
                            "--asset", "BTC-REG", "--chunks", "1", "--wait", "1", "--timeout", "60", "--json"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)[0]["confirmations"] >= 1
        offers = []
        for _ in range(150):
            r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node1"), "offers", "--json"],
                               capture_output=True, text=True, cwd=ROOT, timeout=30)
            offers = json.loads(r.stdout)["offers"] if r.returncode == 0 else []
            if len(offers) == 3:
                break
            time.sleep(0.3)
        assert len(offers) == 3, offers
        if find_anvil():  # make test installs anvil: ETH-DEV deposits land on the real EVM node
            (url,) = [l.split()[1] for l in out if l.startswith("anvil http://127.0.0.1:")]
            r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node2"), "deposit",
                                "--asset", "ETH-DEV", "--chunks", "1", "--json"],
                               capture_output=True, text=True, cwd=ROOT, timeout=120)
            assert r.returncode == 0, r.stderr
            (dep,) = json.loads(r.stdout)
            got = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                                        "params": [dep["address"], "latest"]}, timeout=10).json()["result"]
            assert int(got, 16) == int(dep["amount"]) > 0, (got, dep)
        if find_litecoind():  # make test installs litecoind: LTC-REG deposits are litecoind's transactions
            (url,) = [l.split()[1] for l in out if l.startswith("litecoind http://127.0.0.1:")]
            r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(tmp_path / "node2"), "deposit",
                                "--asset", "LTC-REG", "--chunks", "1", "--wait", "2", "--timeout", "60", "--json"],
                               capture_output=True, text=True, cwd=ROOT, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
            (dep,) = json.loads(r.stdout)
            assert dep["confirmations"] >= 2  # the miner's blocks, one a second
            led = BitcoindLedger(url, asset="LTC-REG", cookie=tmp_path / "litecoind" / "regtest" / ".cookie")
            try:
                tx = led.rpc("getrawtransaction", dep["txid"], True)
                paid = [o for o in tx["vout"] if o["scriptPubKey"]["hex"] == led.script_of(dep["address"]).hex()]
                assert [round(o["value"] * 10**8) for o in paid] == [int(dep["amount"])] and tx["confirmations"] >= 2
            finally:
                led.close()
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, "".join(out) + rest
    assert "stopped" in rest
    assert not (tmp_path / "node0" / ".cookie").exists()  # every daemon shut down gracefully
    if find_litecoind():  # and litecoind with them: it removes its cookie and pid file on a clean shutdown
        assert not any((tmp_path / "litecoind" / "regtest" / f).exists() for f in (".cookie", "bitcoind.pid"))
        assert "mining LTC-REG every 1 s" in (tmp_path / "litecoind" / "miner.log").read_text()
