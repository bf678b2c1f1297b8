"""Dev ledger throughput: signed transactions verified and applied per second.

In-process (in-memory SQLite and a file in WAL mode) and over the local HTTP
server, beside raw coincurve signature verification per second measured in
the same run (the anchor; target: in-process >= 0.5x raw verify), plus the
time from a deposit to N confirmations at a block interval.

    python -m benchmarks.ledger [--txs 3000] [--confirmations 3] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import coincurve
import msgspec

from node import wire
from node.assets import address_for
from node.clock import SystemClock
from node.crypto import sign_digest, verify_digest
from node.ledger.devnet import DevLedger, Outpoint, TxOut, UtxoTx, Witness, sighash

ASSET = "BTC-REG"


def raw_verify_rate(n: int) -> float:
    k = coincurve.PrivateKey()
    d = bytes(32)
    sig, pub = sign_digest(k, d), k.public_key.format()
    t = time.perf_counter()
    for _ in range(n):
        verify_digest(pub, d, sig)
    return n / (time.perf_counter() - t)


def prepared(led, n: int) -> list[bytes]:
    """n coins at one key, and n signed transactions each spending one of them."""
    k = coincurve.PrivateKey(b"\x05" * 32)
    pub = k.public_key.format()
    addr = address_for(ASSET, pub)
    out = []
    for _ in range(n):
        txid = led.faucet(ASSET, addr, 10_000)
        tx = UtxoTx(1, ASSET, [Outpoint(txid, 0)], [TxOut(addr, 9_000)])
        out.append(wire.encode(msgspec.structs.replace(tx, witnesses=[Witness(pub, sign_digest(k, sighash(tx)))])))
    return out


def apply_rate(submit, txs: list[bytes]) -> float:
    t = time.perf_counter()
    for raw in txs:
        submit(ASSET, raw)
    return len(txs) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=3000)
    ap.add_argument("--confirmations", type=int, default=3)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    raw = raw_verify_rate(20_000)
    rows = []
    mem = DevLedger(None)
    rows.append(("in-process, in-memory SQLite", apply_rate(mem.submit, prepared(mem, a.txs))))
    with tempfile.TemporaryDirectory() as tmp:
        f = DevLedger(Path(tmp) / "bench.sqlite")
        rows.append(("in-process, SQLite file (WAL, synchronous=FULL)", apply_rate(f.submit, prepared(f, a.txs))))
        from node.ledger.client import DevLedgerClient
        from node.ledger.server import serve_in_thread

        srv = DevLedger(Path(tmp) / "served.sqlite")
        url, stop = serve_in_thread(srv)
        try:
            c = DevLedgerClient(url)
            rows.append(("over the local HTTP server", apply_rate(c.submit, prepared(srv, max(200, a.txs // 5)))))
            c.close()
        finally:
            stop()
    print(f"raw coincurve verify (anchor): {raw:,.0f}/s")
    print(f"\n{'dev ledger: signed transactions verified and applied':52} {'tx/s':>9} {'vs raw verify':>14}")
    for name, r in rows:
        print(f"{name:52} {r:9,.0f} {r / raw:13.2f}x")
    target = rows[0][1] / raw >= 0.5
    print(f"\ntarget in-process >= 0.5x raw verify: {'met' if target else 'NOT met'}")
    clock = SystemClock()
    led = DevLedger(None, clock=clock, block_interval=a.interval)
    t0 = time.perf_counter()
    txid = led.faucet(ASSET, address_for(ASSET, coincurve.PrivateKey().public_key.format()), 5000)
    while led.confirmations(ASSET, txid) < a.confirmations:
        time.sleep(0.01)
    print(f"deposit to {a.confirmations} confirmations at a {a.interval:g} s block interval: "
          f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
