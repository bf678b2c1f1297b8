"""Requests for proposals, in memory: validation reasons, proposals within caps, the client's choice."""

from __future__ import annotations


import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import wire
from node.peerkey import PeerSigner
from node.protocols.base import Result
from node.protocols.rfp import (
    CONTRACT_PROTOCOL, DRAW_ALL_BP, REQUEST_VERSION, RFP_VERSION, Ack, Proposal, ProposedOffer, Request,
    SignedMsg, draw_share, drawn, sign_msg, validate_proposal, validate_request,
)
from node.protocols.testing import GossipNet
from node.risk.classes import ClassRegistry
from tests.protocols.rfp_kit import NET, node, NOW


def network(n: int = 5, **kw):
    net = GossipNet()
    nodes = [node(seed=bytes([7, i]) * 16, **kw) for i in range(n)]
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


def test_a_request_can_leave_owners_out_of_the_choice():
    """A request to contracts asks for its shortfall again without the providers that refused or withheld
    (``exclude``): neither the proposals nor the client's own engine bring their offers back."""
    net, nodes = network(5)
    client_signer, client = nodes[0]
    first, cmds = client.request("BTC-REG", 40_000, "swap", NOW)
    net.call(client_signer.peer_id, client, cmds, NOW)
    net.advance(NOW + 10)
    used = {c.owner_id for c in client.results[first].offers}
    left_out = frozenset(sorted(used)[:2])
    rid, cmds = client.request("BTC-REG", 15_000, "swap", NOW + 10, exclude=left_out)
    net.call(client_signer.peer_id, client, cmds, NOW + 10)
    net.advance(NOW + 20)
    chosen = client.results[rid]
    assert chosen.ok, chosen.reason
    assert left_out and not {c.owner_id for c in chosen.offers} & left_out
    assert not set(chosen.from_proposers) & left_out


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
    base = dict(version=REQUEST_VERSION, net=NET, request_id=b"r" * 16, client=SIGNER.peer_id, asset="BTC-REG",
                usd_cents=10_000, contract="swap", max_per_device=2, max_share_device_bp=5_000,
                max_share_owner_bp=5_000, issued_at=NOW, expiry=NOW + 60, draw_bp=DRAW_ALL_BP)
    base.update(kw)
    return Request(**base)


def vreq(data: bytes, seen=lambda r: False, now=NOW):
    return validate_request(data, net=NET, now=now, seen=seen)[0]


@pytest.mark.parametrize("data,result,reason", [
    (b"\x00" * 5000, Result.REJECT, "over size"),
    (b"\xc1", Result.REJECT, "malformed"),
    (wire.encode(SignedMsg("proposal", b"", b"")), Result.REJECT, "wrong kind"),
    (sign_msg("request", req(version=1), SIGNER.sign), Result.REJECT, "unsupported request version"),
    (sign_msg("request", req(draw_bp=0), SIGNER.sign), Result.REJECT, "draw_bp"),
    (sign_msg("request", req(draw_bp=DRAW_ALL_BP + 1), SIGNER.sign), Result.REJECT, "draw_bp"),
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
    (prop(), dict(request=req(draw_bp=1)), Result.IGNORE, "not drawn"),
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


# ------------------------------------------------------------------ responder sortition
def test_the_draw_is_a_fixed_share_of_peers():
    peers = [PeerSigner(bytes([3, i % 256, i // 256]) + bytes(29)).peer_id for i in range(2000)]
    rid = bytes(range(16))
    share = sum(drawn(rid, p, 1_600) for p in peers) / len(peers)
    assert 0.13 < share < 0.19, share
    assert [drawn(rid, p, 1_600) for p in peers] == [drawn(rid, p, 1_600) for p in peers]  # a fixed draw
    assert all(drawn(rid, p, DRAW_ALL_BP) for p in peers) and not any(drawn(rid, p, 1) for p in peers[:100])
    other = sum(a != b for a, b in zip((drawn(rid, p, 1_600) for p in peers),
                                       (drawn(b"x" * 16, p, 1_600) for p in peers)))
    assert other > 300  # another request draws other peers
    assert draw_share(16, None) == draw_share(16, 10) == draw_share(0, 500) == DRAW_ALL_BP
    assert draw_share(16, 100) == 1_600 and draw_share(16, 1e9) == 1


def test_a_request_draws_about_the_target_after_the_first():
    net, nodes = network(30, target_proposals=6)
    cs, client = nodes[0]
    rid, cmds = client.request("BTC-REG", 20_000, "swap", NOW)  # nothing learnt yet: every peer answers
    net.call(cs.peer_id, client, cmds, NOW)
    assert len(client.open[rid].proposals) == 29
    net.advance(NOW + 10)
    assert client.results[rid].ok and client.responders == 29
    rid2, cmds = client.request("BTC-REG", 20_000, "swap", NOW + 20)
    bp = client.open[rid2].request.draw_bp
    assert bp == draw_share(6, 29) < DRAW_ALL_BP
    net.call(cs.peer_id, client, cmds, NOW + 20)
    want = {s.peer_id for s, _ in nodes[1:] if drawn(rid2, s.peer_id, bp)}
    assert set(client.open[rid2].proposals) == want and 0 < len(want) < 29
    for s, p in nodes[1:]:  # an undrawn peer ran no allocation and sent nothing
        assert p.stats["proposals_out"] == 1 + (s.peer_id in want)
        assert p.stats["not_drawn"] == (s.peer_id not in want)
    net.advance(NOW + 30)
    chosen = client.results[rid2]
    assert chosen.ok and chosen.proposals == len(want) and client.stats["reasked"] == 0
    assert set(chosen.from_proposers) <= want


def test_too_few_answers_reask_once_with_a_wider_draw():
    net, nodes = network(12, target_proposals=8)
    cs, client = nodes[0]
    client.responders = 5_000.0  # as if the network were large: a share that draws almost nobody here
    rid, cmds = client.request("BTC-REG", 20_000, "swap", NOW)
    assert client.open[rid].request.draw_bp == 16
    net.call(cs.peer_id, client, cmds, NOW)
    first = len(client.open[rid].proposals)
    assert first < 2
    net.advance(NOW + 6)  # the deadline: a re-ask under a new id with 4x the share, no decision yet
    assert rid not in client.results and client.stats["reasked"] == 1
    (rid2, again), = client.open.items()
    assert rid2 != rid and again.origin == rid and again.request.draw_bp == 64 and again.rounds == 2
    net.advance(NOW + 12)  # decided after the second deadline, filed under the first id; never a third round
    assert client.results[rid].ok and client.stats["reasked"] == 1 and not client.open
    assert client.responders == pytest.approx(0.75 * 5_000 + 0.25 * first * DRAW_ALL_BP / 16)  # learnt, smoothed


def test_no_target_means_every_peer_answers_every_request():
    net, nodes = network(6, target_proposals=0)
    cs, client = nodes[0]
    for k in range(3):
        rid, cmds = client.request("BTC-REG", 20_000, "swap", NOW + k)
        assert client.open[rid].request.draw_bp == DRAW_ALL_BP
        net.call(cs.peer_id, client, cmds, NOW + k)
        assert len(client.open[rid].proposals) == 5
        net.advance(NOW + k + 0.5)
    assert client.responders is None


def test_a_request_is_validated_once_and_not_answered_once_expired():
    _, nodes = network(2)
    _, peer = nodes[1]
    data = sign_msg("request", req(request_id=b"q" * 16, issued_at=NOW, expiry=NOW + 5), SIGNER.sign)
    from node.protocols.base import GossipReceived
    assert peer.validate(peer.topic, data, SIGNER.peer_id, NOW).result is Result.ACCEPT
    assert peer.handle(GossipReceived(peer.topic, data, SIGNER.peer_id), NOW + 6) == []  # expired meanwhile
    assert peer.stats["requests_in"] == 0
    assert peer.validate(peer.topic, data, SIGNER.peer_id, NOW).result is Result.ACCEPT
    out = peer.handle(GossipReceived(peer.topic, data, SIGNER.peer_id), NOW + 1)
    assert peer.stats["requests_in"] == 1 and len(out) == 1 and out[0].peer == SIGNER.peer_id
