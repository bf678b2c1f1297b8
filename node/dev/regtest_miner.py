"""``python -m node.dev.regtest_miner --url URL --cookie FILE``: a block every ``--interval`` seconds on a
regtest Bitcoin Core node (litecoind in ``make demo`` and ``keyswitch dev``), as anvil's ``--block-time`` does
for ETH-DEV and the dev ledger server's ``--block-interval`` for the other assets.

Blocks go to the node's faucet wallet (``BitcoindLedger.mine``), whose coins fund deposits. It prints
``mining LTC-REG every S s on URL`` once, then mines until SIGTERM or SIGINT; a block the node does not answer
in time is skipped with a line (the node itself exiting is what its parent watches); it exits 1 with one line
when the node is not a regtest node (``mine`` refuses the others) or is gone at the first block.
"""

from __future__ import annotations

import signal
import sys
import threading
import time


def run(url: str, cookie: str, asset: str, interval: float, stop: threading.Event) -> None:
    """Mine one block every ``interval`` seconds (on a fixed schedule, not drifting with the RPC time) until
    ``stop`` is set."""
    from node.ledger.bitcoind import BitcoindLedger

    from node.ledger.base import LedgerUnreachable

    led = BitcoindLedger(url, asset=asset, cookie=cookie, timeout=30.0)
    try:
        led.mine(asset, 1)  # refuses a node not on regtest before the line below says anything
        print(f"mining {asset} every {interval:g} s on {url}", flush=True)
        due = time.monotonic() + interval
        while not stop.wait(max(due - time.monotonic(), 0)):
            try:
                led.mine(asset, 1)
            except LedgerUnreachable as exc:  # a node too busy to answer in time: the next block is due anyway
                print(f"no block this time: {exc}", flush=True)
            due = max(due + interval, time.monotonic())  # a slow block (a loaded machine) does not bunch up
    finally:
        led.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    from node.ledger.base import LedgerError

    ap = argparse.ArgumentParser(prog="python -m node.dev.regtest_miner",
                                 description="a block every --interval seconds on a regtest bitcoind/litecoind")
    ap.add_argument("--url", required=True, help="the node's JSON-RPC URL")
    ap.add_argument("--cookie", required=True, help="the node's .cookie file")
    ap.add_argument("--asset", default="LTC-REG")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between blocks")
    args = ap.parse_args(argv)
    if not args.interval > 0:
        ap.error("--interval must be > 0")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run(args.url, args.cookie, args.asset, args.interval, stop)
    except LedgerError as exc:
        if stop.is_set():  # the node went down with the rest of the network: a normal stop
            return
        print(f"regtest miner stopped: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
