"""A real wallet accepts what we release: Debian's Electrum restores our exported WIF keys
(offline) and derives the same addresses as node.assets."""

import json
import shutil
import subprocess

import coincurve
import pytest

from node.assets import address_for, export_key

ELECTRUM = shutil.which("electrum")
pytestmark = pytest.mark.skipif(ELECTRUM is None, reason="electrum not installed (scripts/sysdeps.sh installs "
                                "Debian's package; it could not here)")


@pytest.mark.parametrize("asset, flag, kind", [
    ("BTC", [], "p2wpkh"), ("BTC", [], "p2pkh"), ("BTC-TEST", ["--testnet"], "p2wpkh"),
    ("BTC-REG", ["--regtest"], "p2wpkh"),
])
def test_electrum_restores_our_wif_to_our_address(tmp_path, asset, flag, kind):
    key = coincurve.PrivateKey(bytes(range(1, 33)))
    wif = export_key(asset, key.secret)
    base = [ELECTRUM, "--offline", *flag, "-D", str(tmp_path)]
    r = subprocess.run(base + ["restore", f"{kind}:{wif}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = subprocess.run(base + ["listaddresses"], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout) == [address_for(asset, key.public_key.format(), kind=kind)]
