"""The node's price feed: one object, built from the ``prices.*`` settings, that every part of the node prices with.

``prices.source`` names one or more sources:

* ``static``: the embedded development table (``DEFAULT_PRICES``), always fresh;
* ``file``: ``prices.file``, a JSON table (``JsonPrices``) or a CSV time series (``CsvPrices``), re-read when it
  changes (a file that no longer parses keeps the last good table, and the error is reported);
* ``coinbase``, ``kraken``, ``coingecko``: public spot-price APIs over HTTP.

``MedianFeed.price(asset, at)`` answers from the last good value of every source, without I/O: the median of the
sources whose price is at most ``prices.max_age`` seconds from ``at``; when none is, a ``PriceError`` names every
source and why it is not used (how old, or the last fetch error). ``MedianFeed.refresh(now)`` does the blocking
work (HTTP requests, file reads): the daemon runs it in a worker thread, in the background, every
``prices.refresh`` seconds. HTTP goes through an ``httpx`` transport that tests replace with recorded responses.

A response is refused whole when it is larger than ``MAX_BODY``, not JSON, uses NaN/Infinity, names another
pair than asked, or gives a price outside ``(MIN_PRICE, MAX_PRICE]``: a refused response leaves the source's
last good value in place (which then ages out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from node.assets.feed_names import COINGECKO_IDS, SOURCES  # noqa: F401 (SOURCES re-exported)
from node.assets.prices import DEFAULT_PRICES, CsvPrices, JsonPrices, Price, PriceError, StaticPrices, _base

#: the largest HTTP response body a price source may send (bytes); a larger one is refused unread
MAX_BODY = 64 * 1024
#: the range of a believable USD price per whole coin (a source saying otherwise is refused)
MIN_PRICE = Decimal("1e-8")
MAX_PRICE = Decimal("1e9")
#: the sources ``prices.source`` may name
HTTP_SOURCES = ("coinbase", "kraken", "coingecko")
#: the assets the HTTP sources are asked for (base symbols: test networks price like their main asset)
DEFAULT_ASSETS = ("BTC", "ETH", "LTC", "DOGE")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def checked_price(value, where: str) -> Decimal:
    """A price from outside: a decimal string or number, finite, in ``(MIN_PRICE, MAX_PRICE]``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise PriceError(f"{where}: price {value!r} is not a number")
    if isinstance(value, str) and len(value) > 40:
        raise PriceError(f"{where}: price string of {len(value)} characters (at most 40)")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise PriceError(f"{where}: price {value!r} is not a number") from None
    if not d.is_finite():
        raise PriceError(f"{where}: price {value!r} is not finite")
    if not MIN_PRICE < d <= MAX_PRICE:
        raise PriceError(f"{where}: price {value!r} outside ({MIN_PRICE}, {MAX_PRICE}] USD")
    return d


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def parse_json(body: bytes, where: str):
    """JSON from a price source: at most ``MAX_BODY`` bytes; NaN/Infinity refused; floats kept exact."""
    if len(body) > MAX_BODY:
        raise PriceError(f"{where}: response of {len(body)} bytes (at most {MAX_BODY})")
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise PriceError(f"{where}: not JSON ({_one_line(exc)})") from None


# ----------------------------------------------------------------- response parsers (one per API)
def coinbase_url(base: str) -> str:
    return f"https://api.coinbase.com/v2/prices/{base}-USD/spot"


def parse_coinbase(body: bytes, base: str) -> Decimal:
    """``{"data": {"amount": "97000.12", "base": "BTC", "currency": "USD"}}``"""
    where = f"coinbase {base}-USD"
    data = parse_json(body, where)
    d = data.get("data") if isinstance(data, dict) else None
    if not isinstance(d, dict):
        raise PriceError(f"{where}: no 'data' object in the response")
    if d.get("base") != base or d.get("currency") != "USD":
        raise PriceError(f"{where}: the response is for {d.get('base')!r}-{d.get('currency')!r}")
    return checked_price(d.get("amount"), where)


#: Kraken's names for our bases (Bitcoin is XBT, Dogecoin XDG)
KRAKEN_PAIRS = {"BTC": "XBTUSD", "ETH": "ETHUSD", "LTC": "LTCUSD", "DOGE": "XDGUSD"}
#: the result keys Kraken answers those pairs with
KRAKEN_RESULT_KEYS = {"BTC": ("XXBTZUSD", "XBTUSD"), "ETH": ("XETHZUSD", "ETHUSD"), "LTC": ("XLTCZUSD", "LTCUSD"),
                      "DOGE": ("XDGUSD", "XXDGZUSD")}


def kraken_url(base: str) -> str:
    pair = KRAKEN_PAIRS.get(base)
    if pair is None:
        raise PriceError(f"kraken: no pair known for {base!r} (known: {', '.join(sorted(KRAKEN_PAIRS))})")
    return f"https://api.kraken.com/0/public/Ticker?pair={pair}"


def parse_kraken(body: bytes, base: str) -> Decimal:
    """``{"error": [], "result": {"XXBTZUSD": {"c": ["97000.10000", "0.001"], ...}}}``: the last trade price."""
    where = f"kraken {KRAKEN_PAIRS.get(base, base)}"
    data = parse_json(body, where)
    if not isinstance(data, dict):
        raise PriceError(f"{where}: expected a JSON object")
    if data.get("error"):
        raise PriceError(f"{where}: the API answered an error: {str(data['error'])[:100]}")
    result = data.get("result")
    if not isinstance(result, dict) or len(result) != 1:
        raise PriceError(f"{where}: expected one pair in 'result'")
    (key, ticker), = result.items()
    if key not in KRAKEN_RESULT_KEYS.get(base, ()):
        raise PriceError(f"{where}: the response is for pair {str(key)[:20]!r}")
    last = ticker.get("c") if isinstance(ticker, dict) else None
    if not isinstance(last, list) or not last:
        raise PriceError(f"{where}: no last trade ('c') in the ticker")
    return checked_price(last[0], where)




def coingecko_url(base: str) -> str:
    cid = COINGECKO_IDS.get(base)
    if cid is None:
        raise PriceError(f"coingecko: no coin id known for {base!r} (known: {', '.join(sorted(COINGECKO_IDS))})")
    return f"https://api.coingecko.com/api/v3/simple/price?ids={cid}&vs_currencies=usd&include_last_updated_at=true"


def parse_coingecko(body: bytes, base: str) -> tuple[Decimal, float | None]:
    """``{"bitcoin": {"usd": 97000.5, "last_updated_at": 1733500000}}``: the price and the time it is for."""
    cid = COINGECKO_IDS.get(base, base)
    where = f"coingecko {cid}"
    data = parse_json(body, where)
    entry = data.get(cid) if isinstance(data, dict) else None
    if not isinstance(entry, dict):
        raise PriceError(f"{where}: no {cid!r} object in the response")
    usd = checked_price(entry.get("usd"), where)
    at = entry.get("last_updated_at")
    if at is None:
        return usd, None
    if isinstance(at, bool) or not isinstance(at, (int, Decimal)) or not 0 < at < 2**40:
        raise PriceError(f"{where}: last_updated_at {str(at)[:30]!r} is not a unix time")
    return usd, float(at)


# ----------------------------------------------------------------- sources
class StaticSource:
    """The embedded table (or a given one): always fresh, nothing to refresh."""

    def __init__(self, table: dict | None = None, name: str = "static") -> None:
        self.name = name
        self.table = StaticPrices(table or DEFAULT_PRICES, source=name)
        self.error: str | None = None

    def refresh(self, now: float) -> None:
        pass

    def quote(self, asset: str, at: float) -> Price:
        return self.table.price(asset, at)


class FileSource:
    """``prices.file``: JSON table or CSV series (by the ``.csv`` suffix), re-read when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = f"file {self.path.name}"
        self.error: str | None = None
        self._mtime: float | None = None
        self._table = None
        self.refresh(0.0)
        if self._table is None:
            raise PriceError(f"prices.file={str(self.path)!r}: {self.error}")

    def _load(self):
        return CsvPrices(self.path) if self.path.suffix.lower() == ".csv" else JsonPrices(self.path)

    def refresh(self, now: float) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            self.error = f"cannot read it ({_one_line(exc)}); last good table kept"
            return
        if mtime == self._mtime and self._table is not None:
            return
        try:
            table = self._load()
        except PriceError as exc:
            self.error = f"{_one_line(exc)}; last good table kept"
            return
        for ts_ps in getattr(table, "series", {}).values():  # CSV: every point in the believable range
            for p in ts_ps[1]:
                checked_price(p, self.name)
        for p in getattr(table, "table", {}).values():
            checked_price(p, self.name)
        self._table, self._mtime, self.error = table, mtime, None

    def quote(self, asset: str, at: float) -> Price:
        p = self._table.price(asset, at)
        return Price(p.asset, p.usd_per_unit, p.at, self.name)


@dataclass
class HttpSource:
    """One public spot-price API; ``refresh`` asks it for every base in ``assets``, ``quote`` reads the cache."""

    name: str
    client: object  # an httpx.Client (its transport is what tests replace)
    assets: tuple[str, ...] = DEFAULT_ASSETS
    quotes: dict[str, tuple[Decimal, float]] = field(default_factory=dict)
    error: str | None = None
    tried: float | None = None

    def _get(self, url: str) -> bytes:
        with self.client.stream("GET", url) as r:
            if r.status_code != 200:
                raise PriceError(f"{self.name}: HTTP {r.status_code} from {url.split('?')[0]}")
            declared = r.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
                raise PriceError(f"{self.name}: response of {declared} bytes (at most {MAX_BODY})")
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise PriceError(f"{self.name}: response over {MAX_BODY} bytes")
            return body

    def fetch_one(self, base: str, now: float) -> tuple[Decimal, float]:
        if self.name == "coinbase":
            return parse_coinbase(self._get(coinbase_url(base)), base), now
        if self.name == "kraken":
            return parse_kraken(self._get(kraken_url(base)), base), now
        if self.name == "coingecko":
            usd, at = parse_coingecko(self._get(coingecko_url(base)), base)
            return usd, now if at is None else min(at, now)  # a time in the future is not believed
        raise PriceError(f"unknown price source {self.name!r}")

    def refresh(self, now: float) -> None:
        import httpx

        self.tried = now
        errors = []
        for base in self.assets:
            try:
                self.quotes[base] = self.fetch_one(base, now)
            except PriceError as exc:
                errors.append(str(exc))
            except httpx.HTTPError as exc:
                errors.append(f"{self.name} {base}: unreachable ({type(exc).__name__}: {_one_line(exc)})")
                if isinstance(exc, httpx.TransportError):  # down or timing out: not asked again this round
                    break
        self.error = "; ".join(errors)[:400] if errors else None

    def quote(self, asset: str, at: float) -> Price:
        for key in (asset, _base(asset)):
            if key in self.quotes:
                usd, t = self.quotes[key]
                return Price(asset, usd, t, self.name)
        raise PriceError(f"{self.name}: no price for {asset!r} fetched yet")


# ----------------------------------------------------------------- the feed
def median(values: list[Decimal]) -> Decimal:
    v = sorted(values)
    n = len(v)
    if n == 0:
        raise ValueError("median of no values")
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


class MedianFeed:
    """The node's feed (``PriceFeed``): the median of the fresh sources' last good values."""

    def __init__(self, sources: list, max_age: float = 300.0) -> None:
        if not sources:
            raise ValueError("a price feed needs at least one source")
        if not (max_age > 0 and max_age < float("inf")):
            raise ValueError(f"prices.max_age must be a positive number of seconds, got {max_age!r}")
        self.sources = list(sources)
        self.max_age = float(max_age)

    @property
    def source(self) -> str:
        return "+".join(s.name for s in self.sources)

    def refresh(self, now: float) -> None:
        """Blocking: re-read files and ask the HTTP sources (call it from a worker thread)."""
        for s in self.sources:
            try:
                s.refresh(now)
            except Exception as exc:  # a source's failure never stops the others
                s.error = f"{type(exc).__name__}: {_one_line(exc)}"

    def price(self, asset: str, at: float) -> Price:
        fresh: list[Price] = []
        why: list[str] = []
        for s in self.sources:
            try:
                p = s.quote(asset, at)
            except PriceError as exc:
                why.append(f"{s.name}: {exc}" + (f" (last error: {s.error})" if s.error else ""))
                continue
            age = at - p.at
            if abs(age) > self.max_age:
                what = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
                why.append(f"{s.name}: {what}" + (f" (last error: {s.error})" if s.error else ""))
                continue
            fresh.append(p)
        if not fresh:
            raise PriceError(f"no fresh price for {asset} (prices.max_age={self.max_age:g} s): " + "; ".join(why))
        if len(fresh) == 1:
            return fresh[0]
        return Price(asset, median([p.usd_per_unit for p in fresh]), min(p.at for p in fresh),
                     "median(" + ",".join(p.source for p in fresh) + ")")


def build_feed(cfg, *, transport=None, datadir: Path | None = None) -> MedianFeed:
    """The node's feed from its configuration (``ConfigError`` naming the setting on a bad one).

    ``transport``: the ``httpx`` transport for the HTTP sources (tests pass recorded responses)."""
    from node.config import ConfigError

    names = list(cfg["prices.source"])
    sources: list = []
    for name in names:
        if name == "static":
            sources.append(StaticSource())
        elif name == "file":
            f = cfg["prices.file"]
            if not f:
                raise ConfigError("prices.file", f, "prices.source names file: give the JSON or CSV file", "")
            path = Path(f).expanduser()
            if not path.is_absolute() and datadir is not None:
                path = Path(datadir) / path
            try:
                sources.append(FileSource(path))
            except PriceError as exc:
                raise ConfigError("prices.file", f, str(exc), "") from None
        elif name in HTTP_SOURCES:
            import httpx

            client = httpx.Client(transport=transport, timeout=cfg["prices.http_timeout"], follow_redirects=False,
                                  headers={"User-Agent": "keyswitch-node", "Accept": "application/json"})
            sources.append(HttpSource(name, client, tuple(cfg["prices.assets"])))
        else:
            raise ConfigError("prices.source", names, f"unknown source {name!r}: one or more of {', '.join(SOURCES)}",
                              "")
    return MedianFeed(sources, max_age=cfg["prices.max_age"])

