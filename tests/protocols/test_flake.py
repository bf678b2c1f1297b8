"""Load-dependent failures found by the demo and the functional tests, replayed deterministically.

Each test drives the sans-IO protocol with the interleaving that failed under load (see the module's
functions for the exact story) and fails on the code before the fix.
"""

from __future__ import annotations

from node.offerbook import OfferBook
from node.protocols.base import Notify, Publish, SetTimer, TimerFired
from node.protocols.offers import OffersProtocol, OwnSheet, decode_sheet
from node.tee.client import EnclaveRefused

from tests.protocols.test_offers import NET, NOW, Vault, cache, make_offers


def test_a_refused_republish_keeps_the_republish_timer_and_later_carries_the_retraction(tmp_path):
    """demo stage 7 timed out: "bob's book holding alice's one BTC-REG chunk left". alice's republish timer
    fired while her escrowed chunk was committed to the open escrow contract (still in her sheet until its
    release); her enclave rightly refused to sign a sheet offering a committed key (I4). The refusal escaped
    ``handle``, the driver dropped the event, and with it the timer's re-arm: alice never re-announced again,
    and the retraction of the released chunk (queued for the next sheet) never left her node."""
    v = Vault("12D3KooFlakeAlice", n=3, seed=b"f")
    refusing = {"on": False}

    def sign(body: bytes, pubs: list[bytes]) -> bytes:
        if refusing["on"] and v.keys[0] in pubs:  # what the enclave answers while key 0 is committed
            raise EnclaveRefused(f"item 0: key {v.keys[0].hex()[:16]}... is committed to open contract "
                                 "b06757afc451333b...; it is not offered", "committed")
        return v.enc.sign_offer_sheet(body, pubs)

    p = OffersProtocol(net=NET, book=OfferBook(tmp_path / "book.sqlite"), attestations=cache(),
                       republish_interval=2.0)
    p.local_peer = v.peer
    own = OwnSheet(make_offers(v.keys), [], v.quote, v.binding, sign, committed=v.keys)
    first = p.set_own_sheet(own, NOW)
    assert any(isinstance(c, Publish) for c in first)
    refusing["on"] = True  # key 0 committed to the escrow; the republish timer fires now
    cmds = p.handle(TimerFired("offers.republish"), NOW + 2)
    timers = [c for c in cmds if isinstance(c, SetTimer) and c.name == "offers.republish"]
    assert timers and timers[0].at <= NOW + 2 + 2.0, cmds  # retried soon: the commitment is transient
    assert any(isinstance(c, Notify) and "committed" in str(c.detail) for c in cmds), cmds
    assert not any(isinstance(c, Publish) for c in cmds)
    # the escrow released key 0: the desk drops it from the sheet and queues its retraction (_retract_pub)
    refusing["on"] = False
    own.offers = [o for o in own.offers if o.pubkey != v.keys[0]]
    own.retracted.append(v.keys[0])
    cmds = p.handle(TimerFired("offers.republish"), timers[0].at)
    pubs = [c for c in cmds if isinstance(c, Publish)]
    assert pubs, cmds
    assert any(isinstance(c, SetTimer) and c.name == "offers.republish" for c in cmds)
    _, body = decode_sheet(pubs[0].data)
    assert [bytes(k) for k in body.retracted] == [v.keys[0]] and len(body.offers) == 2
