"""Simulated enclaves (``Vault``) that sign offer sheets, their offers, and a fresh attestation cache: the
offers protocol tests' kit (test_offers.py, test_offers_pull.py, test_flake.py)."""

from __future__ import annotations

from node.protocols.offers import ADDRESSES, AttestationCache, Offer, build_sheet, default_attestation_verifier
from node.tee.client import InProcessEnclave
from node.attest.policy import AttestationPolicy


NET = "dev"
NOW = 1_800_000_000.0


def make_offers(pubkeys, expiry=NOW + 3600):
    """Offers of the keys at their default (P2WPKH) addresses: the only addresses a sheet can carry are
    its keys' own, which every receiver derives itself."""
    return [Offer("BTC-REG", ADDRESSES("BTC-REG", pk, 0), pk, 50_000 + i, 5000, "100000.00", NOW, expiry)
            for i, pk in enumerate(pubkeys)]


class Vault:
    def __init__(self, peer: str, n: int = 3, seed: bytes = b"a"):
        self.enc = InProcessEnclave(seed=seed * 32 if len(seed) == 1 else seed)
        self.keys = self.enc.generate_keys(n)
        self.peer = peer
        self.binding = self.enc.binding_for(NET, peer)
        self.quote = self.enc.quote(self.binding, now=NOW)

    def sheet(self, seq=1, offers=None, **kw):
        args = dict(net=NET, origin=self.peer, seq=seq, now=NOW, offers=make_offers(self.keys) if offers is None else offers,
                    retracted=[], quote=self.quote, binding=self.binding, sign=self.enc.sign_offer_sheet,
                    committed=self.keys)  # the keys the binding's keys_root commits to
        args.update(kw)
        return build_sheet(**args)


def cache():
    return AttestationCache(default_attestation_verifier(AttestationPolicy.dev()))
