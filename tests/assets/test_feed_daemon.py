"""The daemon as it runs (``node.app.daemon.run_daemon``, in this process): a configured file feed is the one price
object of the node: its deposits and offers are priced with it, and peers' offers are checked against it."""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from decimal import Decimal

import httpx
import pytest
import trio

from node import config as cfgmod
from node.app.daemon import run_daemon
from node.dev.localnet import init_datadir
from node.protocols.base import GossipReceived, Result
from node.contracts.protocol.run import ContractRun
from tests.adversarial.offerkit import Node, gossip, offers_of


@pytest.mark.network
def test_a_configured_file_feed_prices_the_offers_and_checks_peers_offers(tmp_path):
    d = tmp_path / "node"
    init_datadir(d)
    (d / "market.json").write_text(json.dumps({"BTC": 50000, "ETH": 2000}))
    cfg = cfgmod.load(d, env={}, overrides={"prices.source": "file", "prices.file": "market.json",
                                            "network.listen": ["/ip4/127.0.0.1/tcp/0"]})
    out = io.StringIO()
    seen: dict = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            node = await nursery.start(functools.partial(run_daemon, cfg, out=out))
            try:
                offers, rfp = node.driver.protocols[0], node.driver.protocols[1]
                run = next(p for p in node.driver.protocols if isinstance(p, ContractRun))  # (by type: not a position)
                feed = offers.prices
                seen["same"] = (rfp.prices is feed, run.price_of.__self__.prices is feed)
                seen["source"] = feed.source
                url = (d / "api.url").read_text().strip()
                cookie = (d / ".cookie").read_text().strip()
                async with httpx.AsyncClient(timeout=60) as c:  # an operator's deposit, through the API
                    r = await c.post(url + "/v1/deposits", json={"asset": "BTC-REG", "chunks": 1},
                                     headers={"Authorization": f"Bearer {cookie}"})
                seen["deposit"] = (r.status_code, r.json())
                seen["own"] = list(offers.own.offers)
                # a peer's offer: 50,000 sat declared $50 (the embedded table's figure; $25 at this node's price)
                now = time.time()
                mallory = Node("MalloryDaemon", keys=1, seed=b"z")
                mallory.quote = mallory.enc.quote(mallory.binding, now=now)
                sheet = mallory.sheet(offers_of(mallory.keys, amount=50_000, usd_cents=5000, expiry=now + 3600),
                                      now=now)
                seen["gossip"] = offers.validate(offers.topic, sheet, "12D3KooRelay", now).result
                if seen["gossip"] is Result.ACCEPT:
                    node.driver.submit(offers, lambda t: offers.handle(GossipReceived(offers.topic, sheet,
                                                                                      "12D3KooRelay"), t))
                    await trio.sleep(0.5)
                seen["book"] = offers.book.rows(now=now)
                seen["ignored"] = dict(offers.reasons.get("ignore_offer", {}))
            finally:
                node.stop()

    trio.run(main)
    assert "prices: file market.json (prices.max_age=300 s)" in out.getvalue()
    assert seen["source"] == "file market.json" and seen["same"] == (True, True)
    status, body = seen["deposit"]
    assert status == 201, body
    dep = body["deposits"][0]
    # $50 at $50,000 a coin: 100,000 sat, priced "50000" (the embedded table would give 50,000 sat at "100000")
    assert (dep["amount"], dep["usd_cents"], Decimal(dep["price"])) == (100_000, 5000, Decimal("50000")), dep
    assert [(o.amount, o.usd_cents, Decimal(o.price)) for o in seen["own"]] == [(100_000, 5000, Decimal("50000"))]
    assert seen["gossip"] is Result.ACCEPT and seen["book"] == []
    assert seen["ignored"] == {"usd value disagrees with our price": 1}


def test_keyswitch_run_with_an_unreadable_prices_file_stops_at_once_naming_the_setting(tmp_path):
    d = tmp_path / "node"
    init_datadir(d)
    r = subprocess.run([sys.executable, "-m", "node", "--datadir", str(d), "run"], capture_output=True, text=True,
                       timeout=60, cwd=Path(__file__).resolve().parents[2],
                       env={**os.environ, "KEYSWITCH_PRICES_SOURCE": "file",
                            "KEYSWITCH_PRICES_FILE": "missing.json"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: config prices.file='missing.json'") and "No such file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
