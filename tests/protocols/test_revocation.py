"""Revocation notices: who is believed, every reason, and the effect on the risk engine at once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import wire
from node.stores.offerbook import OfferBook, device_id_of
from node.peerkey import PeerSigner
from node.protocols.base import Result
from node.protocols.offers import Offer, SheetBody, offers_root
from node.protocols.revocation import (
    RevocationNotice, RevocationProtocol, SignedNotice, TrustConfig, make_notice, validate_notice,
)
from node.protocols.testing import GossipNet
from node.risk.engine import RiskEngine
from node.attest.binding import Binding

NET, NOW = "testnet", 5_000.0
ISSUER = PeerSigner(bytes(range(32)))
STRANGER = PeerSigner(bytes(range(5, 37)))


def key33(i):
    return bytes([3]) + i.to_bytes(32, "big")


def engine_with(classes_by_origin: dict[str, str]) -> RiskEngine:
    """A book with two $50 chunks from each origin's one device, of the given class."""
    book = OfferBook(None, device_class=lambda body: classes_by_origin[body.origin])
    for j, origin in enumerate(sorted(classes_by_origin)):
        offers = [Offer("BTC-REG", f"a{j}{i}", key33(100 * j + i), 1000, 5_000, "50000", NOW, NOW + 999)
                  for i in range(2)]
        book.apply_sheet(SheetBody(1, NET, origin, 1, NOW, offers, [], offers_root(offers), b"q",
                                   Binding(NET, origin, key33(9_000 + j), key33(8_000 + j))), now=NOW)
    return RiskEngine(book)


def notice(**kw) -> RevocationNotice:
    base = dict(version=1, net=NET, kind="class", target="sgx", reason="SGAxe: attestation keys extracted",
                evidence_kind="", evidence=b"", issuer=ISSUER.peer_id, issued_at=NOW)
    base.update(kw)
    return RevocationNotice(**base)


def check(data, trust=TrustConfig(frozenset({ISSUER.peer_id}), True), seen=lambda b: False):
    return validate_notice(data, net=NET, now=NOW, trust=trust, seen=seen)[0]


def dev_hex(j: int) -> str:
    return device_id_of(key33(9_000 + j)).hex()


@pytest.mark.parametrize("data,trust,result,reason", [
    (b"\x00" * 70_000, None, Result.REJECT, "over size"),
    (b"\xc1", None, Result.REJECT, "malformed"),
    (make_notice(notice(version=9), ISSUER.sign), None, Result.REJECT, "unsupported notice version"),
    (make_notice(notice(net="x"), ISSUER.sign), None, Result.REJECT, "wrong network"),
    (make_notice(notice(kind="planet"), ISSUER.sign), None, Result.REJECT, "kind must be"),
    (make_notice(notice(kind="device", target="zz"), ISSUER.sign), None, Result.REJECT, "32-byte hex"),
    (make_notice(notice(target=""), ISSUER.sign), None, Result.REJECT, "class target"),
    (make_notice(notice(), STRANGER.sign), None, Result.REJECT, "bad signature"),
    (make_notice(notice(issued_at=NOW + 3600), ISSUER.sign), None, Result.IGNORE, "future"),
    (make_notice(notice(evidence_kind="tcb-info", evidence=b"x"), ISSUER.sign), None, Result.IGNORE,
     "cannot check evidence"),
    (make_notice(notice(issuer=STRANGER.peer_id), STRANGER.sign), None, Result.IGNORE, "signer not trusted"),
    (make_notice(notice(), ISSUER.sign), TrustConfig(frozenset({ISSUER.peer_id}), False), Result.IGNORE,
     "operator has not opted in"),
])
def test_every_reason(data, trust, result, reason):
    v = check(data, trust or TrustConfig(frozenset({ISSUER.peer_id}), True))
    assert v.result is result and reason in v.reason, v


def test_duplicate_ignored():
    data = make_notice(notice(), ISSUER.sign)
    assert check(data).result is Result.ACCEPT
    assert check(data, seen=lambda b: True).reason == "duplicate notice"


def test_a_class_notice_takes_effect_at_once_everywhere_and_flags_own_deposits():
    classes = {"o-sgx": "sgx:SWHardeningNeeded", "o-tdx": "tdx:UpToDate"}
    trust = TrustConfig(frozenset({ISSUER.peer_id}), accept_signed=True)
    net = GossipNet()
    eng_a, eng_b = engine_with(classes), engine_with(classes)
    a = RevocationProtocol(net=NET, engine=eng_a, trust=trust, own_devices=lambda: {"ab" * 32: 3},
                           own_class=lambda: "sgx:UpToDate")
    b = RevocationProtocol(net=NET, engine=eng_b, trust=TrustConfig())  # b trusts no signer
    net.add("A", a, now=NOW)
    net.add("B", b, now=NOW)
    dev_sgx = bytes.fromhex(dev_hex(sorted(classes).index("o-sgx")))
    assert eng_a.caps.headroom(dev_sgx, "o-sgx", classes["o-sgx"], NOW)[0] > 0
    # A's operator issues a signed notice (A trusts itself as a signer here)
    net.call("A", a, a.publish(make_notice(notice(issuer=ISSUER.peer_id), ISSUER.sign), NOW), NOW)
    room, refusal = eng_a.caps.headroom(dev_sgx, "o-sgx", classes["o-sgx"], NOW)
    assert room == 0 and refusal.cap == "revoked" and "SGAxe" in refusal.reason
    assert eng_a.book.count(now=NOW) == 2  # the sgx device's 2 offers dropped, the tdx ones kept
    assert not eng_a.choose("BTC-REG", 10_000, NOW).ok or all(
        c.device_class.startswith("tdx") for c in eng_a.choose("BTC-REG", 10_000, NOW).offers)
    notes = {n.kind: n.detail for n in net.peers["A"].notes}
    assert notes["revocation.applied"]["offers_dropped"] == 2
    assert notes["revocation.own-deposits"]["deposits"] == 3 and "sweep" in notes["revocation.own-deposits"]["action"]
    # B has not opted in: refused with the reason, nothing changes there
    assert b.reasons and "ignore: signer not trusted" in b.reasons
    assert eng_b.caps.headroom(dev_sgx, "o-sgx", classes["o-sgx"], NOW)[0] > 0
    assert eng_b.book.count(now=NOW) == 4


def test_a_notice_with_checkable_evidence_needs_no_trusted_signer():
    classes = {"o1": "sim", "o2": "sim"}
    target = dev_hex(0)
    proofs = {b"proof-of-" + bytes.fromhex(target)}
    checker = {"cheating-proof": lambda n: None if n.evidence in proofs else "proof does not verify"}
    eng = engine_with(classes)
    p = RevocationProtocol(net=NET, engine=eng, trust=TrustConfig(checkers=checker))
    good = make_notice(notice(kind="device", target=target, evidence_kind="cheating-proof",
                              evidence=b"proof-of-" + bytes.fromhex(target), issuer=STRANGER.peer_id),
                       STRANGER.sign)
    bad = make_notice(notice(kind="device", target=target, evidence_kind="cheating-proof", evidence=b"forged",
                             issuer=STRANGER.peer_id), STRANGER.sign)
    assert p.validate(p.topic, bad, "x", NOW).result is Result.REJECT
    assert p.validate(p.topic, good, "x", NOW).result is Result.ACCEPT
    from node.protocols.base import GossipReceived
    p.handle(GossipReceived(p.topic, good, "x"), NOW)
    dev = bytes.fromhex(target)
    assert eng.reputation.is_cheater(dev) and eng.book.count(now=NOW) == 2
    assert eng.caps.headroom(dev, "o1", "sim", NOW)[0] == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_never_raises(blob):
    assert check(blob).result is not Result.ACCEPT
