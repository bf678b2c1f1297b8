"""Attacks by the Bitcoin Core JSON-RPC node itself (``node.ledger.bitcoind``): the node is hostile or broken.

A fake node (a real HTTP JSON-RPC server on 127.0.0.1) answers what an attacker controlling it would: an
enormous fee estimate, coin amounts that are no amounts, coins of scripts that were not asked, another
chain's genesis. Each time the wallet side refuses before anything is signed or broadcast, and a private key
never appears in what the node receives.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import coincurve
import pytest
from embit import ec

from node.assets import address_for, export_key
from node.ledger.base import LedgerError
from node.ledger.bitcoind import BitcoindLedger
from node.ledger.router import with_bitcoind

A = "LTC-REG"
SECRET = (0xC0FFEE).to_bytes(32, "big")
PUB = coincurve.PrivateKey(SECRET).public_key.format()
ADDR = address_for(A, PUB)
DEST = address_for(A, coincurve.PrivateKey((0xBEEF).to_bytes(32, "big")).public_key.format())
FUND_TXID = "ab" * 32
GENESIS = "530827f38f93b43ed12af0b3ad25a288dc02ed74d6d7857862df51fc56c416f9"


class FakeNode:
    """A JSON-RPC server answering from ``self.answers`` (method -> result or callable(params)); it keeps every
    request body it received."""

    def __init__(self, answers: dict) -> None:
        self.answers, self.bodies = dict(answers), []
        node = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                node.bodies.append(body)
                req = json.loads(body)
                out = [node.answer(r) for r in req] if isinstance(req, list) else node.answer(req)
                if isinstance(req, list) and "__batch__" in node.answers:
                    out = node.answers["__batch__"](out)
                data = json.dumps(out).encode().replace(b'"__RAW__', b"").replace(b'__RAW__"', b"")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, req: dict) -> dict:
        ans = self.answers.get(req["method"])
        if ans is None:
            return {"result": None, "error": {"code": -32601, "message": "Method not found"}, "id": req["id"]}
        res = ans(req["params"]) if callable(ans) else ans
        if isinstance(res, dict) and "error" in res:
            return {"result": None, "error": res["error"], "id": req["id"]}
        return {"result": res, "error": None, "id": req["id"]}

    def methods(self) -> list[str]:
        out = []
        for b in self.bodies:
            req = json.loads(b)
            out += [r["method"] for r in req] if isinstance(req, list) else [req["method"]]
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def raw(number: str) -> str:
    """A JSON number written verbatim (as a node would: 0.00000001 is not a float's repr)."""
    return f"__RAW__{number}__RAW__"


def honest(amount: str = "1.00000000", **over) -> dict:
    from embit import script

    spk = script.p2wpkh(ec.PublicKey.parse(PUB)).data.hex()
    answers = {
        "getbestblockhash": "11" * 32,
        "getblockcount": 150,
        "getrawmempool": [],
        "scantxoutset": {"success": True, "unspents": [
            {"txid": FUND_TXID, "vout": 0, "scriptPubKey": spk, "desc": f"addr({ADDR})", "amount": raw(amount),
             "height": 140}], "total_amount": raw(amount)},
        "estimatesmartfee": {"feerate": raw("0.00010000"), "blocks": 2},
        "getnetworkinfo": {"relayfee": raw("0.00001000")},
        "sendrawtransaction": "cd" * 32,
        "getblockchaininfo": {"chain": "regtest"},
        "getblockhash": GENESIS,
        "getindexinfo": {"txindex": {"synced": True, "best_block_height": 150}},
    }
    answers.update(over)
    return answers


@pytest.fixture
def fake():
    nodes = []

    def make(answers):
        n = FakeNode(answers)
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.close()


def test_the_honest_fake_node_gets_a_sweep_and_never_the_key(fake):
    """Control: against honest answers the sweep is broadcast, and no request carries the key (hex or WIF)."""
    node = fake(honest())
    led = BitcoindLedger(node.url, asset=A)
    assert led.sweep(A, SECRET, DEST) == "cd" * 32
    assert "sendrawtransaction" in node.methods()
    sent = b"".join(node.bodies)
    for form in (SECRET.hex(), export_key(A, SECRET), SECRET.hex().upper()):
        assert form.encode() not in sent


def test_a_node_answering_a_huge_fee_rate_cannot_burn_the_deposit(fake):
    """estimatesmartfee says 1 LTC/kvB (100,000 sat/vB): a sweep of 1 LTC would pay ~11% in fees (or all of
    a smaller deposit). Refused above ledger.rpc_max_fee_rate; nothing is broadcast."""
    node = fake(honest(estimatesmartfee={"feerate": raw("1.00000000"), "blocks": 2}))
    led = BitcoindLedger(node.url, asset=A)
    with pytest.raises(LedgerError, match="rpc_max_fee_rate"):
        led.sweep(A, SECRET, DEST)
    assert "sendrawtransaction" not in node.methods()
    node.answers.update(estimatesmartfee={"errors": ["no estimate"]}, getnetworkinfo={"relayfee": raw("0.5")})
    with pytest.raises(LedgerError, match="rpc_max_fee_rate"):  # nor through an inflated relay fee
        led.sweep(A, SECRET, DEST)
    assert "sendrawtransaction" not in node.methods()


@pytest.mark.parametrize("amount", ["0.000000001", "-1.00000000", "84000000.00000001", "1e400"])
def test_a_node_answering_an_amount_that_is_no_amount_is_refused(fake, amount):
    """A coin of a fraction of a satoshi, negative, above MAX_MONEY or infinite: the balance read refuses it."""
    node = fake(honest(amount=amount))
    led = BitcoindLedger(node.url, asset=A)
    with pytest.raises(LedgerError, match="amount"):
        led.balance(A, ADDR)
    with pytest.raises(LedgerError, match="amount"):
        led.sweep(A, SECRET, DEST)
    assert "sendrawtransaction" not in node.methods()


def test_a_node_answering_coins_of_a_script_not_asked_is_refused(fake):
    """scantxoutset answers a coin paying someone else's script: it is not counted as the address's."""
    ans = honest()
    ans["scantxoutset"]["unspents"][0]["scriptPubKey"] = "0014" + "77" * 20
    node = fake(ans)
    led = BitcoindLedger(node.url, asset=A)
    with pytest.raises(LedgerError, match="not asked"):
        led.balance(A, ADDR)


def test_a_node_of_another_chain_is_refused_at_connect(fake):
    """A node on regtest of another coin (bitcoind's genesis) is not LTC-REG's node."""
    node = fake(honest(getblockhash="0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"))
    with pytest.raises(LedgerError, match="genesis"):
        with_bitcoind(object(), {"ledger.rpc_url": node.url, "ledger.rpc_asset": A})
    node2 = fake(honest(getindexinfo={}))
    with pytest.raises(LedgerError, match="txindex"):
        with_bitcoind(object(), {"ledger.rpc_url": node2.url, "ledger.rpc_asset": A})


@pytest.mark.parametrize("bad", [bytes(32), b"\xff" * 32, SECRET[:31]])
def test_an_invalid_private_key_is_refused_without_echoing_it(fake, bad):
    node = fake(honest())
    led = BitcoindLedger(node.url, asset=A)
    with pytest.raises(LedgerError) as exc:
        led.sweep(A, bad, DEST)
    assert bad.hex() not in str(exc.value) and "sendrawtransaction" not in node.methods()


def _mempool_tx(value: str) -> dict:
    from embit import script

    return {"txid": "ee" * 32, "vin": [{"txid": "99" * 32, "vout": 0}],
            "vout": [{"n": 0, "value": raw(value),
                      "scriptPubKey": {"hex": script.p2wpkh(ec.PublicKey.parse(PUB)).data.hex()}}]}


@pytest.mark.parametrize("value", ["0.123456789", "-0.5", "99999999999"])
def test_a_node_answering_a_mempool_output_that_is_no_amount_is_refused(fake, value):
    """The unconfirmed balance adds mempool outputs paying the address: their values are checked too."""
    node = fake(honest(getrawmempool=["ee" * 32], getrawtransaction=_mempool_tx(value)))
    led = BitcoindLedger(node.url, asset=A)
    with pytest.raises(LedgerError, match="value"):
        led.balance(A, ADDR)
    with pytest.raises(LedgerError, match="value"):
        led.sweep(A, SECRET, DEST)
    assert "sendrawtransaction" not in node.methods()


def test_a_node_dropping_answers_from_a_batch_is_refused(fake):
    """A batch answered short (a mempool transaction silently left out) is an error, not a smaller mempool."""
    node = fake(honest(getrawmempool=["ee" * 32], getrawtransaction=_mempool_tx("0.5"),
                       __batch__=lambda out: out[:-1]))
    led = BitcoindLedger(node.url, asset=A)
    with pytest.raises(LedgerError, match="batch"):
        led.balance(A, ADDR)
    node.answers.pop("__batch__")
    assert led.balance(A, ADDR).unconfirmed == 10**8 + 5 * 10**7  # honest: the coin plus the mempool output
