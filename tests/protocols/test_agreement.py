"""Contract agreement over /keyswitch/contract/1 (``node.contracts.protocol.agreement``), sans-IO: an offer made by one
side is answered by the other's policy; every refusal of the envelope or the offer has its labelled reason;
an answer lands in ``answers`` and wakes its listener."""

from __future__ import annotations

from node import wire
from node.peerkey import PeerSigner
from node.contracts.protocol.agreement import Ack, Agreement, ContractOffer
from node.protocols.base import Notify, RequestReceived, Respond, ResponseReceived
from node.protocols.signed import CONTRACT_PROTOCOL, RFP_VERSION, SignedMsg, sign_msg

NET, NOW = "agreetest", 1_000.0


def side(seed: int):
    signer = PeerSigner(bytes([seed]) * 32)
    return signer, Agreement(net=NET, sign=signer.sign, stats={"contracts_offered": 0, "contracts_accepted": 0,
                                                              "contracts_refused": 0}, reasons={})


def answer(to: Agreement, frm: str, data: bytes, now: float = NOW) -> tuple[bool, str, list]:
    cmds = to.on_offer(RequestReceived(CONTRACT_PROTOCOL, frm, 7, data), wire.decode(data, SignedMsg), now)
    assert isinstance(cmds[0], Respond) and cmds[0].request_id == 7
    ack = wire.decode(cmds[0].data, Ack)
    return ack.accepted, ack.reason, cmds[1:]


def test_an_offer_is_put_to_the_policy_and_its_answer_wakes_the_offerer():
    (sa, a), (sb, b) = side(1), side(2)
    seen = []
    b.on_contract = lambda peer, offer, now: seen.append((peer, offer.kind, offer.schedule)) or None
    (cmd,) = a.offer(5, sb.peer_id, sa.peer_id, "swap", b"terms", NOW)
    assert cmd.peer == sb.peer_id and cmd.request_id == 5 and a.stats["contracts_offered"] == 1
    ok, why, rest = answer(b, sa.peer_id, cmd.data)
    assert (ok, why) == (True, "") and seen == [(sa.peer_id, "swap", b"terms")]
    assert rest == [Notify("contract.accepted", {"peer": sa.peer_id, "kind": "swap"})]
    woke = []
    a.listeners.add(5, lambda: woke.append(a.answers[5]))
    assert a.on_answer(ResponseReceived(CONTRACT_PROTOCOL, sb.peer_id, 5, wire.encode(Ack(True, ""))))
    assert woke == [(True, "")] and b.stats["contracts_accepted"] == 1
    assert not a.on_answer(ResponseReceived(CONTRACT_PROTOCOL, sb.peer_id, 5, b""))  # answered once: not ours now
    assert not a.on_answer(ResponseReceived(CONTRACT_PROTOCOL, sb.peer_id, 99, b""))  # never asked: the owner's


def test_every_refusal_has_its_labelled_reason():
    (sa, a), (sb, b) = side(1), side(2)
    (cmd,) = a.offer(1, sb.peer_id, sa.peer_id, "option", b"spec", NOW)
    assert answer(b, sa.peer_id, cmd.data)[1] == "[IGNORE] this node takes no contract offers"
    b.on_contract = lambda peer, offer, now: "device cap: too much on this device (risk.max_device_usd)"
    assert answer(b, sa.peer_id, cmd.data)[1] == "[REFUSED] device cap: too much on this device (risk.max_device_usd)"
    b.on_contract = lambda peer, offer, now: None
    assert answer(b, PeerSigner(bytes([3]) * 32).peer_id, cmd.data)[1].startswith("[REJECT] bad signature")
    assert answer(b, sa.peer_id, cmd.data, now=NOW + 61)[1] == "[IGNORE] expired"
    other = sign_msg("contract", ContractOffer(RFP_VERSION, "othernet", sa.peer_id, "swap", b"", NOW, NOW + 60),
                     sa.sign)
    assert answer(b, sa.peer_id, other)[1] == "[REJECT] wrong version or network"
    long = sign_msg("contract", ContractOffer(RFP_VERSION, NET, sa.peer_id, "swap", b"", NOW, NOW + 601), sa.sign)
    assert answer(b, sa.peer_id, long)[1].startswith("[REJECT] lifetime must be in (0, 600] s")
    junk = wire.encode(SignedMsg("contract", b"\x01\x02", sa.sign(b"x")))
    assert answer(b, sa.peer_id, junk)[1].startswith("[REJECT] malformed")
    assert b.stats["contracts_refused"] == 7 and sum(b.reasons.values()) == 7


def test_an_answer_that_failed_or_does_not_decode_is_a_refusal_with_why():
    (sa, a), (sb, _) = side(1), side(2)
    a.offer(1, sb.peer_id, sa.peer_id, "swap", b"", NOW)
    a.offer(2, sb.peer_id, sa.peer_id, "swap", b"", NOW)
    assert a.on_answer(ResponseReceived(CONTRACT_PROTOCOL, sb.peer_id, 1, error="timeout after 15s"))
    assert a.on_answer(ResponseReceived(CONTRACT_PROTOCOL, sb.peer_id, 2, b"\xff"))
    assert a.answers[1] == (False, "peer unreachable: timeout after 15s")
    assert a.answers[2][0] is False and a.answers[2][1].startswith("bad answer:")
