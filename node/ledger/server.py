"""HTTP front of a ``DevLedger``: ``python -m node.ledger.devnet serve --port P --db FILE``.

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
