"""Attacks through prices: a peer declaring a chunk's USD value from a stale table, a lying or hostile price
source, a feed cut off so that an old price would be used.

The hostile peer is a real node with its own simulated enclave (``tests.adversarial.test_offers.Node``); its
sheet goes through the receiver's ``OffersProtocol`` as gossip delivers it, and the receiver is built with the
daemon's own ``node.app.stack.offer_settings(cfg, feed)`` from a configuration as an operator writes it. HTTP
sources answer through an ``httpx`` transport serving the recorded responses (``tests/assets/recorded``), or
what the attacker makes them answer.
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from node.assets.feeds import build_feed
from node.assets.prices import PriceError
from node.app.stack import offer_settings
from node.protocols.base import Result
from tests.adversarial.offerkit import NOW, Node, book_rows, gossip, offers_of, receiver
from tests.assets.feedkit import Transport, config


@pytest.fixture(scope="module")
def mallory():
    return Node("MalloryPrices", seed=b"p")


def market_file(tmp_path, btc: str) -> None:
    (tmp_path / "market.json").write_text(json.dumps({"BTC": btc}))


def test_a_chunk_priced_at_the_stale_static_table_is_not_booked_by_a_node_fed_the_market_price(tmp_path, mallory):
    """BTC fell to $50,000; the embedded table still says $100,000. Mallory offers 50,000 sat declared $50:
    worth $25 at the market. The operator gave the node the market price (prices.source = file): the offer is
    not booked; one declared at the market value is."""
    market_file(tmp_path, "50000")
    cfg = config(tmp_path, source="file", file="market.json")
    p = receiver(**offer_settings(cfg))
    k = mallory.keys
    sheet = mallory.sheet(offers_of(k[:2], amount=50_000, usd_cents=5000) + offers_of(k[2:], amount=100_000,
                                                                                          usd_cents=5000))
    assert gossip(p, sheet).result is Result.ACCEPT
    rows = book_rows(p)
    assert [(r["amount"], r["usd_cents"]) for r in rows] == [(100_000, 5000)], rows
    assert p.reasons["ignore_offer"]["usd value disagrees with our price"] == 2


def test_one_lying_price_source_among_three_cannot_move_the_price(tmp_path, mallory):
    """A compromised (or impersonated) Coinbase endpoint answers BTC at $1,000,000, so that 5,000 sat would be
    worth $50. With three sources the median stays at the honest price: Mallory's 5,000-sat "$50" chunk
    (worth $4.85) is not booked."""
    t = Transport()
    t.override["api.coinbase.com"] = b'{"data":{"amount":"1000000","base":"BTC","currency":"USD"}}'
    feed = build_feed(config(tmp_path, source="coinbase,kraken,coingecko", assets="BTC"), transport=t)
    feed.refresh(NOW)
    assert feed.price("BTC-REG", NOW).usd_per_unit == Decimal("97010.10000")
    p = receiver(**offer_settings(config(tmp_path), feed))
    assert gossip(p, mallory.sheet(offers_of(mallory.keys, amount=5_000, usd_cents=5000))).result is Result.ACCEPT
    assert book_rows(p) == [] and p.reasons["ignore_offer"]["usd value disagrees with our price"] == 3


@pytest.mark.parametrize("answer", [
    b'{"data":{"amount":"NaN","base":"BTC","currency":"USD"}}',
    b'{"data":{"amount":1e999999,"base":"BTC","currency":"USD"}}',
    b'{"data":{"amount":"0.0000000001","base":"BTC","currency":"USD"}}',
    b'{"data":{"amount":"97000","base":"BTC","currency":"USD","x":"' + b"A" * 70_000 + b'"}}',
    b'{"data":{"amount":"5","base":"DOGE","currency":"USD"}}',
])
def test_a_hostile_sources_nan_huge_or_foreign_answer_is_refused_and_the_last_good_price_stands(tmp_path, answer):
    t = Transport()
    feed = build_feed(config(tmp_path, source="coinbase", assets="BTC"), transport=t)
    feed.refresh(NOW)
    t.override["api.coinbase.com"] = answer
    feed.refresh(NOW + 10)
    assert feed.sources[0].error and "coinbase" in feed.sources[0].error
    p = feed.price("BTC", NOW + 10)
    assert p.usd_per_unit == Decimal("97012.35") and p.at == NOW  # the last good one, with its own time


def test_a_feed_cut_off_past_max_age_prices_nothing_rather_than_an_old_price(tmp_path, mallory):
    """An attacker who blocks the node's price sources (after a crash of the market, say) must not get offers
    booked at the last price seen: past prices.max_age the node has no price, and says which sources and how old."""
    t = Transport()
    feed = build_feed(config(tmp_path, source="coinbase,kraken", assets="BTC", max_age=300), transport=t)
    feed.refresh(NOW)
    t.override["api.coinbase.com"] = httpx.ConnectError("blocked")
    t.override["api.kraken.com"] = httpx.ConnectTimeout("timed out")
    feed.refresh(NOW + 290)
    later = NOW + 301
    with pytest.raises(PriceError) as e:
        feed.price("BTC-REG", later)
    assert "coinbase: 301 s old" in str(e.value) and "kraken: 301 s old" in str(e.value)
    assert "prices.max_age=300 s" in str(e.value) and "unreachable (ConnectTimeout" in str(e.value)
    p = receiver(**offer_settings(config(tmp_path), feed))
    # the offer would pass at the old price ($97,011: 51,541 sat is $50): it is not booked without a fresh one
    assert gossip(p, mallory.sheet(offers_of(mallory.keys, amount=51_541, usd_cents=5000), now=later),
                  now=later).result is Result.ACCEPT
    assert book_rows(p, now=later) == [] and p.reasons["ignore_offer"]["no price for the asset"] == 3
