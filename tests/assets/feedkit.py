"""Recorded HTTP responses of the price APIs, served through an ``httpx.MockTransport`` (the tests have no network)."""

from __future__ import annotations

from pathlib import Path

import httpx

from node import config as cfgmod

RECORDED = Path(__file__).parent / "recorded"

#: URL (without the host's scheme) -> recorded file
ROUTES = {
    "https://api.coinbase.com/v2/prices/BTC-USD/spot": "coinbase_BTC-USD_spot.json",
    "https://api.coinbase.com/v2/prices/ETH-USD/spot": "coinbase_ETH-USD_spot.json",
    "https://api.kraken.com/0/public/Ticker?pair=XBTUSD": "kraken_XBTUSD.json",
    "https://api.kraken.com/0/public/Ticker?pair=ETHUSD": "kraken_ETHUSD.json",
    "https://api.coingecko.com/api/v3/simple/price?ids=bitcoin&vs_currencies=usd&include_last_updated_at=true":
        "coingecko_bitcoin.json",
    "https://api.coingecko.com/api/v3/simple/price?ids=ethereum&vs_currencies=usd&include_last_updated_at=true":
        "coingecko_ethereum.json",
}


def recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


class Transport(httpx.MockTransport):
    """Serves the recorded bodies; ``override[host] = bytes | callable(request) | Exception`` replaces a host's
    answers (a hostile or broken source); ``requests`` lists the URLs asked."""

    def __init__(self) -> None:
        self.override: dict[str, object] = {}
        self.requests: list[str] = []
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        o = self.override.get(request.url.host)
        if isinstance(o, BaseException):
            raise o
        if callable(o):
            return o(request)
        if isinstance(o, bytes):
            return httpx.Response(200, content=o)
        name = ROUTES.get(url)
        if name is None:
            return httpx.Response(404, content=b'{"errors":[{"id":"not_found"}]}')
        return httpx.Response(200, content=recorded(name))


def config(tmp_path: Path, **settings):
    """A configuration with ``prices.*`` settings (keyword ``source`` -> ``prices.source`` ...)."""
    return cfgmod.load(tmp_path, env={}, overrides={f"prices.{k}": v for k, v in settings.items()})
