"""Contract agreement over ``/keyswitch/contract/1``, sans-IO: "run this contract with me", answered yes or no.

The initiator sends a ``ContractOffer`` in the signed envelope (``node.protocols.signed``, kind "contract"):
the contract's kind and its terms (a release schedule for "swap", a language contract's spec for "escrow",
"option", "ring", "arbiter"). The responder checks the envelope and the offer as pure validation
(``validate_offer``: every check ``[REJECT]`` or ``[IGNORE]`` with its reason), then asks its node's policy
(``Agreement.on_contract``, set by the desks: ``node.contracts.desk.swaps.SwapDesk.accept``; it says why it refuses, or
None), and answers with an ``Ack``. The contract itself then runs over the one contract protocol
(``/keyswitch/contract-run/1``), where each enclave checks again what protects its funds.

The stream protocol is shared with the requests for proposals: ``node.protocols.rfp.RfpProtocol`` owns it, hands
every message of kind "contract" to ``Agreement.on_offer`` and every answer to one of our offers to
``Agreement.on_answer``, and gives our offers their request ids.
"""

from __future__ import annotations

from typing import Callable

import msgspec

from node import peerkey, wire
from node.protocols.base import Command, Listeners, Notify, RequestReceived, Respond, ResponseReceived, SendRequest
from node.protocols.signed import (
    CONTRACT_PROTOCOL, MAX_PROPOSAL_SIZE, RFP_VERSION, SignedMsg, lifetime, sign_msg, signing_bytes,
)


class ContractOffer(msgspec.Struct, array_like=True, frozen=True):
    """Contract agreement on ``/keyswitch/contract/1``: "run this contract with me"."""

    version: int
    net: str
    proposer: str  # peer id; signs the offer
    kind: str  # "swap" | "escrow" | "option" | "ring" | "arbiter"
    schedule: bytes  # the terms: a ``ContractSpec`` (a swap: the turns spec of its schedule), wire-encoded
    issued_at: float
    expiry: float


class Ack(msgspec.Struct, array_like=True, frozen=True):
    accepted: bool
    reason: str


def validate_offer(msg: SignedMsg, from_peer: str, *, net: str, now: float) -> tuple[ContractOffer | None, str]:
    """The offer in ``msg`` (kind "contract") sent by ``from_peer``, or why it is refused ("[REJECT] ..." /
    "[IGNORE] ...")."""
    try:
        offer = wire.decode(msg.body, ContractOffer, max_size=MAX_PROPOSAL_SIZE)
    except wire.WireError as exc:
        return None, f"[REJECT] malformed: {exc.reason}"
    # [REJECT] our version and network.
    if offer.version != RFP_VERSION or offer.net != net:
        return None, "[REJECT] wrong version or network"
    # [REJECT] signed by the peer that sent it, and by no one else.
    if offer.proposer != from_peer or not peerkey.verify(offer.proposer, signing_bytes(msg.kind, msg.body), msg.sig):
        return None, "[REJECT] bad signature (not by the peer that sent it)"
    # [REJECT] / [IGNORE] its lifetime.
    if (bad := lifetime(offer.issued_at, offer.expiry, now)) is not None:
        return None, f"[{bad.result.value.upper()}] {bad.reason}"
    return offer, ""


class Agreement:
    """Our side of contract agreement: offers we make (their answers in ``answers``, by request id, each waking
    ``listeners``) and offers we answer (``on_contract(peer, offer, now) -> None | reason``: the node's policy;
    None set: every offer is refused). ``stats`` and ``reasons`` are the owner's counters (``RfpProtocol``'s:
    ``contracts_offered`` / ``_accepted`` / ``_refused``, and refusals by reason)."""

    def __init__(self, *, net: str, sign: Callable[[bytes], bytes], stats: dict[str, int],
                 reasons: dict[str, int]) -> None:
        self.net, self.sign, self.stats, self.reasons = net, sign, stats, reasons
        self.on_contract: Callable[[str, ContractOffer, float], str | None] | None = None
        self.answers: dict[int, tuple[bool, str]] = {}  # our request id -> (accepted, reason)
        self.listeners = Listeners()  # woken by our request id once its answer is in ``answers``
        self._asked: set[int] = set()  # request ids of our offers still unanswered

    def offer(self, request_id: int, peer: str, local_peer: str, kind: str, terms: bytes, now: float,
              ttl: float = 60.0) -> list[Command]:
        """Ask ``peer`` to agree to a contract (``terms``: a schedule or spec, wire-encoded); the answer lands in
        ``answers[request_id]``."""
        offer = ContractOffer(RFP_VERSION, self.net, local_peer, kind, terms, now, now + ttl)
        self._asked.add(request_id)
        self.stats["contracts_offered"] += 1
        return [SendRequest(CONTRACT_PROTOCOL, peer, request_id, sign_msg("contract", offer, self.sign),
                            timeout=15.0)]

    def on_offer(self, ev: RequestReceived, msg: SignedMsg, now: float) -> list[Command]:
        """A peer's offer: validated, put to our policy, answered."""
        offer, why = validate_offer(msg, ev.peer, net=self.net, now=now)
        if offer is not None:
            if self.on_contract is None:
                why = "[IGNORE] this node takes no contract offers"
            else:
                refusal = self.on_contract(ev.peer, offer, now)
                why = f"[REFUSED] {refusal}" if refusal else ""
        if why:
            self.stats["contracts_refused"] += 1
            self.reasons[f"contract: {why[:60]}"] = self.reasons.get(f"contract: {why[:60]}", 0) + 1
            return [Respond(ev.request_id, wire.encode(Ack(False, why)))]
        self.stats["contracts_accepted"] += 1
        return [Respond(ev.request_id, wire.encode(Ack(True, ""))),
                Notify("contract.accepted", {"peer": ev.peer, "kind": offer.kind})]

    def on_answer(self, event: ResponseReceived) -> bool:
        """The answer to one of our offers (True), or not ours (False: the owner's)."""
        if event.request_id not in self._asked:
            return False
        self._asked.discard(event.request_id)
        if event.error:
            self.answers[event.request_id] = (False, f"peer unreachable: {event.error}")
        else:
            try:
                ack = wire.decode(event.data, Ack, max_size=4096)
                self.answers[event.request_id] = (ack.accepted, ack.reason)
            except wire.WireError as exc:
                self.answers[event.request_id] = (False, f"bad answer: {exc.reason}")
        self.listeners.fire(event.request_id)
        return True
