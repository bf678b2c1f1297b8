"""Shared helpers of test_rfp, for it and other tests (a test module imports no other test module)."""

from __future__ import annotations

import os
import random
from node.assets.prices import StaticPrices
from node.stores.offerbook import OfferBook
from node.peerkey import PeerSigner
from node.protocols.offers import Offer, SheetBody, offers_root
from node.protocols.rfp import (
    RfpProtocol,
)
from node.risk.allocate import Limits
from node.risk.classes import ClassRegistry
from node.risk.engine import RiskEngine
from node.attest.binding import Binding


NET = "testnet"
NOW = 1_000.0
OUR_PRICES = StaticPrices({"BTC": "500000"})  # the nodes' own price: a 10,000-unit chunk is worth $50


def key33(i: int) -> bytes:
    return bytes([2]) + i.to_bytes(32, "big")


def sheets(origins: int = 6, per: int = 8):
    """Bodies of ``origins`` nodes, each one device with ``per`` $45..$55 chunks."""
    out = []
    for o in range(origins):
        offers = [Offer("BTC-REG", f"addr{o}-{i}", key33(1000 * o + i), 10_000, 4_500 + 150 * ((o + i) % 7),
                        "50000", NOW, NOW + 3_600) for i in range(per)]
        out.append(SheetBody(1, NET, f"origin{o}", 1, NOW, offers, [], offers_root(offers), b"q",
                             Binding(NET, f"origin{o}", key33(900_000 + o), key33(800_000 + o))))
    return out


def node(classes: ClassRegistry | None = None, seed: bytes | None = None, **kw):
    signer = PeerSigner(seed or os.urandom(32))
    book = OfferBook(None)
    for body in sheets():
        book.apply_sheet(body, now=NOW)
    engine = RiskEngine(book, classes=classes, limits=Limits(3, 0.34, 0.5))
    prices = kw.pop("prices", OUR_PRICES)
    kw.setdefault("rng", random.Random(seed))  # request ids, hence who is drawn: replayable (unseeded, 1 run in
    # ~500 drew no peer at all in test_a_request_draws_about_the_target_after_the_first)
    proto = RfpProtocol(net=NET, engine=engine, sign=signer.sign, **kw)
    proto.prices = prices
    return signer, proto
