"""Offer gossip's re-announcement back-off and its pull on connect (``OffersProtocol``), sans-IO."""

import msgspec
import pytest

from node import wire
from node.stores.offerbook import OfferBook
from node.protocols.base import (
    Notify, PeerConnected, Publish, RequestReceived, Respond, ResponseReceived, Result, SendRequest, SetTimer, Started,
    TimerFired,
)
from node.protocols.offers import (
    PULL_MAX_SHEETS, REPUBLISH_MAX, OffersProtocol, OwnSheet, SheetsAnswer, SheetsAsk, SheetStore, answer_pull,
    decode_sheet, read_answer, sheets_protocol,
)
from node.protocols.testing import GossipNet
from tests.protocols.offerkit import NET, NOW, Vault, cache, make_offers


def own_of(v: Vault, keys=None, retracted=()) -> OwnSheet:
    return OwnSheet(make_offers(v.keys if keys is None else keys), list(retracted), v.quote, v.binding,
                    v.enc.sign_offer_sheet)


def proto(**kw) -> OffersProtocol:
    return OffersProtocol(net=NET, book=OfferBook(None), attestations=cache(), **kw)


@pytest.fixture(scope="module")
def vaults():
    return [Vault(f"12D3KooPull{i}", n=3, seed=bytes([70 + i])) for i in range(4)]


def publishes(cmds):
    return [c for c in cmds if isinstance(c, Publish)]


def timer_at(cmds):
    ts = [c.at for c in cmds if isinstance(c, SetTimer) and c.name == "offers.republish"]
    assert len(ts) <= 1
    return ts[0] if ts else None


def seq_of(cmd: Publish) -> int:
    return decode_sheet(cmd.data)[1].seq


# ---------------------------------------------------------------- back-off
def test_an_unchanged_sheet_is_announced_again_after_60_s_then_twice_as_late_up_to_the_cap(vaults):
    v = vaults[0]
    p = proto()
    assert timer_at(p.handle(Started(v.peer), NOW)) == NOW + 60  # nothing to offer yet: no sheet
    cmds = p.set_own_sheet(own_of(v), NOW)
    assert len(publishes(cmds)) == 1 and timer_at(cmds) == NOW + 60
    seqs = [seq_of(publishes(cmds)[0])]
    t, waits = NOW + 60, []
    for _ in range(9):
        cmds = p.handle(TimerFired("offers.republish"), t)
        pub = publishes(cmds)
        assert len(pub) == 1
        seqs.append(seq_of(pub[0]))
        nxt = timer_at(cmds)
        waits.append(nxt - t)
        t = nxt
    assert waits == [120, 240, 480, 960, 1800, 1800, 1800, 1800, 1800]
    assert REPUBLISH_MAX == 1800
    assert seqs == sorted(set(seqs))  # every re-announcement is a newer sheet (re-signed)


def test_a_change_publishes_at_once_and_restarts_the_back_off_an_unchanged_set_does_not_publish(vaults):
    v = vaults[0]
    p = proto(republish_interval=10, republish_max=100)
    p.handle(Started(v.peer), NOW)
    p.set_own_sheet(own_of(v), NOW)
    t = NOW + 10
    for _ in range(4):  # waits 20, 40, 80, then the cap
        t = timer_at(p.handle(TimerFired("offers.republish"), t))
    assert p.next_interval == 100 and t == NOW + 250
    # the same offers again (a new OwnSheet object, as the daemon's refresher makes): nothing happens
    assert p.set_own_sheet(own_of(v), t - 1) == []
    # ``announce`` (the network benchmark's rounds) re-signs and publishes it anyway, leaving the back-off
    before = p.seq
    (pub,) = p.announce(t - 1)
    assert seq_of(pub) == p.seq > before and decode_sheet(pub.data)[1].offers and p.next_interval == 100
    # other offers: published at once, the next re-announcement 10 s later
    cmds = p.set_own_sheet(own_of(v, keys=v.keys[:2]), t - 1)
    assert len(publishes(cmds)) == 1 and timer_at(cmds) == t - 1 + 10 and p.next_interval == 10
    # a retraction (same offers) is a change too, and rides on one sheet only
    cmds = p.set_own_sheet(own_of(v, keys=v.keys[:2], retracted=[v.keys[2]]), t)
    assert len(publishes(cmds)) == 1 and decode_sheet(publishes(cmds)[0].data)[1].retracted == [v.keys[2]]
    cmds = p.handle(TimerFired("offers.republish"), t + 10)
    assert decode_sheet(publishes(cmds)[0].data)[1].retracted == [] and timer_at(cmds) == t + 30


def test_a_sheet_set_before_the_start_is_published_at_start_and_nothing_to_offer_stops_the_timer(vaults):
    v = vaults[1]
    p = proto()
    p.own = own_of(v)
    cmds = p.handle(Started(v.peer), NOW)
    assert len(publishes(cmds)) == 1 and timer_at(cmds) == NOW + 60
    p.own = own_of(v, keys=[])
    assert p.handle(TimerFired("offers.republish"), NOW + 60) == []
    with pytest.raises(ValueError):
        proto(republish_interval=120, republish_max=60)
    assert proto(republish_interval=7200).republish_max == 7200 and proto().republish_max == REPUBLISH_MAX


# ---------------------------------------------------------------- pull
def network(vaults, n):
    net = GossipNet()
    protos = []
    for v in vaults[:n]:
        protos.append(proto())
        net.add(v.peer, protos[-1], now=NOW)
    for v, p in zip(vaults, protos):
        net.call(v.peer, p, p.set_own_sheet(own_of(v), NOW), NOW)
    return net, protos


def test_a_node_that_joins_late_pulls_every_sheet_its_peer_holds_through_validate(vaults):
    net, (a, b, c) = network(vaults, 3)
    assert a.book.count(now=NOW) == 6 and b.sheets and len(b.sheets) == 2  # A and C's sheets, held raw by B
    d = proto()
    net.add(vaults[3].peer, d, now=NOW + 5)
    assert d.book.count(now=NOW + 5) == 0  # the sheets were gossiped before it joined
    net.call(vaults[3].peer, d, d.handle(PeerConnected(vaults[1].peer), NOW + 5), NOW + 5)
    assert d.book.count(now=NOW + 5) == 9  # B's own and the latest of A and C
    assert d.stats["accept"] == 3 and d.pull_stats["accepted"] == 3 and b.pull_stats["served"] == 1
    notes = [n for n in net.peers[vaults[3].peer].notes if n.kind == "offers.sheet"]
    assert len(notes) == 3 and all(n.detail.get("pulled") for n in notes)
    # the same peer is not asked again within pull_again; another peer is, and what it sends is a duplicate
    assert d.handle(PeerConnected(vaults[1].peer), NOW + 100) == []
    net.call(vaults[3].peer, d, d.handle(PeerConnected(vaults[0].peer), NOW + 100), NOW + 100)
    assert d.stats["ignore"] == 3 and d.stats["accept"] == 3
    assert d.reasons["ignore"] == {"duplicate": 3}
    asks = d.handle(PeerConnected(vaults[1].peer), NOW + 5 + d.pull_again)
    assert [type(c) for c in asks] == [SendRequest] and asks[0].protocol == sheets_protocol(NET)
    # a peer that does not speak the protocol (a bootstrap node): counted, nothing else
    assert d.handle(ResponseReceived(asks[0].protocol, vaults[1].peer, asks[0].request_id, b"",
                                     "protocol not supported"), NOW + 400) == []
    assert d.pull_stats["failed"] == 1


def test_a_pulled_sheet_is_judged_as_gossip_forgeries_and_garbage_never_reach_the_book(vaults):
    v = vaults[0]
    d = proto()
    d.handle(Started("12D3KooAsker"), NOW)
    good = v.sheet(seq=5)
    s, _ = decode_sheet(good)
    forged = wire.encode(msgspec.structs.replace(s, sig=bytes(64)))

    def answer(sheets, **kw):
        a = dict(version=1, net=NET, error="", sheets=sheets)
        a.update(kw)
        return wire.encode(SheetsAnswer(**a))

    def ask_and_get(data, peer="12D3KooPeer"):
        ask = d.handle(PeerConnected(peer), NOW)
        assert len(ask) == 1
        return d.handle(ResponseReceived(ask[0].protocol, peer, ask[0].request_id, data), NOW)

    cmds = ask_and_get(answer([forged, b"\x00garbage", good]), "12D3KooP1")
    assert d.stats == {"accept": 1, "reject": 2, "ignore": 0}
    assert d.reasons["reject"]["bad signature"] == 1 and d.book.count(now=NOW) == 3
    assert [n.detail for n in cmds if isinstance(n, Notify) and n.kind == "offers.pull"] == [
        {"peer": "12D3KooP1", "sheets": 3, "accepted": 1}]
    # malformed answers: a reason, never an exception, nothing validated
    for i, (data, why) in enumerate([
            (b"\xff\x00", "malformed answer"),
            (answer([good], version=2), "unsupported version 2"),
            (answer([good], net="other"), "wrong network"),
            (answer([good] * (PULL_MAX_SHEETS + 1)), "length <= 256"),  # out of the wire range: at decode
            (answer([b"x" * (600 * 1024), b"y" * (600 * 1024)]), "over"),
            (answer([], error="rate limited: 4 answers a minute per peer"), "refused: rate limited")]):
        cmds = ask_and_get(data, f"12D3KooBad{i}")
        notes = [n.detail for n in cmds if isinstance(n, Notify)]
        assert len(notes) == 1 and why in notes[0]["error"], (why, notes)
    assert d.pull_stats["malformed"] == 5 and d.pull_stats["refused_by_peer"] == 1
    assert d.stats == {"accept": 1, "reject": 2, "ignore": 0}
    # an answer to a request we never made is dropped
    assert d.handle(ResponseReceived(sheets_protocol(NET), "12D3KooX", 999, answer([good])), NOW) == []


def test_answers_are_rate_limited_per_peer_and_in_all(vaults):
    net, (a, b) = network(vaults, 2)
    ask = wire.encode(SheetsAsk(1, NET, 10, 1 << 20))

    def req(p, peer, now, rid=1):
        (r,) = p.handle(RequestReceived(sheets_protocol(NET), peer, rid, ask), now)
        assert isinstance(r, Respond) and r.request_id == rid
        return read_answer(r.data, net=NET)

    for k in range(4):
        why, sheets = req(b, "12D3KooStorm", NOW + k)
        assert why == "" and len(sheets) == 2  # its own first, then A's
    assert decode_sheet(sheets[0])[1].origin == vaults[1].peer
    why, sheets = req(b, "12D3KooStorm", NOW + 10)
    assert why.startswith("refused: rate limited") and sheets == []
    assert req(b, "12D3KooStorm", NOW + 61)[0] == ""  # a minute later
    limited = proto(answers_per_minute=100, answers_per_minute_total=3)
    assert [req(limited, f"12D3KooP{i}", NOW)[0][:20] for i in range(4)] == ["", "", "", "refused: rate limite"]
    assert limited.pull_stats == {**limited.pull_stats, "served": 3, "refused": 1}


def test_answers_and_the_store_are_bounded_and_a_bad_ask_gets_its_reason():
    store = SheetStore(max_origins=3, max_bytes=1000)
    for i in range(5):
        store.put(f"o{i}", 1, bytes([i]) * 100)
    assert len(store) == 3 and list(store.newest_first()) == [bytes([i]) * 100 for i in (4, 3, 2)]
    store.put("o4", 0, b"older")  # an older sheet never replaces a newer one
    assert next(store.newest_first()) == bytes([4]) * 100
    store.put("big", 2, b"z" * 900)
    assert len(store) == 2 and list(store.newest_first()) == [b"z" * 900, bytes([4]) * 100]  # 1,000 bytes
    store = SheetStore()
    for i in range(300):
        store.put(f"o{i}", 1, b"s%03d" % i + b"." * 96)
    ans = answer_pull(wire.encode(SheetsAsk(1, NET, 1000, 1 << 30)), net=NET, own=b"mine", store=store)
    why, sheets = read_answer(ans, net=NET)
    assert why == "" and len(sheets) == PULL_MAX_SHEETS and sheets[0] == b"mine" and sheets[1].startswith(b"s299")
    why, sheets = read_answer(answer_pull(wire.encode(SheetsAsk(1, NET, 5, 250)), net=NET, own=None, store=store),
                              net=NET)
    assert why == "" and len(sheets) == 2  # 100-byte sheets within 250 bytes
    for ask, reason in [(b"\x01\x02", "malformed request"), (wire.encode(SheetsAsk(9, NET, 5, 5)), "version 9"),
                        (wire.encode(SheetsAsk(1, "main", 5, 5)), "wrong network"),
                        (b"\x94" + b"\x01" * 300, "malformed request")]:
        why, sheets = read_answer(answer_pull(ask, net=NET, own=b"mine", store=store), net=NET)
        assert reason in why and sheets == []


def test_the_daemon_wires_the_base_interval_and_the_configured_cap(tmp_path):
    from node.config import BY_KEY, load
    from node.app.stack import make_offer_stack

    cfg = load(tmp_path / "cfg", env={"KEYSWITCH_NETWORK_REPUBLISH_MAX": "900"})
    assert cfg["network.republish_max"] == 900.0 and BY_KEY["network.republish_max"].default == REPUBLISH_MAX
    for republish, cap, want in ((60.0, cfg["network.republish_max"], 900.0), (60.0, None, REPUBLISH_MAX),
                                 (7200.0, 900.0, 7200.0)):  # a cap below the base interval is raised to it
        stack = make_offer_stack(tmp_path / f"d{republish}{cap}", NET, "12D3KooDaemon", republish=republish,
                                 republish_max=cap, in_process=True)
        try:
            p = stack.protocol
            assert (p.republish_interval, p.republish_max) == (republish, want)
            assert p.stream_protocols == [sheets_protocol(NET)] == ["/keyswitch/dev/sheets/1"]
        finally:
            stack.close()


def test_garbage_answers_and_asks_never_raise():
    from hypothesis import given, settings, strategies as st

    d = proto()
    d.handle(Started("12D3KooAsker"), NOW)
    store = SheetStore()
    store.put("o", 1, b"sheet")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=512), st.lists(st.binary(max_size=64), max_size=4))
    def run(data, sheets):
        for blob in (data, wire.encode(SheetsAnswer(1, NET, "", sheets))):
            d._pulled.clear()
            (ask,) = d.handle(PeerConnected("12D3KooPeer"), NOW)
            out = d.handle(ResponseReceived(ask.protocol, "12D3KooPeer", ask.request_id, blob), NOW)
            assert all(isinstance(c, Notify) for c in out)
        why, got = read_answer(answer_pull(data, net=NET, own=None, store=store), net=NET)
        assert why or got == [b"sheet"]

    run()
    assert d.book.count(now=NOW) == 0 and d.stats["accept"] == 0


def test_the_daemon_wires_the_offers_settings_and_its_price_feed(tmp_path):
    from node.config import BY_KEY, load
    from node.app.stack import make_offer_stack, offer_settings
    from node.protocols.offers import MAX_OFFER_LIFETIME, MAX_ORIGINS_PER_DEVICE, VALIDATION_BUDGET

    for key, const in (("offers.max_origins_per_device", MAX_ORIGINS_PER_DEVICE),
                       ("offers.validation_budget", VALIDATION_BUDGET),
                       ("offers.max_offer_lifetime", MAX_OFFER_LIFETIME)):
        assert BY_KEY[key].default == const, key
    cfg = load(tmp_path / "cfg", env={"KEYSWITCH_OFFERS_MAX_ORIGINS_PER_DEVICE": "3",
                                      "KEYSWITCH_OFFERS_VALIDATION_BUDGET": "500",
                                      "KEYSWITCH_OFFERS_MAX_OFFER_LIFETIME": "3600",
                                      "KEYSWITCH_RISK_PRICE_TOLERANCE": "0.05"})
    stack = make_offer_stack(tmp_path / "d", NET, "12D3KooDaemon", in_process=True, offers=offer_settings(cfg))
    try:
        p = stack.protocol
        assert (p.max_origins_per_device, p.budget.per_minute, p.max_offer_lifetime, p.price_tolerance) == \
            (3, 500, 3600.0, 0.05)
        assert p.sheets.max_per_device == 3 and p.prices.price("BTC-REG", NOW).usd_per_unit > 0
    finally:
        stack.close()
