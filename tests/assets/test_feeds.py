"""The node's price feed (``node.assets.feeds``): recorded API responses, the median, staleness, refusals, settings."""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal

import httpx
import pytest

from node.assets.feeds import (
    MAX_BODY, FileSource, HttpSource, MedianFeed, StaticSource, build_feed, median, parse_coinbase,
    parse_coingecko, parse_kraken,
)
from node.assets.prices import PriceError
from node.config import ConfigError
from tests.assets.feedkit import Transport, config, recorded

NOW = 1_800_000_000.0


# ----------------------------------------------------------------- parsing the recorded responses
def test_each_recorded_response_parses_to_its_price():
    assert parse_coinbase(recorded("coinbase_BTC-USD_spot.json"), "BTC") == Decimal("97012.35")
    assert parse_coinbase(recorded("coinbase_ETH-USD_spot.json"), "ETH") == Decimal("3890.115")
    assert parse_kraken(recorded("kraken_XBTUSD.json"), "BTC") == Decimal("97010.10000")
    assert parse_kraken(recorded("kraken_ETHUSD.json"), "ETH") == Decimal("3889.50000")
    assert parse_coingecko(recorded("coingecko_bitcoin.json"), "BTC") == (Decimal("97005.5"), 1_800_000_000.0)
    assert parse_coingecko(recorded("coingecko_ethereum.json"), "ETH") == (Decimal("3888.02"), 1_800_000_000.0)


def test_a_response_for_another_pair_or_an_api_error_is_refused():
    with pytest.raises(PriceError, match="is for 'BTC'-'USD'"):
        parse_coinbase(recorded("coinbase_BTC-USD_spot.json"), "ETH")
    with pytest.raises(PriceError, match="is for pair 'XXBTZUSD'"):
        parse_kraken(recorded("kraken_XBTUSD.json"), "ETH")
    with pytest.raises(PriceError, match="EQuery:Unknown asset pair"):
        parse_kraken(recorded("kraken_unknown_pair.json"), "BTC")
    with pytest.raises(PriceError, match="no 'ethereum' object"):
        parse_coingecko(recorded("coingecko_bitcoin.json"), "ETH")


@pytest.mark.parametrize("body, why", [
    (b'{"data":{"amount":"NaN","base":"BTC","currency":"USD"}}', "not finite"),
    (b'{"data":{"amount":NaN,"base":"BTC","currency":"USD"}}', "not JSON"),
    (b'{"data":{"amount":Infinity,"base":"BTC","currency":"USD"}}', "not JSON"),
    (b'{"data":{"amount":"-97000","base":"BTC","currency":"USD"}}', "outside"),
    (b'{"data":{"amount":"0","base":"BTC","currency":"USD"}}', "outside"),
    (b'{"data":{"amount":"1e400","base":"BTC","currency":"USD"}}', "outside"),
    (b'{"data":{"amount":"' + b"9" * 41 + b'","base":"BTC","currency":"USD"}}', "41 characters"),
    (b'{"data":{"amount":true,"base":"BTC","currency":"USD"}}', "not a number"),
    (b'{"data":{"amount":["97000"],"base":"BTC","currency":"USD"}}', "not a number"),
    (b'{"data":{"amount":"97,000","base":"BTC","currency":"USD"}}', "not a number"),
    (b"<html>rate limited</html>", "not JSON"),
    (b"[]", "no 'data' object"),
    (b"[" * 100_000 + b"]" * 100_000, "bytes (at most"),
    (b'{"data":{"amount":"97000","base":"BTC","currency":"USD","pad":"' + b"x" * MAX_BODY + b'"}}', "at most"),
])
def test_malformed_nan_and_huge_coinbase_answers_are_refused(body, why):
    with pytest.raises(PriceError, match=re.escape(why)):
        parse_coinbase(body, "BTC")


@pytest.mark.parametrize("body, why", [
    (b'{"error":[],"result":{"XXBTZUSD":{"c":["NaN","1"]}}}', "not finite"),
    (b'{"error":[],"result":{"XXBTZUSD":{"c":[]}}}', "no last trade"),
    (b'{"error":[],"result":{"XXBTZUSD":{"c":["97000","1"]},"XETHZUSD":{"c":["3000","1"]}}}', "one pair"),
    (b'{"error":[],"result":{"XXBTZUSD":{"c":[1e999,"1"]}}}', "outside"),
])
def test_malformed_kraken_answers_are_refused(body, why):
    with pytest.raises(PriceError, match=re.escape(why)):
        parse_kraken(body, "BTC")


@pytest.mark.parametrize("body, why", [
    (b'{"bitcoin":{"usd":NaN}}', "not JSON"),
    (b'{"bitcoin":{"usd":97000,"last_updated_at":-5}}', "not a unix time"),
    (b'{"bitcoin":{"usd":97000,"last_updated_at":1.5e300}}', "not a unix time"),
    (b'{"bitcoin":{"usd":"0.000000001"}}', "outside"),
])
def test_malformed_coingecko_answers_are_refused(body, why):
    with pytest.raises(PriceError, match=re.escape(why)):
        parse_coingecko(body, "BTC")


# ----------------------------------------------------------------- the HTTP sources over a transport
def http_feed(tmp_path, transport, sources=("coinbase", "kraken", "coingecko"), max_age=300.0):
    cfg = config(tmp_path, source=list(sources), assets=["BTC", "ETH"], max_age=max_age)
    return build_feed(cfg, transport=transport)


def test_three_http_sources_give_their_median_with_its_time(tmp_path):
    t = Transport()
    feed = http_feed(tmp_path, t)
    with pytest.raises(PriceError, match="no fresh price for BTC-REG"):  # nothing fetched yet
        feed.price("BTC-REG", NOW)
    feed.refresh(NOW)
    assert len(t.requests) == 6 and all(s.error is None for s in feed.sources)
    p = feed.price("BTC-REG", NOW + 5)
    assert p.usd_per_unit == Decimal("97010.10000")  # median of 97012.35, 97010.10, 97005.5
    assert p.source == "median(coinbase,kraken,coingecko)" and p.at == NOW
    assert feed.price("ETH-DEV", NOW).usd_per_unit == Decimal("3889.50000")
    with pytest.raises(PriceError, match="no price for 'LTC'"):
        feed.price("LTC", NOW)


def test_median_of_an_even_count_is_the_middle_pair_average():
    assert median([Decimal(1), Decimal(3)]) == 2
    assert median([Decimal(5), Decimal(1), Decimal(100), Decimal(2)]) == Decimal("3.5")
    assert median([Decimal(7)]) == 7
    with pytest.raises(ValueError):
        median([])


def test_a_stale_source_is_left_out_and_all_stale_is_a_one_line_error_naming_each(tmp_path):
    t = Transport()
    feed = http_feed(tmp_path, t, sources=("coinbase", "kraken"), max_age=120)
    feed.refresh(NOW)
    t.override["api.kraken.com"] = httpx.ConnectError("connection refused")
    asked = len(t.requests)
    feed.refresh(NOW + 100)  # coinbase fresh at NOW+100, kraken kept at NOW with its error
    assert len(t.requests) == asked + 3  # coinbase BTC, ETH; kraken once (down: its ETH is not asked this round)
    p = feed.price("BTC", NOW + 150)
    assert p.source == "coinbase" and p.usd_per_unit == Decimal("97012.35") and p.at == NOW + 100
    t.override["api.coinbase.com"] = lambda req: httpx.Response(503, content=b"down")
    feed.refresh(NOW + 200)
    with pytest.raises(PriceError) as e:
        feed.price("BTC", NOW + 400)
    msg = str(e.value)
    assert "\n" not in msg and "prices.max_age=120 s" in msg
    assert "coinbase: 300 s old (last error: coinbase: HTTP 503" in msg
    assert "kraken: 400 s old (last error: kraken BTC: unreachable (ConnectError: connection refused)" in msg


def test_a_refused_answer_keeps_the_last_good_value_which_then_ages_out(tmp_path):
    t = Transport()
    feed = http_feed(tmp_path, t, sources=("coinbase",), max_age=60)
    feed.refresh(NOW)
    t.override["api.coinbase.com"] = b'{"data":{"amount":"NaN","base":"BTC","currency":"USD"}}'
    feed.refresh(NOW + 30)
    assert "not finite" in feed.sources[0].error
    assert feed.price("BTC", NOW + 30).usd_per_unit == Decimal("97012.35")  # the good one, at its time
    with pytest.raises(PriceError, match="coinbase: 61 s old"):
        feed.price("BTC", NOW + 61)


def test_a_huge_streamed_answer_is_cut_off_and_refused(tmp_path):
    t = Transport()

    def endless(req):
        return httpx.Response(200, content=iter([b"x" * 8192] * 10_000))  # 80 MB, no content-length

    t.override["api.coinbase.com"] = endless
    feed = http_feed(tmp_path, t, sources=("coinbase",))
    feed.refresh(NOW)
    assert f"response over {MAX_BODY} bytes" in feed.sources[0].error
    t.override["api.coinbase.com"] = lambda req: httpx.Response(200, headers={"content-length": "99999999"},
                                                                content=b"{}")
    src = HttpSource("coinbase", httpx.Client(transport=t), ("BTC",))
    src.refresh(NOW)
    assert "response of 99999999 bytes" in src.error and not src.quotes


def test_a_coingecko_time_in_the_future_is_not_believed(tmp_path):
    t = Transport()
    feed = http_feed(tmp_path, t, sources=("coingecko",))
    feed.refresh(NOW - 1000)  # the recorded last_updated_at (NOW) is after our clock: our clock wins
    assert feed.price("BTC", NOW - 1000).at == NOW - 1000


# ----------------------------------------------------------------- static and file sources
def test_static_is_the_default_and_prices_as_before(tmp_path):
    feed = build_feed(config(tmp_path))
    assert [s.name for s in feed.sources] == ["static"]
    p = feed.price("BTC-REG", NOW)
    assert (p.usd_per_unit, p.at, p.source) == (Decimal("100000"), NOW, "static")


def test_a_json_file_is_re_read_when_it_changes_and_a_broken_one_keeps_the_last_good(tmp_path):
    f = tmp_path / "market.json"
    f.write_text(json.dumps({"at": NOW, "prices": {"BTC": 50000}}))
    feed = build_feed(config(tmp_path, source="file", file="market.json", max_age=600), datadir=tmp_path)
    assert feed.price("BTC-REG", NOW + 10).usd_per_unit == Decimal("50000")
    f.write_text(json.dumps({"at": NOW + 500, "prices": {"BTC": 60000}}))
    os.utime(f, (NOW + 500, NOW + 500))
    feed.refresh(NOW + 500)
    assert feed.price("BTC", NOW + 510).usd_per_unit == Decimal("60000")
    f.write_text("{not json")
    os.utime(f, (NOW + 600, NOW + 600))
    feed.refresh(NOW + 600)
    assert "last good table kept" in feed.sources[0].error
    assert feed.price("BTC", NOW + 600).usd_per_unit == Decimal("60000")
    with pytest.raises(PriceError, match=r"file market.json: 601 s old \(last error: .*last good table kept"):
        feed.price("BTC", NOW + 1101)


def test_a_csv_series_is_a_file_source_and_goes_stale_after_its_last_point(tmp_path):
    f = tmp_path / "series.csv"
    f.write_text(f"time,asset,usd\n{NOW},BTC,90000\n{NOW + 100},BTC,91000\n")
    feed = build_feed(config(tmp_path, source="file", file=str(f), max_age=60))
    assert feed.price("BTC", NOW + 50).usd_per_unit == Decimal("90000")
    assert feed.price("BTC", NOW + 150).usd_per_unit == Decimal("91000")
    with pytest.raises(PriceError, match="161 s old"):
        feed.price("BTC", NOW + 261)


def test_static_with_http_takes_the_median(tmp_path):
    t = Transport()
    feed = build_feed(config(tmp_path, source="static,coinbase,kraken", assets="BTC"), transport=t)
    feed.refresh(NOW)
    p = feed.price("BTC", NOW)
    assert p.usd_per_unit == Decimal("97012.35") and p.source == "median(static,coinbase,kraken)"


# ----------------------------------------------------------------- settings
@pytest.mark.parametrize("settings, key, why", [
    (dict(source="bloomberg"), "prices.source", "unknown source 'bloomberg'"),
    (dict(source=""), "prices.source", "name at least one source"),
    (dict(source="coinbase,coinbase"), "prices.source", "named twice"),
    (dict(source="file"), "prices.file", "give the JSON or CSV file"),
    (dict(max_age=0.0), "prices.max_age", "between 1 and"),
    (dict(max_age=float("nan")), "prices.max_age", "between 1 and"),
    (dict(max_age=float("inf")), "prices.max_age", "between 1 and"),
    (dict(refresh=-1.0), "prices.refresh", "between 1 and"),
    (dict(http_timeout=1e9), "prices.http_timeout", "between 0.1 and"),
    (dict(assets="BTC,XMR"), "prices.assets", "unknown coin 'XMR'"),
])
def test_bad_price_settings_are_refused_naming_the_setting(tmp_path, settings, key, why):
    with pytest.raises(ConfigError) as e:
        config(tmp_path, **settings)
    assert e.value.key == key and why in str(e.value)


def test_a_missing_or_bad_prices_file_stops_the_feed_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="prices.file='nope.json'.*No such file"):
        build_feed(config(tmp_path, source="file", file="nope.json"), datadir=tmp_path)
    (tmp_path / "neg.json").write_text('{"BTC": -3}')
    with pytest.raises(ConfigError, match="prices.file='neg.json'.*positive finite"):
        build_feed(config(tmp_path, source="file", file="neg.json"), datadir=tmp_path)
    (tmp_path / "huge.json").write_text('{"BTC": 1e30}')
    with pytest.raises(ConfigError, match="outside"):
        build_feed(config(tmp_path, source="file", file="huge.json"), datadir=tmp_path)


def test_the_feed_refuses_a_nonsense_max_age_and_no_source():
    with pytest.raises(ValueError, match="prices.max_age"):
        MedianFeed([StaticSource()], max_age=float("nan"))
    with pytest.raises(ValueError, match="at least one source"):
        MedianFeed([])
    assert isinstance(FileSource, type)
