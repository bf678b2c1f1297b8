"""Prices and chunk sizes.

A chunk is a USD amount (default $50) converted at the current price into the
asset's smallest unit. The conversion, the price and its timestamp travel
together (``Price``), and with every offer. Arithmetic is ``Decimal``; amounts
round *down* to whole smallest units (a chunk is never worth more than asked).
"""

from __future__ import annotations

import bisect
import csv
import json
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Protocol


class PriceError(ValueError):
    pass


@dataclass(frozen=True)
class Price:
    asset: str
    usd_per_unit: Decimal  # USD per whole coin
    at: float  # unix time the price is for
    source: str


class PriceFeed(Protocol):
    def price(self, asset: str, at: float) -> Price: ...


def _dec(v, where: str) -> Decimal:
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise PriceError(f"{where}: {v!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise PriceError(f"{where}: a price must be a positive finite number, got {v!r}")
    return d


#: development prices (round numbers, not market data)
DEFAULT_PRICES = {"BTC": "100000", "LTC": "100", "DOGE": "0.2", "ETH": "4000"}


def _base(asset: str) -> str:
    return asset.split("-", 1)[0]


class StaticPrices:
    """A fixed table (the embedded default); test networks price like their main asset."""

    def __init__(self, table: dict[str, str | float] | None = None, at: float = 0.0, source: str = "static") -> None:
        self.table = {k: _dec(v, f"price of {k}") for k, v in (table or DEFAULT_PRICES).items()}
        self.at, self.source = at, source

    def price(self, asset: str, at: float) -> Price:
        for key in (asset, _base(asset)):
            if key in self.table:
                return Price(asset, self.table[key], at if not self.at else self.at, self.source)
        raise PriceError(f"no price for {asset!r} in {self.source}")


class JsonPrices(StaticPrices):
    """``{"BTC": 97000.5, ...}`` or ``{"at": 1.7e9, "prices": {...}}`` from a file."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise PriceError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise PriceError(f"{path}: expected a JSON object")
        prices = data.get("prices", data)
        if not isinstance(prices, dict) or not prices:
            raise PriceError(f"{path}: no prices")
        super().__init__({k: v for k, v in prices.items() if k != "at"}, at=float(data.get("at", 0.0)),
                         source=str(path))


class PriceSeries:
    """Time-varying prices (simulations, CSV files): step function over ``(time, asset, price)`` points."""

    def __init__(self, points: list[tuple[float, str, str | float]], source: str = "series") -> None:
        self.source = source
        self.series: dict[str, tuple[list[float], list[Decimal]]] = {}
        for t, asset, p in sorted(points, key=lambda x: (x[1], x[0])):
            ts, ps = self.series.setdefault(asset, ([], []))
            ts.append(float(t))
            ps.append(_dec(p, f"{source}: {asset} at {t}"))

    def price(self, asset: str, at: float) -> Price:
        for key in (asset, _base(asset)):
            if key in self.series:
                ts, ps = self.series[key]
                i = bisect.bisect_right(ts, at) - 1
                if i < 0:
                    raise PriceError(f"{self.source}: no {asset} price at or before {at}")
                return Price(asset, ps[i], ts[i], self.source)
        raise PriceError(f"no price for {asset!r} in {self.source}")


class CsvPrices(PriceSeries):
    """CSV with a header ``time,asset,usd``."""

    def __init__(self, path: Path) -> None:
        points = []
        try:
            with open(path, newline="") as f:
                for n, row in enumerate(csv.DictReader(f), start=2):
                    try:
                        points.append((float(row["time"]), row["asset"], row["usd"]))
                    except (KeyError, TypeError, ValueError):
                        raise PriceError(f"{path}:{n}: expected columns time,asset,usd") from None
        except OSError as exc:
            raise PriceError(f"{path}: {exc}") from None
        super().__init__(points, source=str(path))


def chunk_amount(asset: str, usd_cents: int, price: Price) -> int:
    """Smallest units worth ``usd_cents`` at ``price`` (rounded down)."""
    from node.assets import get_asset

    if usd_cents <= 0:
        raise ValueError("a chunk's USD value must be positive")
    unit = get_asset(asset).unit
    amount = (Decimal(usd_cents) / 100 / price.usd_per_unit * unit).to_integral_value(rounding=ROUND_DOWN)
    if amount <= 0:
        raise ValueError(f"${usd_cents / 100:.2f} is less than one smallest unit of {asset}")
    return int(amount)


def usd_value_cents(asset: str, amount: int, price: Price) -> int:
    """USD cents that ``amount`` smallest units are worth at ``price`` (half-even)."""
    from node.assets import get_asset

    unit = get_asset(asset).unit
    return int((Decimal(amount) * price.usd_per_unit * 100 / unit).to_integral_value(rounding=ROUND_HALF_EVEN))


#: how far a declared USD value may stray from amount x our own price (``risk.price_tolerance``)
DEFAULT_PRICE_TOLERANCE = 0.10


def declared_usd_mismatch(asset: str, amount: int, usd_cents: int, price: Price,
                          tolerance: float = DEFAULT_PRICE_TOLERANCE) -> str | None:
    """None when ``usd_cents`` (declared by a peer) is within ``tolerance`` of what ``amount`` smallest units
    of ``asset`` are worth at ``price`` (ours); otherwise the reason, naming both values and the setting.

    Never trusts the declared figure: a value below the tolerance is refused as much as one above it (a
    chunk declared at $50 that is worth $5 at our price is a $5 chunk)."""
    if amount <= 0 or usd_cents <= 0:
        return f"declared amount {amount} / usd_cents {usd_cents} must be positive"
    ours = usd_value_cents(asset, amount, price)
    if abs(ours - usd_cents) > tolerance * max(ours, usd_cents):
        return (f"declared ${usd_cents / 100:,.2f} but {amount} units of {asset} are worth ${ours / 100:,.2f} "
                f"at our price (beyond risk.price_tolerance={tolerance:g})")
    return None
