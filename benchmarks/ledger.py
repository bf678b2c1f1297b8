"""Dev ledger throughput: signed transactions verified and applied per second.

In-process (in-memory SQLite and a file in WAL mode) and over the local HTTP
server, one ``submit`` per transaction and batched (``submit_many``: every
signature verified, the batch applied in one SQLite transaction), beside raw
coincurve signature verification per second measured in the same run (the
anchor: ``node.crypto.verify_digest``, the very call the ledger makes per
signature; target: batched in-process >= 0.5x raw verify), plus the time from
a deposit to N confirmations at a block interval and a claim's sweep, on the dev ledger and, in the same
run, on a real litecoind -regtest where it is installed (``--no-litecoind`` to skip; blocks are mined every
``--interval`` seconds on both).

Every transaction spends one coin of one key (so the ledger's address cache
for that key is warm; its signature is verified every time).

    python -m benchmarks.ledger [--txs 3000] [--batch 500] [--rounds 3] [--confirmations 3] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import coincurve
import msgspec

from node import wire
from node.assets import address_for
from node.clock import SystemClock
from node.crypto import sha256, sign_digest, verify_digest
from node.ledger.devnet import DevLedger, Outpoint, TxOut, UtxoTx, Witness, sighash

ASSET = "BTC-REG"


def _signatures(n: int, *, zero_digest: bool = False) -> list[tuple[bytes, bytes, bytes]]:
    """n (pubkey, digest, signature) triples: distinct keys and digests, like the ledger's transactions.

    ``zero_digest``: one key signing the all-zero digest, the anchor this benchmark used first. It is not
    a typical verification: with a zero digest u1 = 0, so libsecp256k1 skips the generator half of the
    double multiplication and it runs about 20% faster than verifying a real transaction's signature."""
    if zero_digest:
        k = coincurve.PrivateKey(b"\x07" * 32)
        return [(k.public_key.format(), bytes(32), sign_digest(k, bytes(32)))] * n
    out = []
    for i in range(n):
        k = coincurve.PrivateKey(sha256(b"anchor key %d" % i))
        d = sha256(b"anchor digest %d" % i)
        out.append((k.public_key.format(), d, sign_digest(k, d)))
    return out


_POOL: dict[bool, list] = {}


def raw_verify_time(n: int, *, zero_digest: bool = False) -> float:
    """Seconds for n raw verifications (``node.crypto.verify_digest``, the call the ledger makes) of
    distinct signatures (a pool of 1000, cycled)."""
    pool = _POOL.get(zero_digest) or _POOL.setdefault(zero_digest, _signatures(1000, zero_digest=zero_digest))
    items = [pool[i % len(pool)] for i in range(n)]
    t = time.perf_counter()
    for pub, d, sig in items:
        verify_digest(pub, d, sig)
    return time.perf_counter() - t


def raw_verify_rate(n: int, *, zero_digest: bool = False) -> float:
    return n / raw_verify_time(n, zero_digest=zero_digest)


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


def paired(step, txs: list[bytes], chunk: int) -> list[tuple[float, float, float]]:
    """Ledger tx/s and raw verify/s measured interleaved, chunk by chunk (after each ``chunk`` transactions,
    as many raw verifications), so both see the same machine load; one (ledger, raw, raw over a zero
    digest) triple per chunk.
    ``step(list_of_raw)`` applies a chunk."""
    pairs = []
    for k in range(0, len(txs), chunk):
        part = txs[k:k + chunk]
        t = time.perf_counter()
        step(part)
        t_led = time.perf_counter() - t
        pairs.append((len(part) / t_led, len(part) / raw_verify_time(len(part)),
                      len(part) / raw_verify_time(len(part), zero_digest=True)))
    return pairs


def one_by_one(submit):
    def step(part):
        for raw in part:
            submit(ASSET, raw)
    return step


def batched(submit_many):
    def step(part):
        bad = [r for r in submit_many(ASSET, part) if not isinstance(r, str)]
        if bad:
            raise SystemExit(f"benchmark transaction refused: {bad[0]!r}")
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=3000)
    ap.add_argument("--confirmations", type=int, default=3)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--no-litecoind", dest="litecoind", action="store_false",
                    help="skip the litecoind figures (default: run them when litecoind is installed)")
    ap.add_argument("--batch", type=int, default=500, help="transactions per submit_many call")
    ap.add_argument("--rounds", type=int, default=3, help="in-process rounds (best of; machines are noisy)")
    a = ap.parse_args()
    small = max(200, a.txs // 5)
    rows: dict[str, list[tuple[float, float, float]]] = {}  # name -> (ledger tx/s, raw verify/s, zero-digest) per chunk

    def run(name: str, led, step, n: int, chunk: int) -> None:
        rows.setdefault(name, []).extend(paired(step, prepared(led, n), chunk))

    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            led = DevLedger(None)
            run("in-process, in-memory SQLite, batched", led, batched(led.submit_many), a.txs, a.batch)
            led = DevLedger(Path(tmp) / f"batched{r}.sqlite")
            run("in-process, SQLite file (WAL, sync=FULL), batched", led, batched(led.submit_many), a.txs, a.batch)
            led = DevLedger(None)
            run("in-process, in-memory SQLite, one submit per tx", led, one_by_one(led.submit), a.txs, a.batch)
            led = DevLedger(Path(tmp) / f"single{r}.sqlite")
            run("in-process, SQLite file (WAL, sync=FULL), one submit per tx", led, one_by_one(led.submit), small,
                a.batch)
        from node.ledger.client import DevLedgerClient
        from node.ledger.server import serve_in_thread

        srv = DevLedger(Path(tmp) / "served.sqlite")
        url, stop = serve_in_thread(srv)
        try:
            c = DevLedgerClient(url)
            run("over the local HTTP server (file), batched", srv, batched(c.submit_many), a.txs, a.batch)
            run("over the local HTTP server (file), one submit per tx", srv, one_by_one(c.submit), small, a.batch)
            c.close()
        finally:
            stop()
    anchors = sorted(x for rs in rows.values() for _, x, _ in rs)
    zeros = sorted(z for rs in rows.values() for _, _, z in rs)
    print(f"raw coincurve verify (anchor: node.crypto.verify_digest, the ledger's own call, over 1000 distinct "
          f"keys and digests), measured after every chunk: median {anchors[len(anchors) // 2]:,.0f}/s, "
          f"range {anchors[0]:,.0f} .. {anchors[-1]:,.0f}/s")
    print(f"(the first anchor, one key over the all-zero digest, which skips half the work of a real verify: "
          f"median {zeros[len(zeros) // 2]:,.0f}/s; ratios against it in the last column)")
    print(f"{a.txs} transactions per run ({small} for one-submit-per-tx on a file and over HTTP) in chunks "
          f"(= batches) of {a.batch}, each followed by as many raw verifications; {a.rounds} in-process rounds, "
          f"HTTP one")
    print(f"\n{'dev ledger: signed transactions verified and applied':60} {'tx/s':>9} {'us/tx':>7} "
          f"{'raw verify/s':>13} {'ratio':>6}  {'ratio range':>12}  {'vs zero-digest':>14}")
    medians = {}
    for name, rs in rows.items():
        zr = sorted(x / z for x, _, z in rs)
        rs = sorted(rs, key=lambda p: p[0] / p[1])
        led_rate, raw_rate, _ = medians[name] = rs[len(rs) // 2]
        print(f"{name:60} {led_rate:9,.0f} {1e6 / led_rate:7.0f} {raw_rate:13,.0f} {led_rate / raw_rate:5.2f}x  "
              f"{rs[0][0] / rs[0][1]:5.2f}..{rs[-1][0] / rs[-1][1]:.2f}  {zr[len(zr) // 2]:13.2f}x")
    print(f"(each row: the chunk with the median ratio, of {a.rounds * -(-a.txs // a.batch)} in process)\n")
    for name in list(rows)[:2]:
        ratio = medians[name][0] / medians[name][1]
        print(f"target {name} >= 0.5x raw verify: {ratio:.2f}x (median chunk), "
              f"{'met' if ratio >= 0.5 else 'NOT met'}")
    chain_figures(a.confirmations, a.interval, litecoind=a.litecoind)


def deposit_and_sweep(led, asset: str, confirmations: int, amount: int) -> tuple[float, float, float]:
    """(seconds from a deposit to ``confirmations``, seconds to build/sign/broadcast a claim's sweep of it,
    seconds until that sweep has 1 confirmation)."""
    k, home = coincurve.PrivateKey(), coincurve.PrivateKey()
    t0 = time.perf_counter()
    txid = led.faucet(asset, address_for(asset, k.public_key.format()), amount)
    while led.confirmations(asset, txid) < confirmations:
        time.sleep(0.01)
    t1 = time.perf_counter()
    sweep = led.sweep(asset, k.secret, address_for(asset, home.public_key.format()))
    t2 = time.perf_counter()
    while led.confirmations(asset, sweep) < 1:
        time.sleep(0.01)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def chain_figures(confirmations: int, interval: float, *, litecoind: bool = True) -> None:
    rows = []
    led = DevLedger(None, clock=SystemClock(), block_interval=interval)
    rows.append(("dev ledger (SQLite, BTC-REG)", deposit_and_sweep(led, ASSET, confirmations, 10**7)))
    from node.dev.localnet import find_litecoind

    exe = find_litecoind() if litecoind else None
    if exe is None:
        print("litecoind: " + ("not installed (apt-get install litecoind)" if litecoind else "skipped"))
    else:
        from node.ledger.bitcoind import BitcoindLedger
        from node.dev.localnet import start_litecoind_network, stop_all

        tmp = Path(tempfile.mkdtemp(prefix="bench-ltc-"))
        # the demo's and keyswitch dev's litecoind: a mature faucet, then a block every `interval` seconds
        procs, url, cookie = start_litecoind_network(exe, tmp, block_time=interval)
        try:
            ltc = BitcoindLedger(url, asset="LTC-REG", cookie=cookie)
            rows.append(("litecoind -regtest (LTC-REG, real P2WPKH txs)",
                         deposit_and_sweep(ltc, "LTC-REG", confirmations, 10**7)))
            ltc.close()
        finally:
            stop_all(procs, timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'deposit to ' + str(confirmations) + ' confirmations, then its sweep':48} {'deposit s':>9} "
          f"{'sweep s':>8} {'sweep 1 conf s':>14}   (a block every {interval:g} s)")
    for name, (dep, sw, conf) in rows:
        print(f"{name:48} {dep:9.2f} {sw:8.3f} {conf:14.2f}")


if __name__ == "__main__":
    main()
