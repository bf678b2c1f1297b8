"""Hostile and honest offer-gossip nodes with their own simulated enclaves, and a receiving ``OffersProtocol``
fed as gossip delivers (``validate`` first): the offer attacks' kit (test_offers.py, test_prices.py,
tests/assets/test_feed_daemon.py)."""

from __future__ import annotations

from node.stores.offerbook import OfferBook
from node.protocols.base import GossipReceived, Result, Started
from node.protocols.offers import (
    ADDRESSES, Offer, OffersProtocol, AttestationCache, build_sheet, default_attestation_verifier,
)
from node.tee.client import InProcessEnclave
from node.attest.policy import AttestationPolicy
from tests.sheetbody import broken_tee_sign


NET = "dev"
NOW = 1_800_000_000.0
ASSET = "BTC-REG"  # priced like BTC: 100,000 USD a coin at the default static prices


def offers_of(keys, *, expiry=NOW + 3600, amount=50_000, usd_cents=5000, bump=0):
    """Offers of ``keys`` at their own addresses (50,000 sat = $50 at $100,000 a coin)."""
    return [Offer(ASSET, ADDRESSES(ASSET, pk, 0), pk, amount + bump, usd_cents, "100000", NOW, expiry)
            for pk in keys]


class Node:
    """A node with its own simulated enclave: keys it generated, quotes over bindings it chooses."""

    def __init__(self, name: str, *, keys: int = 3, seed: bytes) -> None:
        self.enc = InProcessEnclave(seed=seed * 32)
        self.keys = self.enc.generate_keys(keys)
        self.peer = f"12D3Koo{name}"
        self.binding = self.enc.binding_for(NET, self.peer)
        self.quote = self.enc.quote(self.binding, now=NOW)

    def sheet(self, offers, *, seq=1, now=NOW, peer=None, binding=None, quote=None, hostile=False):
        """A sheet signed by this node's enclave. ``hostile``: signed with the extracted signing key."""
        sign = (lambda body, keys: broken_tee_sign(self.enc, body)) if hostile else self.enc.sign_offer_sheet
        return build_sheet(net=NET, origin=peer or self.peer, seq=seq, now=now, offers=offers, retracted=[],
                           quote=quote or self.quote, binding=binding or self.binding, sign=sign)

    def as_peer(self, peer: str):
        """A binding naming another peer id, and this enclave's quote over it."""
        b = self.enc.binding_for(NET, peer)
        return b, self.enc.quote(b, now=NOW)


def receiver(**kw) -> OffersProtocol:
    p = OffersProtocol(net=NET, book=OfferBook(None), attestations=AttestationCache(
        default_attestation_verifier(AttestationPolicy.dev())), pull=False, **kw)
    p.handle(Started("12D3KooReceiver"), NOW)
    return p


def gossip(p: OffersProtocol, data: bytes, now=NOW, from_peer="12D3KooRelay"):
    """What a gossipsub driver does with a message: validate, and hand only an ACCEPTed one to ``handle``."""
    v = p.validate(p.topic, data, from_peer, now)
    if v.result is Result.ACCEPT:
        p.handle(GossipReceived(p.topic, data, from_peer), now)
    return v


def book_rows(p: OffersProtocol, now=NOW):
    return p.book.rows(now=now, limit=10_000)
