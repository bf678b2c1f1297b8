"""Attacks on offer gossip, driven as a hostile node would drive them.

Every hostile sheet here is made by a hostile node with its own real (simulated) enclave: its own keys, its
own quotes over bindings it chose, its enclave's signature. A hostile host asks its enclave to sign body
bytes and lists no deposit key (``sign_offer_sheet(body, [])``): the enclave of the base commit signed that;
the enclave now reads the keys the body offers and refuses (I4). The receiver's checks stay for a broken TEE:
``hostile`` sheets are signed with the device's signing key as an attacker who extracted it would sign them.
The bytes go to the receiver's ``OffersProtocol`` as gossip delivers them: ``validate`` first, and only an
ACCEPTed message reaches ``handle`` (a ``GossipReceived``) and the book.
"""

from __future__ import annotations

import math

import pytest

from node import wire
from node.stores.offerbook import OfferBook, device_id_of
from node.protocols.base import Result
from node.protocols.offers import SheetsAsk, SignedSheet, SheetWire, answer_pull, build_sheet, read_answer
from node.attest.policy import AttestationPolicy
from node.tee.client import EnclaveRefused
from tests.sheetbody import broken_tee_sign, sheet_body
from tests.adversarial.offerkit import ASSET, NET, NOW, Node, book_rows, gossip, offers_of, receiver


@pytest.fixture(scope="module")
def alice():
    return Node("Alice", seed=b"a")


@pytest.fixture(scope="module")
def mallory():
    return Node("Mallory", seed=b"m")


# ------------------------------------------------------------------ 6. offer hijack
def test_a_node_republishing_another_devices_offers_is_rejected_and_the_book_keeps_them_its_owners(alice, mallory):
    p = receiver()
    assert gossip(p, alice.sheet(offers_of(alice.keys))).result is Result.ACCEPT
    # Mallory copies Alice's offers (same keys, amounts, expiry: the same offer ids) into her own sheet, under
    # her own genuine quote; her host has her enclave sign it listing no key, which the enclave refuses (I4)
    with pytest.raises(EnclaveRefused) as exc:
        mallory.enc.sign_offer_sheet(sheet_body(alice.keys, binding=mallory.binding), [])
    assert exc.value.code == "unknown-key"
    # with her TEE broken (its signing key extracted), the receivers still reject it
    v = gossip(p, mallory.sheet(offers_of(alice.keys), hostile=True))
    assert v.result is Result.REJECT and "not in the device's attested key commitment" in v.reason, v
    rows = book_rows(p)
    assert len(rows) == 3 and {r["origin"] for r in rows} == {alice.peer}
    assert {r["device_id"] for r in rows} == {device_id_of(alice.binding.sign_pub).hex()}


def test_one_origins_sheet_never_takes_over_another_origins_rows_in_the_book(alice, mallory):
    """Below validation: even a sheet that reached the book could not take over another origin's rows."""
    from node.protocols.offers import decode_sheet

    book = OfferBook(None)
    _, honest = decode_sheet(alice.sheet(offers_of(alice.keys)))
    _, hostile = decode_sheet(mallory.sheet(offers_of(alice.keys), hostile=True))
    book.apply_sheet(honest, now=NOW)
    book.apply_sheet(hostile, now=NOW)
    mine = [r for r in book.rows(now=NOW) if r["origin"] == alice.peer]
    assert len(mine) == 3, book.rows(now=NOW)
    # Mallory's next sheet drops the copies: Alice's rows stay
    _, empty = decode_sheet(mallory.sheet(offers_of(mallory.keys), seq=2))
    book.apply_sheet(empty, now=NOW)
    assert len([r for r in book.rows(now=NOW) if r["origin"] == alice.peer]) == 3


# ------------------------------------------------------------------ 7. one device, unlimited origins
def test_one_device_publishing_under_many_peer_ids_gets_at_most_the_cap_of_origins(mallory):
    p = receiver()
    results = []
    for i in range(6):
        peer = f"12D3KooMallorySybil{i}"
        b, q = mallory.as_peer(peer)
        results.append(gossip(p, mallory.sheet(offers_of(mallory.keys, bump=i), peer=peer, binding=b, quote=q)))
    assert [r.result for r in results[:2]] == [Result.ACCEPT] * 2
    assert all(r.result is Result.IGNORE and "origins per device" in r.reason for r in results[2:]), results
    assert len({r["origin"] for r in book_rows(p)}) == 2
    assert p.reasons["ignore"]["origins per device"] == 4


def test_one_devices_origins_never_push_other_devices_sheets_out_of_the_pull_store(alice, mallory):
    bob = Node("Bob", seed=b"b")
    p = receiver()
    p.sheets.max_origins = 3  # a small store: three sheets
    honest = [alice.sheet(offers_of(alice.keys)), bob.sheet(offers_of(bob.keys))]
    for data in honest:
        assert gossip(p, data).result is Result.ACCEPT
    for i in range(2):  # within the origin cap, each accepted
        peer = f"12D3KooMallorySybil{i}"
        b, q = mallory.as_peer(peer)
        assert gossip(p, mallory.sheet(offers_of(mallory.keys, bump=i), peer=peer, binding=b, quote=q)).result \
            is Result.ACCEPT
    why, served = read_answer(answer_pull(wire.encode(SheetsAsk(1, NET, 256, 1 << 20)), net=NET, own=None,
                                          store=p.sheets), net=NET)
    assert why == "" and all(h in served for h in honest), "an honest sheet was evicted by Mallory's origins"


def test_an_offer_expiring_beyond_the_offer_lifetime_is_rejected(mallory):
    p = receiver()
    for expiry in (1e15, NOW + 30 * 86_400):
        v = gossip(p, mallory.sheet(offers_of(mallory.keys, expiry=expiry), seq=int(expiry)))
        assert v.result is Result.REJECT, (expiry, v)
    assert book_rows(p) == []


# ------------------------------------------------------------------ 8. out-of-range values
@pytest.mark.parametrize("what", ["amount", "usd_cents", "seq", "issued_at"])
def test_out_of_range_values_are_rejected_at_decode_and_never_forwarded_or_booked(mallory, what):
    p = receiver()
    offers, seq, now = offers_of(mallory.keys), 1, NOW
    if what == "amount":
        offers = offers_of(mallory.keys, amount=1 << 63)
    elif what == "usd_cents":
        offers = offers_of(mallory.keys, usd_cents=1 << 63)
    elif what == "seq":
        seq = 1 << 63
    else:
        now = math.nan
    data = mallory.sheet(offers, seq=seq, now=now)
    v = gossip(p, data)  # an exception here is the traceback every receiver logged
    assert v.result is Result.REJECT and "malformed" in v.reason, v
    assert book_rows(p) == []


def test_a_1e15_expiry_or_nan_time_cannot_even_be_decoded(mallory):
    data = mallory.sheet(offers_of(mallory.keys, expiry=1e15))
    with pytest.raises(wire.WireError):
        wire.decode(wire.decode(data, SignedSheet).body, SheetWire)


# ------------------------------------------------------------------ first-sight validation budget
def test_a_device_reissuing_fresh_sheets_is_ignored_once_over_its_validation_budget(alice):
    whale = Node("Whale", keys=100, seed=b"w")
    p = receiver()
    results = [gossip(p, whale.sheet(offers_of(whale.keys, expiry=NOW + 3600 + i), seq=i + 1)) for i in range(40)]
    over = [r for r in results if r.result is Result.IGNORE]
    assert over and all("validation budget" in r.reason for r in over), [r.reason for r in results[-3:]]
    assert p.reasons["ignore"]["validation budget"] == len(over)
    # another device is not held back by the whale's budget
    assert gossip(p, alice.sheet(offers_of(alice.keys))).result is Result.ACCEPT
    # a minute later the whale's budget has refilled
    assert gossip(p, whale.sheet(offers_of(whale.keys, expiry=NOW + 9000), seq=100, now=NOW + 60),
                  now=NOW + 60).result is Result.ACCEPT


# ------------------------------------------------------------------ 4. declared USD against our own price
def test_offers_declaring_a_usd_value_our_price_disagrees_with_are_not_booked_and_counted(mallory):
    from node.assets.prices import StaticPrices

    p = receiver(prices=StaticPrices(), price_tolerance=0.10)
    k = mallory.keys
    offers = (offers_of(k[:1], usd_cents=50_000)  # 50,000 sat declared $500: worth $50 at our price
              + offers_of(k[1:2], usd_cents=500)  # declared $5: worth $50
              + offers_of(k[2:], usd_cents=5200))  # $52 for $50: within 10%
    assert gossip(p, mallory.sheet(offers)).result is Result.ACCEPT  # the sheet is valid; its prices are ours
    rows = book_rows(p)
    assert [r["usd_cents"] for r in rows] == [5200]
    assert p.reasons["ignore_offer"]["usd value disagrees with our price"] == 2


def test_the_commitment_cannot_be_padded_or_bent_and_an_honest_subset_passes(alice, mallory):
    """Mallory offers one of Alice's keys and lists her own held keys as ``unoffered``; or lists them out of
    order, twice, or not at all: each is REJECTed. Alice offering two of her three keys, with the third as
    ``unoffered``, is ACCEPTed."""
    import msgspec

    from node.protocols.offers import decode_sheet, encode_body, offers_root

    def signed(node, body):  # a broken TEE: whatever body, signed with the extracted signing key
        b = encode_body(body)
        return wire.encode(SignedSheet(b, broken_tee_sign(node.enc, b)))

    _, base = decode_sheet(mallory.sheet(offers_of(mallory.keys[:1]), hostile=True))
    rest = sorted(mallory.keys[1:])
    cases = {
        "not in the device's attested key commitment": dict(offers=offers_of(alice.keys[:1]),
                                                             unoffered=sorted(mallory.keys)),
        "out of order or listed twice": dict(unoffered=[rest[1], rest[0]]),
        "listed twice": dict(unoffered=[rest[0], rest[0], rest[1]]),
        "not a compressed secp256k1 key": dict(unoffered=[b"\x05" * 33]),
        "do not hash to the quote's keys_root": dict(unoffered=[]),
    }
    for want, change in cases.items():
        body = msgspec.structs.replace(base, **change)
        body = msgspec.structs.replace(body, offers_root=offers_root(body.offers))
        v = gossip(receiver(), signed(mallory, body))
        assert v.result is Result.REJECT and want in v.reason, (want, v)
    honest = build_sheet(net=NET, origin=alice.peer, seq=1, now=NOW, offers=offers_of(alice.keys[:2]), retracted=[],
                         quote=alice.quote, binding=alice.binding, sign=alice.enc.sign_offer_sheet,
                         committed=alice.keys)
    p = receiver()
    assert gossip(p, honest).result is Result.ACCEPT and len(book_rows(p)) == 2


def test_one_key_offered_under_two_origins_of_its_device_is_one_candidate(mallory):
    """Within the origin cap a device may publish the same keys under two origins: the book keeps both origins'
    rows (neither takes over the other's) but the risk engine sees each key once."""
    p = receiver()
    for i in range(2):
        peer = f"12D3KooMallorySybil{i}"
        b, q = mallory.as_peer(peer)
        assert gossip(p, mallory.sheet(offers_of(mallory.keys), peer=peer, binding=b, quote=q)).result \
            is Result.ACCEPT
    assert len(book_rows(p)) == 2 * len(mallory.keys)
    cands = p.book.candidates(ASSET, now=NOW)
    assert len(cands) == len(mallory.keys) == len({c.address for c in cands})
    assert len(p.book.candidates(ASSET, now=NOW, limit=2)) == 2


def test_the_validation_budget_is_a_token_bucket_per_device():
    from node.protocols.offers import DeviceBudget

    b = DeviceBudget(per_minute=600, max_devices=2)
    assert b.take(b"d1", 600, NOW) == "" and "validation budget" in b.take(b"d1", 1, NOW)
    assert b.take(b"d2", 600, NOW) == ""  # another device has its own bucket
    assert b.take(b"d1", 100, NOW + 10) == "" and b.take(b"d1", 1, NOW + 10) != ""  # 10 per second refill
    assert b.take(b"d1", 1000, NOW + 120) == ""  # more than the budget: passes on a full bucket, empties it
    assert b.take(b"d1", 1, NOW + 120) != ""
    assert b.take(b"d3", 1, NOW + 120) == "" and len(b._buckets) <= 2  # bounded: a full bucket is forgotten
    with pytest.raises(ValueError, match="validation budget"):
        DeviceBudget(per_minute=0)


# ------------------------------------------------------------------ the attestation cache
def test_a_quote_gone_stale_is_refused_by_a_receiver_that_trusted_it_as_by_a_fresh_one(alice):
    """A device keeps sending the quote a receiver verified once, past the policy's ``max_quote_age``: the
    receiver that cached the verdict refuses it as a receiver seeing it for the first time does (on the base
    commit the cached verdict let the device's sheets in for ever)."""
    from node.protocols.offers import ATTESTATION_RECHECK

    later = NOW + AttestationPolicy.dev().max_quote_age + ATTESTATION_RECHECK
    old = receiver()
    assert gossip(old, alice.sheet(offers_of(alice.keys))).result is Result.ACCEPT
    again = alice.sheet(offers_of(alice.keys, expiry=later + 3600), seq=2, now=later)  # the same quote, stale now
    fresh = gossip(receiver(), again, now=later)
    assert fresh.result is Result.REJECT and "quote-stale" in fresh.reason
    v = gossip(old, again, now=later)
    assert (v.result, v.reason) == (fresh.result, fresh.reason)
    assert old.book.latest_seq(alice.peer) == 1  # the first sheet stays; nothing of the stale one is booked
    # within the recheck interval the cached verdict still stands (no verification per sheet)
    p = receiver()
    assert gossip(p, alice.sheet(offers_of(alice.keys))).result is Result.ACCEPT
    n = p.attestations.verifications
    soon = NOW + ATTESTATION_RECHECK / 2
    assert gossip(p, alice.sheet(offers_of(alice.keys), seq=3, now=soon), now=soon).result is Result.ACCEPT
    assert p.attestations.verifications == n


def test_a_replayed_sheet_with_a_stale_quote_does_not_get_the_honest_device_refused(alice, mallory):
    """Mallory keeps an honest device's old sheet and replays it to a receiver once its quote is past the
    policy's ``max_quote_age``: the sheet is rejected (and Mallory's score drops), but the device's own sheets
    with a fresh quote are still accepted (on the base commit the stale quote got the device refused for
    good: "device already refused")."""
    later = NOW + AttestationPolicy.dev().max_quote_age + 1
    p = receiver()
    replay = alice.sheet(offers_of(alice.keys))  # made at NOW, with the quote of NOW
    v = gossip(p, replay, now=later, from_peer=mallory.peer)
    assert v.result is Result.REJECT and "quote-stale" in v.reason
    n = p.attestations.verifications
    assert gossip(p, replay, now=later + 1).result is Result.REJECT  # the stale quote is not verified twice
    assert p.attestations.verifications == n
    fresh_quote = alice.enc.quote(alice.binding, now=later)
    own = alice.sheet(offers_of(alice.keys, expiry=later + 3600), seq=2, now=later, quote=fresh_quote)
    v = gossip(p, own, now=later)
    assert v.result is Result.ACCEPT, v.reason
    assert p.book.latest_seq(alice.peer) == 2
