"""Requests for proposals, in memory: validation reasons, proposals within caps, the client's choice."""

from __future__ import annotations

import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import wire
from node.offerbook import OfferBook, device_id_of
from node.peerkey import PeerSigner
from node.protocols.base import Result
from node.protocols.offers import Offer, SheetBody, offers_root
from node.protocols.rfp import (
    CONTRACT_PROTOCOL, RFP_VERSION, Ack, Proposal, ProposedOffer, Request, RfpProtocol, SignedMsg, sign_msg,
    validate_proposal, validate_request,
)
from node.protocols.testing import GossipNet
from node.risk.allocate import Limits
from node.risk.classes import ClassRegistry
from node.risk.engine import RiskEngine
from node.tee.binding import Binding

NET = "testnet"
NOW = 1_000.0


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


def node(classes: ClassRegistry | None = None, seed: bytes | None = None):
    signer = PeerSigner(seed or os.urandom(32))
    book = OfferBook(None)
    for body in sheets():
        book.apply_sheet(body, now=NOW)
    engine = RiskEngine(book, classes=classes, limits=Limits(3, 0.34, 0.5))
    return signer, RfpProtocol(net=NET, engine=engine, sign=signer.sign)


def network(n: int = 5):
    net = GossipNet()
    nodes = [node() for _ in range(n)]
    for signer, proto in nodes:
        net.add(signer.peer_id, proto, now=NOW)
    return net, nodes


def test_request_answered_by_several_peers_and_choice_respects_caps():
    net, nodes = network(5)
    client_signer, client = nodes[0]
    rid, cmds = client.request("BTC-REG", 40_000, "swap", NOW)
    net.call(client_signer.peer_id, client, cmds, NOW)
    assert len(client.open[rid].proposals) == 4  # every other peer proposed
    for _, p in nodes[1:]:
        assert p.stats["proposals_out"] == 1
    net.advance(NOW + 10)
    chosen = client.results[rid]
    assert chosen.ok, chosen.reason
    assert chosen.total_cents >= 40_000 and chosen.proposals == 4
    assert len(chosen.from_proposers) >= 2
    by_dev: dict[bytes, list[int]] = {}
    for c in chosen.offers:
        by_dev.setdefault(c.device_id, []).append(c.usd_cents)
    assert all(len(v) <= 3 and sum(v) <= int(0.34 * 40_000) for v in by_dev.values())
    note = [n for n in net.peers[client_signer.peer_id].notes if n.kind == "rfp.chosen"][0]
    assert note.detail["ok"] and note.detail["request_id"] == rid.hex()


def test_a_peer_answers_only_within_its_own_caps():
    classes = ClassRegistry()
    classes.revoke("sim", "test: this peer trusts no simulated device")
    net = GossipNet()
    client_signer, client = node()
    strict_signer, strict = node(classes)
    net.add(client_signer.peer_id, client, now=NOW)
    net.add(strict_signer.peer_id, strict, now=NOW)
    rid, cmds = client.request("BTC-REG", 20_000, "swap", NOW)
    net.call(client_signer.peer_id, client, cmds, NOW)
    assert strict.stats["declined"] == 1 and strict.stats["proposals_out"] == 0
    declined = [n for n in net.peers[strict_signer.peer_id].notes if n.kind == "rfp.declined"][0]
    assert "device cap kept out" in declined.detail["reason"]
    net.advance(NOW + 10)
    assert client.results[rid].ok and client.results[rid].proposals == 0  # its own engine answered


def test_the_book_cannot_cover_says_why():
    net, nodes = network(2)
    s, client = nodes[0]
    rid, cmds = client.request("BTC-REG", 10_000_00, "swap", NOW)  # $10k: more than every book holds
    net.call(s.peer_id, client, cmds, NOW)
    net.advance(NOW + 10)
    assert not client.results[rid].ok and "cannot cover" in client.results[rid].reason


# ------------------------------------------------------------------ request validation
SIGNER = PeerSigner(bytes(range(32)))
OTHER = PeerSigner(bytes(range(1, 33)))


def req(**kw) -> Request:
    base = dict(version=RFP_VERSION, net=NET, request_id=b"r" * 16, client=SIGNER.peer_id, asset="BTC-REG",
                usd_cents=10_000, contract="swap", max_per_device=2, max_share_device_bp=5_000,
                max_share_owner_bp=5_000, issued_at=NOW, expiry=NOW + 60)
    base.update(kw)
    return Request(**base)


def vreq(data: bytes, seen=lambda r: False, now=NOW):
    return validate_request(data, net=NET, now=now, seen=seen)[0]


@pytest.mark.parametrize("data,result,reason", [
    (b"\x00" * 5000, Result.REJECT, "over size"),
    (b"\xc1", Result.REJECT, "malformed"),
    (wire.encode(SignedMsg("proposal", b"", b"")), Result.REJECT, "wrong kind"),
    (sign_msg("request", req(version=2), SIGNER.sign), Result.REJECT, "unsupported request version"),
    (sign_msg("request", req(net="other"), SIGNER.sign), Result.REJECT, "wrong network"),
    (sign_msg("request", req(request_id=b"short"), SIGNER.sign), Result.REJECT, "request_id"),
    (sign_msg("request", req(usd_cents=0), SIGNER.sign), Result.REJECT, "usd_cents"),
    (sign_msg("request", req(max_per_device=0), SIGNER.sign), Result.REJECT, "max_per_device"),
    (sign_msg("request", req(max_share_owner_bp=20_000), SIGNER.sign), Result.REJECT, "max_share_owner_bp"),
    (sign_msg("request", req(asset=""), SIGNER.sign), Result.REJECT, "asset"),
    (sign_msg("request", req(expiry=NOW + 10_000), SIGNER.sign), Result.REJECT, "lifetime"),
    (sign_msg("request", req(), OTHER.sign), Result.REJECT, "bad signature"),
    (sign_msg("request", req(issued_at=NOW - 100, expiry=NOW - 1), SIGNER.sign), Result.IGNORE, "expired"),
    (sign_msg("request", req(issued_at=NOW + 500, expiry=NOW + 600), SIGNER.sign), Result.IGNORE, "future"),
])
def test_every_request_reason(data, result, reason):
    v = vreq(data)
    assert v.result is result and reason in v.reason, v


def test_duplicate_request_ignored_and_valid_accepted():
    data = sign_msg("request", req(), SIGNER.sign)
    assert vreq(data).result is Result.ACCEPT
    assert vreq(data, seen=lambda r: True).reason == "duplicate request"


# ----------------------------------------------------------------- proposal validation
def prop(**kw) -> Proposal:
    offers = kw.pop("offers", [ProposedOffer(b"o" * 32, b"d" * 32, "x", 5_000)])
    base = dict(version=RFP_VERSION, net=NET, request_id=b"r" * 16, proposer=OTHER.peer_id, offers=offers,
                total_cents=sum(o.usd_cents for o in offers), issued_at=NOW, expiry=NOW + 30)
    base.update(kw)
    return Proposal(**base)


def vprop(p: Proposal, signer=OTHER, request=req(), from_peer=None):
    data = sign_msg("proposal", p, signer.sign)
    return validate_proposal(data, net=NET, now=NOW, request=request, from_peer=from_peer or OTHER.peer_id)[0]


@pytest.mark.parametrize("p,kw,result,reason", [
    (prop(), dict(from_peer="someone-else"), Result.REJECT, "not the peer that sent it"),
    (prop(), dict(signer=SIGNER), Result.REJECT, "bad signature"),
    (prop(offers=[]), {}, Result.REJECT, "must propose"),
    (prop(offers=[ProposedOffer(b"o" * 32, b"d" * 32, "x", 1)] * 2), {}, Result.REJECT, "proposed twice"),
    (prop(offers=[ProposedOffer(b"o", b"d" * 32, "x", 1)]), {}, Result.REJECT, "malformed offer"),
    (prop(total_cents=1), {}, Result.REJECT, "total_cents"),
    (prop(net="other"), {}, Result.REJECT, "wrong network"),
    (prop(issued_at=NOW - 100, expiry=NOW - 1), {}, Result.IGNORE, "expired"),
    (prop(), dict(request=None), Result.IGNORE, "no open request"),
    (prop(offers=[ProposedOffer(bytes([i]) * 32, b"d" * 32, "x", 2_000) for i in range(3)]), {}, Result.REJECT,
     "per-device limit"),
])
def test_every_proposal_reason(p, kw, result, reason):
    v = vprop(p, **kw)
    assert v.result is result and reason in v.reason, v


def test_a_refused_proposal_gets_a_reasoned_ack():
    net, nodes = network(2)
    s0, client = nodes[0]
    rid, cmds = client.request("BTC-REG", 20_000, "swap", NOW)
    net.call(s0.peer_id, client, cmds, NOW)
    forged = sign_msg("proposal", prop(request_id=rid, proposer=OTHER.peer_id), SIGNER.sign)
    from node.protocols.base import RequestReceived
    out = client.handle(RequestReceived(CONTRACT_PROTOCOL, OTHER.peer_id, 77, forged), NOW)
    ack = msgspec.msgpack.decode(out[0].data, type=Ack)
    assert not ack.accepted and ack.reason.startswith("[REJECT] bad signature")
    assert client.open[rid].refused[OTHER.peer_id].startswith("bad signature")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_garbage_never_raises(blob):
    assert vreq(blob).result is not Result.ACCEPT
    v, _ = validate_proposal(blob, net=NET, now=NOW, request=req(), from_peer=OTHER.peer_id)
    assert v.result is not Result.ACCEPT
