"""Peer exchange: pure parts (wire, table, answer), no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import wire
from node.runtime import pex

A = "12D3KooWSkoZAksd1Nqwx4dq6UpoVujGZg2a4GRSRkRPhs7GwCmR"
B = "12D3KooWAehU1dBvCABTYaS5vp8duD5W3AYo9mW473SVCZgrX2gH"
C = "12D3KooWFDgnApxek5hH8rfrJpqpn46xX7zi9TkmYhb96xDj1t6V"


def test_clean_addrs_appends_peer_and_drops_junk():
    out = pex.clean_addrs(["/ip4/127.0.0.1/tcp/4001", "not an addr", "/ip4/1.2.3.4/udp/5/quic-v1",
                           "/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001",
                           f"/ip4/10.0.0.1/tcp/9/p2p/{A}", "/ip4/127.0.0.1/tcp/4001"], A)
    assert out == [f"/ip4/127.0.0.1/tcp/4001/p2p/{A}", f"/ip4/10.0.0.1/tcp/9/p2p/{A}"]


def test_clean_addrs_refuses_an_address_of_another_peer():
    with pytest.raises(wire.WireError, match="another peer"):
        pex.clean_addrs([f"/ip4/127.0.0.1/tcp/1/p2p/{B}"], A)


def test_answer_records_asker_and_never_returns_it():
    t = pex.PeerTable(seed=1)
    t.note(B, [f"/ip4/127.0.0.1/tcp/2/p2p/{B}"], now=100.0)
    req = pex.request_bytes("dev", ["/ip4/127.0.0.1/tcp/1"])
    found = pex.parse_answer(pex.answer(t, req, A, net="dev", now=101.0), net="dev", me=A)
    assert found == {B: [f"/ip4/127.0.0.1/tcp/2/p2p/{B}"]}
    assert t.addrs(A) == (f"/ip4/127.0.0.1/tcp/1/p2p/{A}",)
    # B asking now learns of A, not of itself
    found_b = pex.parse_answer(pex.answer(t, pex.request_bytes("dev", []), B, net="dev", now=102.0), net="dev", me=B)
    assert set(found_b) == {A}


def test_wrong_network_and_bad_want_are_refused_with_a_reason():
    t = pex.PeerTable()
    resp = pex.answer(t, pex.request_bytes("other", []), A, net="dev", now=1.0)
    with pytest.raises(wire.WireError, match="wrong network"):
        pex.parse_answer(resp, net="dev", me=A)  # the response itself names net dev, but carries the refusal
    bad_want = wire.encode(pex.PexRequest(pex.PEX_VERSION, "dev", [], 10_000))
    with pytest.raises(wire.WireError, match="want"):
        pex.decode_request(bad_want, "dev")
    with pytest.raises(wire.WireError, match="version"):
        pex.decode_request(wire.encode(pex.PexRequest(pex.PEX_VERSION + 1, "dev", [], 1)), "dev")
    with pytest.raises(wire.WireError, match="find"):
        pex.decode_request(wire.encode(pex.PexRequest(pex.PEX_VERSION, "dev", [], 1, [A] * (pex.MAX_FIND + 1))), "dev")
    with pytest.raises(wire.WireError, match="find"):
        pex.decode_request(wire.encode(pex.PexRequest(pex.PEX_VERSION, "dev", [], 1, ["x" * 65])), "dev")
    with pytest.raises(wire.WireError, match="over size"):
        pex.decode_request(b"\x94" + b"\x00" * (pex.MAX_PEX_MESSAGE + 1), "dev")


def test_a_request_that_names_a_peer_gets_its_addresses_first_even_with_want_zero():
    t = pex.PeerTable(seed=1)
    t.note(B, [f"/ip4/127.0.0.1/tcp/2/p2p/{B}"], now=100.0)
    t.note(C, [f"/ip4/127.0.0.1/tcp/3/p2p/{C}"], now=100.0)
    found = pex.parse_answer(pex.answer(t, pex.request_bytes("dev", [], want=0, find=[C]), A, net="dev", now=101.0),
                             net="dev", me=A)
    assert found == {C: [f"/ip4/127.0.0.1/tcp/3/p2p/{C}"]}
    # a peer not seen within the table's ttl is not handed out, by name or otherwise
    late = t.ttl + 101.0
    assert pex.parse_answer(pex.answer(t, pex.request_bytes("dev", [], find=[C]), A, net="dev", now=late),
                            net="dev", me=A) == {}
    # the asker cannot learn its own entry by naming itself
    assert A not in pex.parse_answer(pex.answer(t, pex.request_bytes("dev", [], want=0, find=[A]), A, net="dev",
                                                now=101.0), net="dev", me=C)


def test_parse_answer_drops_self_and_unnamed_entries():
    data = wire.encode(pex.PexResponse(pex.PEX_VERSION, "dev", [f"/ip4/127.0.0.1/tcp/1/p2p/{A}", "/ip4/127.0.0.1/tcp/2",
                                                  f"/ip4/127.0.0.1/tcp/3/p2p/{C}"]))
    assert pex.parse_answer(data, net="dev", me=A) == {C: [f"/ip4/127.0.0.1/tcp/3/p2p/{C}"]}


def test_table_expires_and_is_bounded():
    t = pex.PeerTable(ttl=10.0, capacity=2, seed=0)
    t.note(A, ["/a"], now=0.0)
    t.note(B, ["/b"], now=5.0)
    t.note(C, ["/c"], now=6.0)  # over capacity: the oldest (A) goes
    assert A not in t and len(t) == 2
    assert set(t.recent(now=14.0)) == {B, C}
    assert t.recent(now=15.5) == [C]
    t.expire(now=20.0)
    assert len(t) == 0
    t.note(A, [], now=0.0)  # no addresses, not known: nothing recorded
    assert A not in t


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_never_escapes_as_anything_but_wireerror(data):
    for fn in (lambda: pex.decode_request(data, "dev"), lambda: pex.parse_answer(data, net="dev", me=A)):
        try:
            fn()
        except wire.WireError as exc:
            assert exc.reason
    # the server never raises either: it answers with a refusal
    t = pex.PeerTable()
    out = pex.answer(t, data, A, net="dev", now=0.0)
    assert wire.decode(out, pex.PexResponse).version == pex.PEX_VERSION
