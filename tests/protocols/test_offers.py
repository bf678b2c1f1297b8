"""Offer sheets: building, every validation outcome, the protocol over an in-memory net, the book."""

import dataclasses

import pytest
from coincurve import PrivateKey

from node import wire
from node.stores.offerbook import OfferBook, device_id_of
from node.protocols.base import Result
from node.protocols.offers import MAX_CLOCK_SKEW, MAX_OFFER_LIFETIME, MAX_SHEET_SIZE, AddressDeriver, AttestationCache, Entry, Offer, OffersProtocol, OfferTable, OwnSheet, SheetBody, SheetWire, SignedSheet, Terms, decode_sheet, default_attestation_verifier, encode_body, merkle_root, offer_id, validate_sheet
from node.protocols.testing import GossipNet
from node.tee.client import EnclaveRefused
from node.attest.policy import AttestationPolicy
from tests.sheetbody import broken_tee_sign
from tests.protocols.offerkit import NET, NOW, Vault, cache, make_offers


@pytest.fixture(scope="module")
def alice():
    return Vault("12D3KooAlice", seed=b"a")


@pytest.fixture(scope="module")
def bob():
    return Vault("12D3KooBob", seed=b"b")


def check(data, latest=None, attest=None, now=NOW):
    v, _ = validate_sheet(data, net=NET, now=now, latest_seq=lambda o: (latest or {}).get(o),
                          attestations=attest or cache())
    return v


def resign(vault, body: SheetBody) -> bytes:
    b = encode_body(body)
    return wire.encode(SignedSheet(b, vault.enc.sign_offer_sheet(b, [o.pubkey for o in body.offers])))


def wire_body(data: bytes) -> SheetWire:
    return wire.decode(wire.decode(data, SignedSheet).body, SheetWire)


def resign_wire(vault, w: SheetWire) -> bytes:
    """A sheet whose body is ``w`` as given (however malformed its table), signed by ``vault``'s enclave."""
    b = wire.encode(w)
    return wire.encode(SignedSheet(b, vault.enc.sign_offer_sheet(b, [e.pubkey for e in w.offers.entries])))


def test_valid_sheet_is_accepted_and_round_trips(alice):
    data = alice.sheet()
    assert check(data).result is Result.ACCEPT
    _, body = decode_sheet(data)
    assert body.offers_root == merkle_root([offer_id(o) for o in body.offers]) and len(body.offers) == 3


def test_every_reject_reason(alice, bob):
    good = alice.sheet()
    signed, body = decode_sheet(good)
    assert "over size" in check(b"\x00" * (MAX_SHEET_SIZE + 1)).reason
    assert check(b"\x92\xc4\x01").reason.startswith("malformed")
    # wrong network: re-encoded and re-signed by the genuine enclave, so only the net is wrong
    v = check(resign(alice, msgspec_replace(body, net="main")))
    assert v.result is Result.REJECT and "wrong network" in v.reason
    old = wire.encode(msgspec_replace(wire_body(good), version=1))  # the old, verbose form: no enclave signs it
    with pytest.raises(EnclaveRefused, match="sheet-unreadable"):
        alice.enc.sign_offer_sheet(old, alice.keys)
    v = check(wire.encode(SignedSheet(old, broken_tee_sign(alice.enc, old))))
    assert v.result is Result.REJECT and "unsupported sheet version 1" in v.reason
    # origin not the bound peer id (a node replaying another's attestation under its own name)
    v = check(resign(alice, msgspec_replace(body, origin="12D3KooMallory")))
    assert v.result is Result.REJECT and "peer id not bound" in v.reason
    # offers_root that does not match
    v = check(resign(alice, msgspec_replace(body, offers_root=b"\x11" * 32)))
    assert v.result is Result.REJECT and "offers_root" in v.reason
    # bad signature: Bob's enclave signature on Alice's sheet
    v = check(wire.encode(SignedSheet(signed.body, bob.enc.sign(domain="outcome", digest32=b"\x00" * 32))))
    assert v.result is Result.REJECT and v.reason == "bad signature"
    # a key listed twice
    dup = body.offers + [body.offers[0]]
    v = check(resign(alice, msgspec_replace(body, offers=dup, offers_root=merkle_root([offer_id(o) for o in dup]))))
    assert v.result is Result.REJECT and "twice" in v.reason
    # the same tampered body under the original signature: refused on the signature, before any per-offer work
    deriver = AddressDeriver()
    tampered = wire.encode(SignedSheet(encode_body(msgspec_replace(
        body, offers=dup, offers_root=merkle_root([offer_id(o) for o in dup]))), signed.sig))
    v, _ = validate_sheet(tampered, net=NET, now=NOW, latest_seq=lambda o: None, attestations=cache(),
                          addresses=deriver)
    assert v.result is Result.REJECT and v.reason == "bad signature"
    assert deriver.hits == deriver.misses == 0
    # Bob's quote with Alice's binding: the quote does not commit to this binding
    forged = msgspec_replace(body, quote=bob.quote)
    v = check(resign(alice, forged))
    assert v.result is Result.REJECT and "untrusted or forged quote" in v.reason


def msgspec_replace(body, **changes):
    import msgspec

    return msgspec.structs.replace(body, **changes)


def test_ignore_reasons(alice):
    data = alice.sheet(seq=5)
    assert "duplicate" in check(data, latest={alice.peer: 5}).reason
    v = check(data, latest={alice.peer: 9})
    assert v.result is Result.IGNORE and "stale" in v.reason
    v = check(alice.sheet(seq=6, now=NOW + 3600))
    assert v.result is Result.IGNORE and "future" in v.reason
    v = check(alice.sheet(seq=7, offers=make_offers(alice.keys, expiry=NOW - 1)))
    assert v.result is Result.IGNORE and "expired" in v.reason


def test_attestation_is_verified_once_per_device_and_failures_are_remembered(alice, bob):
    c = cache()
    for seq in range(1, 6):
        assert check(alice.sheet(seq=seq), attest=c).result is Result.ACCEPT
    assert c.verifications == 1
    _, body = decode_sheet(bob.sheet())
    bad = resign(bob, msgspec_replace(body, quote=alice.quote))
    assert check(bad, attest=c).result is Result.REJECT
    n = c.verifications
    v = check(bob.sheet(seq=2), attest=c)  # even a correct sheet from that device now: remembered
    assert v.result is Result.REJECT and "already refused" in v.reason and c.verifications == n


def test_a_non_allowed_build_is_rejected(alice):
    strict = AttestationCache(default_attestation_verifier(
        dataclasses.replace(AttestationPolicy.dev(), allowed_measurements=frozenset({"00" * 32}))))
    v = check(alice.sheet(), attest=strict)
    assert v.result is Result.REJECT and "measurement" in v.reason


def test_protocol_over_in_memory_net_fills_every_book_and_retracts(tmp_path):
    net = GossipNet()
    vaults = [Vault(f"12D3KooN{i}", n=4, seed=bytes([65 + i])) for i in range(4)]
    protos, books = [], []
    for i, v in enumerate(vaults):
        book = OfferBook(tmp_path / f"book{i}.sqlite")
        p = OffersProtocol(net=NET, book=book, attestations=cache())
        protos.append(p)
        books.append(book)
        net.add(v.peer, p, now=NOW)
    for v, p in zip(vaults, protos):
        own = OwnSheet(make_offers(v.keys), [], v.quote, v.binding, v.enc.sign_offer_sheet)
        net.call(v.peer, p, p.set_own_sheet(own, NOW), NOW)
    for i, book in enumerate(books):
        assert book.count(now=NOW) == 12, i  # 3 other nodes x 4 offers
    # node 0 retracts one key: the next sheet leaves it out
    v0, p0 = vaults[0], protos[0]
    own = OwnSheet(make_offers(v0.keys[1:]), [v0.keys[0]], v0.quote, v0.binding, v0.enc.sign_offer_sheet,
                   committed=v0.keys)  # the retracted key is still in the attested commitment
    net.call(v0.peer, p0, p0.set_own_sheet(own, NOW + 1), NOW + 1)
    assert books[1].count(now=NOW + 1) == 11
    cands = books[1].candidates("BTC-REG", now=NOW + 1)
    assert len(cands) == 11
    assert {c.device_id for c in cands} == {device_id_of(v.binding.sign_pub) for v in vaults if v is not vaults[1]}
    assert {c.owner_id for c in cands} == {v.peer for v in vaults if v.peer != vaults[1].peer}
    # republish timer fires and re-sends a newer sheet, which peers accept
    n_pub = len(net.published)
    net.advance(NOW + 61)
    assert len(net.published) == n_pub + 4
    assert all(r.result is Result.ACCEPT for _, r in net.peers[vaults[1].peer].validations[-3:])
    # expiry drops offers out of queries; the book persists across a restart
    assert books[1].count(now=NOW + 7200) == 0
    books[1].close()
    again = OfferBook(tmp_path / "book1.sqlite")
    assert again.count(now=NOW + 1) == 11 and again.latest_seq(v0.peer) is not None
    assert again.purge_expired(NOW + 7200) == 11


def test_garbage_never_raises():
    from hypothesis import given, settings, strategies as st

    c = cache()

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2048))
    def run(data):
        v, _ = validate_sheet(data, net=NET, now=NOW, latest_seq=lambda o: None, attestations=c)
        assert v.result is Result.REJECT

    run()


def test_addresses_do_not_travel_and_a_sheet_can_carry_only_its_keys_own(alice):
    from node.assets import address_for

    # every address kind of every kind of asset round-trips: the entry says the kind, the receiver derives
    k = alice.keys
    offers = [msgspec_replace(make_offers(k[:1])[0], address=address_for("BTC-REG", k[0], kind="p2pkh")),
              msgspec_replace(make_offers(k[1:2])[0], asset="DOGE", address=address_for("DOGE", k[1])),
              msgspec_replace(make_offers(k[2:3])[0], asset="ETH-DEV", address=address_for("ETH-DEV", k[2]))]
    data = alice.sheet(seq=11, offers=offers)
    assert [e.kind for e in wire_body(data).offers.entries] == [1, 0, 0]
    assert all(o.address.encode() not in data for o in offers)
    v, body = validate_sheet(data, net=NET, now=NOW, latest_seq=lambda o: None, attestations=cache())
    assert v.result is Result.ACCEPT and body.offers == offers
    # an address that is not one of the key's cannot be put in a sheet at all
    wrong = [msgspec_replace(offers[0], address=address_for("BTC-REG", k[1]))]
    with pytest.raises(ValueError, match="not derived from the offered deposit key"):
        alice.sheet(seq=12, offers=wrong)
    with pytest.raises(ValueError, match="unknown asset"):
        alice.sheet(seq=12, offers=[msgspec_replace(offers[0], asset="XYZ")])


def test_every_malformed_offer_table_is_rejected_with_its_reason(alice):
    good = wire_body(alice.sheet(seq=1))
    t, es = good.offers.terms, good.offers.entries
    t2 = msgspec_replace(t[0], expiry=NOW + 7200)

    def table(terms, entries):  # signed with the device's key (the enclave refuses a table offering keys it lacks)
        body = wire.encode(msgspec_replace(good, offers=OfferTable(terms, entries)))
        v = check(wire.encode(SignedSheet(body, broken_tee_sign(alice.enc, body))))
        assert v.result is Result.REJECT
        return v.reason

    not_a_point = b"\x02" + b"\x00" * 32  # 33 bytes, prefix right, x = 0 is not on the curve
    cases = {
        "the same terms listed twice": table([t[0], t[0]], [es[0], msgspec_replace(es[1], terms=1), es[2]]),
        "terms 1 not the next unused": table([t[0], t2], [msgspec_replace(es[0], terms=1), es[1], es[2]]),
        "terms 2 not the next unused": table([t[0]], [es[0], msgspec_replace(es[1], terms=2), es[2]]),
        # out of the wire range: refused at decode (wire ranges)
        "malformed OfferTable: Expected `int` >= 0": table([t[0]], [msgspec_replace(es[0], terms=-1), es[1], es[2]]),
        "1 terms listed but not used": table([t[0], t2], es),
        "Expected `float` >= 0.0": table(  # NaN: out of the wire range, refused at decode
            [msgspec_replace(t[0], expiry=float("nan"))], es),
        "offer 0: address kind 2 out of range": table(t, [msgspec_replace(es[0], kind=2)] + es[1:]),
        "malformed OfferTable: Expected `int` >= 0 - at `$[1][0][1]`": table(t, [msgspec_replace(es[0], kind=-1)]
                                                                           + es[1:]),
        "offer 1: unknown asset 'XYZ'": table([t[0], msgspec_replace(t[0], asset="XYZ")],
                                              [es[0], msgspec_replace(es[1], terms=1), es[2]]),
        "offer 2: pubkey is not a compressed": table(t, es[:2] + [msgspec_replace(es[2], pubkey=b"\x04" * 33)]),
        "offer 2: deposit key listed twice": table(t, es[:2] + [es[0]]),
        "Expected `int` >= 1 - at `$[1][1][4]`": table(  # usd_cents 0: out of the wire range
            t, [es[0], msgspec_replace(es[1], usd_cents=0)]),
        "Expected `array` of length <= 1000": table(t, [es[0]] * 1001),
    }
    for want, reason in cases.items():
        assert want in reason, (want, reason)
    assert table(t, [msgspec_replace(es[0], pubkey=not_a_point)]).startswith("offer 0: not a valid public key")


def test_address_deriver_remembers_only_what_it_derived_and_is_bounded(alice):
    d = AddressDeriver(max_entries=2)
    from node.assets import address_for

    for _ in range(2):
        assert [d("BTC-REG", k, 0) for k in alice.keys[:2]] == [address_for("BTC-REG", k) for k in alice.keys[:2]]
    assert (d.misses, d.hits) == (2, 2)
    assert d.kind_of("BTC-REG", alice.keys[0], address_for("BTC-REG", alice.keys[0], kind="p2pkh")) == 1
    assert len(d._known) == 2 and ("BTC-REG", alice.keys[0], 0) not in d._known  # the oldest went first
    # receivers share a deriver: the second sight of an origin's keys derives nothing
    shared = AddressDeriver()
    for seq in (1, 2):
        v, _ = validate_sheet(alice.sheet(seq=seq), net=NET, now=NOW, latest_seq=lambda o: None,
                              attestations=cache(), addresses=shared)
        assert v.result is Result.ACCEPT
    assert (shared.misses, shared.hits) == (3, 3)


def test_sheet_encoding_round_trips_deterministically_and_respects_size(alice):
    from hypothesis import given, settings, strategies as st

    from node.assets import address_for, address_kinds

    @st.composite
    def offer(draw, pub):
        asset = draw(st.sampled_from(["BTC-REG", "LTC", "DOGE", "ETH-DEV"]))
        kind = draw(st.sampled_from(address_kinds(asset)))
        # few distinct prices, times and expiries, so that offers share terms (and sometimes do not)
        return Offer(asset, address_for(asset, pub, kind=kind), pub, draw(st.integers(1, 2**62)),
                     draw(st.integers(1, 2**40)), draw(st.sampled_from(["0.01", "100000.00", "3125.5"])),
                     draw(st.sampled_from([0.0, NOW, 2e9])), draw(st.sampled_from([NOW + 1, NOW + 3600, 2e9])))

    @settings(max_examples=150, deadline=None)
    @given(st.permutations(alice.keys).flatmap(lambda ks: st.tuples(*[offer(k) for k in ks])).flatmap(
        lambda offs: st.integers(1, 3).map(lambda n: list(offs[:n]))), st.integers(0, 2**62))
    def run(offs, seq):
        data = alice.sheet(seq=seq, offers=offs)
        signed, body = decode_sheet(data)
        assert wire.encode(SignedSheet(signed.body, signed.sig)) == data  # the sent bytes are the signed bytes
        assert encode_body(body) == signed.body
        assert body.offers == offs and body.seq == seq
        w = wire_body(data)  # shared terms said once, in order of first use
        assert len(w.offers.terms) == len({(o.asset, o.price, o.price_at, o.expiry) for o in offs})
        assert alice.sheet(seq=seq, offers=offs)[:len(signed.body)] == data[:len(signed.body)]
        v = validate_sheet(data, net=NET, now=NOW, latest_seq=lambda o: None, attestations=cache())[0]
        if any(o.expiry > NOW + MAX_CLOCK_SKEW + MAX_OFFER_LIFETIME for o in offs):
            assert v.result is Result.REJECT and "expiry too far" in v.reason
        elif all(o.expiry <= NOW for o in offs):
            assert v.result is Result.IGNORE
        else:
            assert v.result is Result.ACCEPT, v

    run()
    # size limit: an over-size message is refused before it is decoded
    v, _ = validate_sheet(alice.sheet() + bytes(MAX_SHEET_SIZE), net=NET, now=NOW, latest_seq=lambda o: None,
                          attestations=cache())
    assert v.result is Result.REJECT and "over size" in v.reason
    # and the compact form: 100 offers of one asset and terms cost ~50 bytes each, the attestation ~450
    hundred = Vault("12D3KooHundred", n=100, seed=b"h")
    data = hundred.sheet(offers=make_offers(hundred.keys))
    assert len(data) < 100 * 55 + 600, len(data)


def test_structured_garbage_in_a_well_formed_sheet_never_raises(alice):
    """Any offer table inside an otherwise well-formed sheet yields a verdict, never an exception."""
    from hypothesis import given, settings, strategies as st

    good = wire_body(alice.sheet(seq=1))
    terms = st.builds(Terms, st.sampled_from(["BTC-REG", "ETH-DEV", "", "XYZ"]), st.text(max_size=5),
                      st.floats(allow_nan=True), st.floats(allow_nan=True))
    entries = st.builds(Entry, st.integers(-2, 3), st.integers(-2, 3),
                        st.one_of(st.sampled_from(alice.keys), st.binary(max_size=34)),
                        st.integers(-2**63, 2**64 - 1), st.integers(-2**63, 2**64 - 1))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(terms, max_size=3), st.lists(entries, max_size=4))
    def run(ts, es):
        data = wire.encode(SignedSheet(wire.encode(msgspec_replace(good, offers=OfferTable(ts, es))), bytes(64)))
        v, _ = validate_sheet(data, net=NET, now=NOW, latest_seq=lambda o: None, attestations=cache())
        assert v.result in (Result.REJECT, Result.IGNORE) and v.reason

    run()


def test_book_writes_only_the_difference_and_ends_as_a_full_replace_would(alice, bob):
    def rows(book):
        return sorted(tuple(r.items()) for r in book.rows(now=NOW, limit=1000))

    def body(vault, seq, offers, now=NOW):
        return decode_sheet(vault.sheet(seq=seq, offers=offers, now=now))[1]

    k = alice.keys
    steps = [make_offers(k), make_offers(k), make_offers(k[1:]), make_offers(k[:1], expiry=NOW + 1) + make_offers(k[2:])]
    book = OfferBook(None)
    for seq, offers in enumerate(steps, 1):
        book.apply_sheet(body(alice, seq, offers), now=NOW)
        book.apply_sheet(body(bob, seq, make_offers(bob.keys)), now=NOW)
        fresh = OfferBook(None)  # what a book that only ever saw these two sheets holds
        fresh.apply_sheet(body(alice, seq, offers), now=NOW)
        fresh.apply_sheet(body(bob, seq, make_offers(bob.keys)), now=NOW)
        assert rows(book) == rows(fresh), seq
    assert book.count(now=NOW) == 2 + len(bob.keys)
    assert book.apply_sheet(body(alice, 9, steps[-1]), now=NOW + 2) == 1  # the expired offer goes
    assert book.count(now=NOW) == 1 + len(bob.keys)


def test_a_re_announced_sheet_writes_only_its_own_row_and_the_book_stays_what_a_full_replace_gives(
        tmp_path, alice, bob):
    def rows(book):
        return sorted(tuple(r.items()) for r in book.rows(now=NOW, limit=1000))

    a1, a2 = (decode_sheet(alice.sheet(seq=s))[1] for s in (1, 2))
    book = OfferBook(tmp_path / "b.sqlite")
    book.apply_sheet(a1, now=NOW)
    before, held, sql = book.db.total_changes, rows(book), []
    book.db.set_trace_callback(sql.append)
    assert book.apply_sheet(a2, now=NOW + 1) == len(alice.keys)
    book.db.set_trace_callback(None)
    assert book.db.total_changes - before == 1  # the sheet's own row
    assert not [q for q in sql if "offer_id FROM offers" in q or "INTO offers" in q], sql  # none read or written
    assert rows(book) == held and book.latest_seq(alice.peer) == 2
    book.close()
    assert OfferBook(tmp_path / "b.sqlite").latest_seq(alice.peer) == 2  # persisted for a restart

    # rows that went another way come back with the next re-announcement, as with a full replace
    book = OfferBook(None)
    book.apply_sheet(a1, now=NOW)
    assert book.drop_device(device_id_of(alice.binding.sign_pub)) == len(alice.keys)
    assert book.apply_sheet(a2, now=NOW) == len(alice.keys) and book.count(now=NOW) == len(alice.keys)
    # another origin's sheet listing the same offer (a forged sheet a broken enclave could sign; validation
    # rejects it: not in bob's attested key commitment) gets a row of its own: alice's row stays hers (rows are
    # keyed by origin, device and offer id; before, the row moved to bob)
    thief = msgspec_replace(a1, origin=bob.peer, binding=bob.binding, offers=a1.offers[:1], seq=1)
    book.apply_sheet(thief, now=NOW)
    assert book.count(now=NOW) == len(alice.keys) + 1
    assert sorted(r["origin"] for r in book.rows(now=NOW)).count(alice.peer) == len(alice.keys)
    book.apply_sheet(msgspec_replace(a2, seq=3), now=NOW)
    assert sorted(r["origin"] for r in book.rows(now=NOW)).count(alice.peer) == len(alice.keys)
    # ... and an offer that expired since is not kept by a re-announcement
    short = decode_sheet(alice.sheet(seq=4, offers=make_offers(alice.keys[:1], expiry=NOW + 5)
                                     + make_offers(alice.keys[1:])))[1]
    book.apply_sheet(short, now=NOW)
    assert book.apply_sheet(msgspec_replace(short, seq=5), now=NOW + 10) == len(alice.keys) - 1
    assert [r["origin"] for r in book.rows(now=NOW)].count(alice.peer) == len(alice.keys) - 1  # (+ bob's own row)


def test_offer_id_is_the_tagged_hash_of_the_offer_encoding(alice):
    from node.crypto import tagged_hash
    from node.protocols.offers import OFFER_TAG, offer_ids

    offers = make_offers(alice.keys)
    assert [offer_id(o) for o in offers] == offer_ids(offers) == [tagged_hash(OFFER_TAG, wire.encode(o)) for o in offers]
    assert len(set(offer_ids(offers))) == len(offers)


def test_check_sheet_returns_the_ids_and_reuses_an_origins_checked_offers_only_byte_for_byte(alice, bob):
    from node.protocols.offers import OffersCache, check_sheet, offer_ids

    addrs, oc, att = AddressDeriver(), OffersCache(), cache()

    def run(data, latest=None):
        return check_sheet(data, net=NET, now=NOW, latest_seq=lambda o: (latest or {}).get(o), attestations=att,
                           addresses=addrs, offers_cache=oc)

    real = make_offers(alice.keys)
    v, body, ids = run(alice.sheet(seq=1, offers=real))
    assert v.result is Result.ACCEPT and body.offers == real and ids == offer_ids(real)
    assert addrs.misses == 3 and (oc.hits, oc.misses) == (0, 1)
    # the same offers in a newer sheet: nothing looked up again, same body and ids as a full check gives
    v, body2, ids2 = run(alice.sheet(seq=2, offers=real), latest={alice.peer: 1})
    assert v.result is Result.ACCEPT and oc.hits == 1 and (addrs.misses, addrs.hits) == (3, 0)
    assert body2 == decode_sheet(alice.sheet(seq=2, offers=real))[1] and ids2 == ids
    # one offer changed (a kind its asset lacks): a miss, checked in full, refused; the cache keeps the good table
    w = wire_body(alice.sheet(seq=3, offers=real))
    bad = msgspec_replace(w, offers=msgspec_replace(w.offers, entries=[msgspec_replace(w.offers.entries[0], kind=5)]
                                                    + w.offers.entries[1:]))
    v, _, _ = run(resign_wire(alice, bad), latest={alice.peer: 2})
    assert v.result is Result.REJECT and "kind 5 out of range" in v.reason and oc.misses == 2
    # the signature is checked before the table is looked up (bob's signature over alice's body: no lookup)
    signed, b = decode_sheet(alice.sheet(seq=4, offers=real))
    v, _, _ = run(wire.encode(SignedSheet(signed.body, bob.enc.sign(domain="outcome", digest32=b"\x00" * 32))),
                  latest={alice.peer: 3})
    assert v.result is Result.REJECT and v.reason == "bad signature" and (oc.hits, oc.misses) == (1, 2)
    # a hit still checks everything else: the Merkle root
    v, _, _ = run(resign(alice, msgspec_replace(b, offers_root=b"\x11" * 32)), latest={alice.peer: 3})
    assert v.result is Result.REJECT and "offers_root" in v.reason and oc.hits == 2
    # a sheet that fails after its offers passed does not become the origin's cached table
    oc2 = OffersCache()
    v, _, _ = check_sheet(resign(alice, msgspec_replace(b, offers_root=b"\x11" * 32)), net=NET, now=NOW,
                          latest_seq=lambda o: None, attestations=att, addresses=addrs, offers_cache=oc2)
    assert v.result is Result.REJECT and "offers_root" in v.reason and oc2.misses == 1
    assert oc2.get(alice.peer, b"") is None and oc2._by_origin == {}


def test_offers_cache_is_bounded_by_the_bytes_it_holds():
    from node.protocols.offers import CheckedOffers, OffersCache

    oc = OffersCache(max_bytes=250)
    for i in range(5):
        oc.put(f"o{i}", CheckedOffers(bytes([i]) * 100, [], [], b""))
    assert list(oc._by_origin) == ["o3", "o4"] and oc._bytes == 200
    oc.put("o3", CheckedOffers(b"\x09" * 50, [], [], b""))  # replacing an origin's entry frees the old bytes
    assert list(oc._by_origin) == ["o4", "o3"] and oc._bytes == 150
    assert oc.get("o3", b"\x09" * 50) is not None and oc.get("o4", b"\x03" * 100) is None
    oc.put("big", CheckedOffers(b"\x00" * 1000, [], [], b""))  # larger than the budget: held alone
    assert list(oc._by_origin) == ["big"] and oc._bytes == 1000


def test_a_stale_or_duplicate_sheet_is_ignored_before_any_per_offer_work(alice):
    addrs = AddressDeriver()
    v, _ = validate_sheet(alice.sheet(seq=5), net=NET, now=NOW, latest_seq=lambda o: 9, attestations=cache(),
                          addresses=addrs)
    assert v.result is Result.IGNORE and "stale" in v.reason and addrs.misses == addrs.hits == 0


def test_protocol_hands_the_validated_body_to_the_book_and_still_handles_unvalidated_events(tmp_path, alice):
    from node.protocols.base import GossipReceived, Notify, Started

    book = OfferBook(tmp_path / "b.sqlite")
    p = OffersProtocol(net=NET, book=book, attestations=cache())
    p.handle(Started("12D3KooMe"), NOW)
    data = alice.sheet(seq=1)
    assert p.validate(p.topic, data, "x", NOW).result is Result.ACCEPT and len(p._accepted) == 1
    out = p.handle(GossipReceived(p.topic, bytes(data), "x", b"id"), NOW)
    assert p._accepted == {} and [c.detail for c in out if isinstance(c, Notify)] == [
        {"origin": alice.peer, "seq": 1, "offers": 3}]
    # an event that was not validated here (fed directly) is decoded and hashed on the spot
    out = p.handle(GossipReceived(p.topic, alice.sheet(seq=2), "x", b"id2"), NOW)
    assert [c.detail["seq"] for c in out if isinstance(c, Notify)] == [2] and book.count(now=NOW) == 3
    assert {r["offer_id"] for r in book.rows(now=NOW)} == {offer_id(o).hex() for o in make_offers(alice.keys)}
    # bounded: accepted sheets that never reach handle (delivery queue full) do not pile up
    p.max_pending = 2
    for seq in (3, 4, 5):
        assert p.validate(p.topic, alice.sheet(seq=seq), "x", NOW).result is Result.ACCEPT
    assert len(p._accepted) == 2
    with pytest.raises(ValueError, match="offer ids"):
        book.apply_sheet(decode_sheet(alice.sheet(seq=9))[1], now=NOW, ids=[b"\x00" * 32])
    book.close()


def test_expired_offers_leave_the_book_file_on_the_purge_timer(tmp_path, alice):
    """Queries skip expired offers, but their rows stayed in the SQLite file for ever (``purge_expired`` was
    never called): a node's book grew by every offer it ever saw. The protocol arms a purge timer at start."""
    from node.protocols.base import GossipReceived, SetTimer, Started, TimerFired
    from node.protocols.offers import PURGE_INTERVAL

    book = OfferBook(tmp_path / "b.sqlite")
    p = OffersProtocol(net=NET, book=book, attestations=cache())
    cmds = p.handle(Started("12D3KooMe"), NOW)
    assert [c.at for c in cmds if isinstance(c, SetTimer) and c.name == "offers.purge"] == [NOW + PURGE_INTERVAL]
    p.handle(GossipReceived(p.topic, alice.sheet(seq=1), "x", b"id"), NOW)
    rows = lambda: book.db.execute("SELECT COUNT(*) FROM offers").fetchone()[0]  # noqa: E731
    assert rows() == 3
    expired = max(o.expiry for o in make_offers(alice.keys)) + 1
    cmds = p.handle(TimerFired("offers.purge"), expired)
    assert rows() == 0 and p.purged == 3
    assert [c.at for c in cmds if isinstance(c, SetTimer)] == [expired + PURGE_INTERVAL]  # and again later
    book.close()


def test_decode_sheet_names_what_is_wrong_with_a_malformed_table(alice):
    w = wire_body(alice.sheet(seq=1))
    bad = msgspec_replace(w, offers=msgspec_replace(w.offers, entries=[msgspec_replace(w.offers.entries[0], kind=7)]))
    with pytest.raises(wire.WireError, match="offer 0: address kind 7 out of range"):
        decode_sheet(wire.encode(SignedSheet(wire.encode(bad), bytes(64))))
    # the protocol fed such a sheet directly (not validated first) drops it without raising
    p = OffersProtocol(net=NET, book=OfferBook(None), attestations=cache())
    from node.protocols.base import GossipReceived

    assert p.handle(GossipReceived(p.topic, wire.encode(SignedSheet(wire.encode(bad), bytes(64))), "x", b"i"), NOW) == []


def test_a_sheet_the_enclave_refuses_to_sign_is_a_notice_not_a_crash():
    """I4 in the enclave, a stale offer set in the host (a key committed since the offers were derived): the
    re-announcement publishes nothing and says why; the next refresh derives the offers again."""
    from node.protocols.base import Notify, Publish, SetTimer, Started

    v = Vault("12D3KooCarol", seed=b"c")
    p = OffersProtocol(net=NET, book=OfferBook(None), attestations=cache())
    p.handle(Started("12D3KooCarol"), NOW)

    def refuse(body, pubs):
        raise RuntimeError("committed: item 0: key 02ab... is committed to open contract f7b1...")

    cmds = p.set_own_sheet(OwnSheet(make_offers(v.keys), [], v.quote, v.binding, refuse), NOW)
    assert not [c for c in cmds if isinstance(c, Publish)]
    (note,) = [c for c in cmds if isinstance(c, Notify)]
    assert note.kind == "offers.publish-refused" and "committed" in note.detail["reason"]
    assert any(isinstance(c, SetTimer) and c.name == "offers.republish" for c in cmds)  # tried again later
    # once the host derives the offers again and the enclave signs, the sheet goes out
    cmds = p.set_own_sheet(OwnSheet(make_offers(v.keys), [], v.quote, v.binding, v.enc.sign_offer_sheet), NOW + 1)
    assert [c for c in cmds if isinstance(c, Publish)]


def _one_by_one(items):
    """What a fresh deriver gives calling it on each item in turn, up to the first item without an address."""
    d, out = AddressDeriver(), []
    for i, it in enumerate(items):
        try:
            out.append(d(*it))
        except ValueError as exc:
            return out, i, str(exc)
    return out, -1, ""


def test_address_deriver_many_gives_exactly_what_one_by_one_calls_give():
    """``AddressDeriver.many`` (a sheet's keys derived in one loop: first-sight validation's largest cost) is
    equivalent to calling the deriver on each (asset, key, kind) in turn: the same addresses, and for the
    first item that has none the same index and reason, whatever mix of assets, kinds, points, non-points,
    malformed keys, unknown assets and repeated items; what it remembers is what the one-by-one path derives."""
    import random

    from hypothesis import given, settings, strategies as st

    from node.assets import address_for

    good = [bytes(PrivateKey(bytes([i + 1]) * 32).public_key.format()) for i in range(6)]
    bad = [b"\x02" + b"\x00" * 32,  # not on the curve
           b"\x04" + b"\x11" * 32,  # not a compressed key's prefix
           b"\x03" + b"\x22" * 31,  # 32 bytes
           bytes(good[0][:1]) + b"\xff" * 32]  # x >= p
    item = st.tuples(st.sampled_from(["BTC-REG", "LTC", "DOGE", "ETH-DEV", "XYZ"]),
                     st.sampled_from(good + bad), st.integers(0, 2))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(item, max_size=12), st.randoms(use_true_random=False))
    def check(items, rnd: random.Random):
        d = AddressDeriver()
        if rnd.random() < 0.5 and items:  # some of the keys already known
            for it in rnd.sample(items, rnd.randint(1, len(items))):
                try:
                    d(*it)
                except ValueError:
                    pass
        got = d.many(items)
        assert got == _one_by_one(items)
        for it, address in zip(items, got[0]):
            assert address == address_for(it[0], it[1], kind=AddressDeriver.kinds(it[0])[it[2]])
            assert d._known[it] == address  # remembered only as derived here

    check()


def test_a_sheets_first_bad_offer_is_named_whichever_check_it_fails():
    """The per-offer checks run for all offers before their addresses are derived together; the reason still
    names the first bad offer, as checking them one by one did: an earlier non-point before a later
    repeated key, and an earlier repeated key before a later non-point."""
    from node.protocols.offers.validate import _expand

    keys = [bytes(PrivateKey(bytes([i + 1]) * 32).public_key.format()) for i in range(4)]
    not_a_point = b"\x02" + b"\x00" * 32
    t = [Terms("BTC-REG", "100000.00", NOW, NOW + 3600)]

    def reason(pubkeys):
        return _expand(OfferTable(t, [Entry(0, 0, k, 1000, 5) for k in pubkeys]), AddressDeriver())[0]

    assert reason([keys[0], not_a_point, keys[1], keys[0]]) == "offer 1: not a valid public key (ValueError)"
    assert reason([keys[0], keys[1], keys[0], not_a_point]) == "offer 2: deposit key listed twice"
    assert reason([keys[0], b"\x05" + keys[1][1:], not_a_point]) == "offer 1: pubkey is not a compressed secp256k1 key"
    assert reason([keys[0], keys[1]]) is None
