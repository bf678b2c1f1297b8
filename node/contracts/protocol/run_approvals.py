"""``ContractRun``'s approvals on their way (``node.contracts.protocol.run``), sans-IO: a party's signed approval (an
arbiter's "release", a buyer's "exercise") is sent to every runner and sent again every ``retry_interval`` until
that runner acknowledged it, refused it for good (a bad signature, a party it does not know), or ``approve_for``
seconds passed (then ``contract.approval-undelivered`` says so). Before, it went out once: a link down for a
moment, or a runner not started yet ("unknown-contract"), lost it, and an escrow waited for its refund height
though its arbiter had approved. Kept in memory: after a restart the party approves again (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from node.protocols.base import Command, Notify, ResponseReceived, SetTimer
from node.contracts.protocol.envelope import MessageError, parse
from node.contracts.protocol.state import BODIES

#: a runner's refusals that sending again cannot change (anything else: not started yet, busy, a transport error)
FINAL_REFUSALS = frozenset({"signature", "wrong-peer", "network", "version"})


@dataclass
class Outgoing:
    """One approval on its way to one runner."""

    body: bytes  # the sealed "approve" message
    peer: str
    signer: bytes  # the runner's enclave signing key: only its "ack" counts
    message: str
    since: float


class ApprovalDelivery:
    """Approvals sent until acknowledged (a mixin of ``ContractRun``: its ``_request``, ``_in_flight``,
    ``retry_interval`` and ``approve_for`` are there)."""

    def _send_approval(self, cid_hex: str, party: int, out: Outgoing, now: float) -> list[Command]:
        self._approvals[(cid_hex, party)] = out
        return [self._request(cid_hex, "approve", -1, party, out.peer, out.body, now),
                SetTimer(f"contract-run.approve:{cid_hex}", now + self.retry_interval)]

    def _approval_answered(self, ev: ResponseReceived, cid_hex: str, party: int) -> list[Command]:
        """The answer (or transport failure) of one approval sent: delivered, refused for good, or to send again."""
        out = self._approvals.get((cid_hex, party))
        if out is None or ev.error:
            return []  # (a transport failure: the timer sends it again)
        try:
            env, body = parse(ev.data, net=self.net, kinds={"ack", "error"}, bodies=BODIES)
        except MessageError:
            return []
        if env.signer != out.signer or body.contract_id.hex() != cid_hex:
            return []  # not the runner asked, or another contract: not an answer to this approval
        detail = {"contract": cid_hex, "party": party, "peer": out.peer, "message": out.message}
        if env.kind == "ack":
            del self._approvals[(cid_hex, party)]
            return [Notify("contract.approval-delivered", detail)]
        if body.code in FINAL_REFUSALS:
            del self._approvals[(cid_hex, party)]
            return [Notify("contract.approval-refused", {**detail, "code": body.code, "reason": body.reason})]
        return []  # e.g. "unknown-contract" from a runner not started yet: sent again

    def _approvals_again(self, cid_hex: str, now: float) -> list[Command]:
        """The timer: every approval of ``cid_hex`` not acknowledged and not in flight, sent again; one older
        than ``approve_for`` given up, and said."""
        cmds: list[Command] = []
        in_flight = {party for kind, _, party in self._in_flight(cid_hex, now) if kind == "approve"}
        left = False
        for (key, party), out in list(self._approvals.items()):
            if key != cid_hex:
                continue
            if now >= out.since + self.approve_for:
                del self._approvals[(key, party)]
                cmds.append(Notify("contract.approval-undelivered", {
                    "contract": key, "party": party, "peer": out.peer, "message": out.message,
                    "reason": f"no acknowledgement in {self.approve_for:.0f} s"}))
                continue
            left = True
            if party not in in_flight:
                cmds.append(self._request(key, "approve", -1, party, out.peer, out.body, now))
        if left:
            cmds.append(SetTimer(f"contract-run.approve:{cid_hex}", now + self.retry_interval))
        return cmds
