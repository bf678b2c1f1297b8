"""HTTP front of a ``DevLedger``: ``python -m node.ledger.server serve --port P --db FILE``.

One endpoint, ``POST /rpc`` with ``{"method": ..., "params": {...}}``,
answering ``{"result": ...}`` or ``{"error": {"code": ..., "message": ...}}``
(codes from ``node.ledger.base``). Transactions arrive already signed
(``submit`` takes the hex of a signed transaction, ``submit_many`` a list of
them and answers a list of ``{"txid": ...}`` or ``{"error": {...}}`` in
order): no private key crosses this interface. ``faucet`` and ``mine`` are development conveniences. Binds
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from node.assets import address_for
from node.ledger.base import LedgerError
from node.ledger.devnet import DevLedger

MAX_BODY = 16 * 1024 * 1024  # a batch of signed transactions (``submit_many``) on loopback


def _result(r) -> dict:
    if isinstance(r, LedgerError):
        return {"error": {"code": r.code, "message": str(r)}}
    return {"txid": r}


def _methods(led: DevLedger) -> dict:
    return {
        "balance": lambda asset, address: dataclasses.asdict(led.balance(asset, address)),
        "height": lambda asset: led.height(asset),
        "confirmations": lambda asset, txid: led.confirmations(asset, txid),
        "utxos": lambda asset, addresses: [list(u) for u in led.utxos(asset, list(addresses))],
        "nonce": lambda asset, address: led.nonce(asset, address),
        "submit": lambda asset, raw: led.submit(asset, bytes.fromhex(raw)),
        "submit_many": lambda asset, raws: [_result(r)
                                            for r in led.submit_many(asset, [bytes.fromhex(x) for x in raws])],
        "watch": lambda addresses, since=0: (lambda ev, cur: {"events": [dataclasses.asdict(e) for e in ev],
                                                              "cursor": cur})(*led.watch(list(addresses), int(since))),
        "faucet": lambda asset, address, amount: led.faucet(asset, address, int(amount)),
        "mine": lambda asset, blocks=1: led.mine(asset, int(blocks)),
    }


def make_server(led: DevLedger, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    methods = _methods(led)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _reply(self, status: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            if self.path != "/rpc":
                return self._reply(404, {"error": {"code": "not-found", "message": "POST /rpc"}})
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                return self._reply(413, {"error": {"code": "too-large", "message": f"body over {MAX_BODY} bytes"}})
            try:
                req = json.loads(self.rfile.read(n))
                fn = methods[req["method"]]
                params = req.get("params") or {}
                if not isinstance(params, dict):
                    raise TypeError("params must be an object")
                result = fn(**params)
            except LedgerError as exc:
                return self._reply(400, {"error": {"code": exc.code, "message": str(exc)}})
            except KeyError as exc:
                return self._reply(400, {"error": {"code": "bad-request", "message": f"unknown method or field {exc}"}})
            except (TypeError, ValueError) as exc:
                return self._reply(400, {"error": {"code": "bad-request", "message": str(exc)}})
            return self._reply(200, {"result": result})

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(led: DevLedger, host: str = "127.0.0.1", port: int = 0):
    """Start serving in a daemon thread; returns (url, stop)."""
    srv = make_server(led, host, port)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()

    def stop() -> None:
        srv.shutdown()
        srv.server_close()

    return f"http://{host}:{srv.server_address[1]}", stop


def main(argv: list[str] | None = None) -> None:
    import argparse
    import signal
    import sys

    ap = argparse.ArgumentParser(prog="python -m node.ledger.server", description="Keyswitch development ledger")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve a dev ledger over HTTP on 127.0.0.1")
    s.add_argument("--db", type=Path, required=True, help="SQLite file (created if absent)")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--automine", action="store_true", help="mine every transaction at once")
    s.add_argument("--block-interval", type=float, default=None, metavar="SECONDS",
                   help="also mine a block every SECONDS of wall time (checked on every request)")
    a = ap.parse_args(argv)
    from node.clock import SystemClock

    led = DevLedger(a.db, automine=a.automine, clock=SystemClock() if a.block_interval else None,
                    block_interval=a.block_interval)
    from node.assets import ASSETS
    g = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")  # the generator point
    for name in ASSETS:  # the address libraries load before the server listens, not in the first transaction
        address_for(name, g)  # (eth_keys takes ~0.3 s to import: the first account transfer waited for it)
    srv = make_server(led, a.host, a.port)
    print(f"dev ledger listening on http://{a.host}:{srv.server_address[1]} (db {a.db})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        led.close()
        print("stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
