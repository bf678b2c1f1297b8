"""The price sources and coins a node's feed knows, by name: what ``node.config`` checks the ``prices.*``
settings against, without loading the feed itself (``node.assets.feeds``, which reports a bad setting with
``node.config.ConfigError``)."""

SOURCES = ("static", "file", "coinbase", "kraken", "coingecko")
COINGECKO_IDS = {"BTC": "bitcoin", "ETH": "ethereum", "LTC": "litecoin", "DOGE": "dogecoin"}
