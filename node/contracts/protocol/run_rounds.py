"""``ContractRun``'s rounds (``node.contracts.protocol.run``), sans-IO: the driver that asks our enclave what the
contract allows and releases or refunds it, the requests a runner takes (``open``, ``release``, ``approve``, ``who``,
``decline``), the answers to ours, and the retry and deadline timers (withheld, a contract never signed dropped)."""

from __future__ import annotations

from node import wire
from node.contracts.spec import ReleaseBody, approval_digest
from node.protocols.base import Command, Notify, RequestReceived, Respond, ResponseReceived, SetTimer
from node.contracts.protocol.state import (
    ACCEPTS_REQUEST, BODIES, CHEAT_CODES, OPEN_REFUSALS, RUNNING, TERMINAL, TRANSITIONS, WITHHELD, ApproveBody, Run,
    WhoBody,
)
from node.contracts.protocol.envelope import AckBody, MessageError, message_digest, parse, signed


class ReleaseRounds:
    """The release rounds of ``ContractRun`` (a mixin: the state, the helpers and the application calls are there)."""

    # -- the driver: ask the enclave, release / refund / claim what it allows ---------------
    def _drive(self, r: Run, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        cmds: list[Command] = []
        if r.rec.state in TERMINAL:
            return cmds
        if self.escrow is not None and r.escrow_sigs != len(r.rec.sigs) and any(
                t.party == r.me for t in r.spec.escrows):
            r.escrow_sigs = len(r.rec.sigs)  # escrow beside the contract: it never holds the releases up
            cmds += self.escrow.distribute(r.spec, r.rec.sigs, now)
        try:
            st = self.enclave.contract_status(r.cid)
        except EnclaveRefused as exc:  # e.g. no height yet for a time-lock: wait for the host's ledger
            return [Notify("contract.waiting", {"contract": r.key, "reason": f"{exc.code}: {exc.reason}"})] + \
                self._timers(r, now)
        for m in st.moved:  # every key that came to us (received, or refunded to us) is settled
            if m.receiver != r.me:
                continue
            step = r.spec.step_of(m.giver, m.index)
            if r.claim_of(step) is not None:
                continue
            if m.giver != r.me and step in r.checked:  # its funds are there: swept in the background
                cmds += self._settle(r, m.giver, m.index, step)
                continue
            if m.giver != r.me:  # a peer's key: nothing more of ours goes out before its funds are checked
                return cmds + self._check(r, m.giver, m.index, step) + self._timers(r, now)
            return cmds + self._settle(r, m.giver, m.index, step) + self._timers(r, now)  # a refund: swept first
        if r.rec.state in TERMINAL:
            return cmds
        for g, i, recv in st.allowed:
            if st.missing and recv != r.me:
                continue  # not every runner has signed the contract id yet (a refund needs no signature, I1: a
                # party that never opened the contract used to keep every other party's chunk from going home)
            if recv != r.me and any(k not in r.verified for k in {*r.runners(), recv}):
                continue  # our enclave releases only when it verified the receiver's and every runner's quote (I3):
                # wait for their opens (asking it early failed the contract: a ring's third party stopped for good
                # before the second's quote came, and refused the key the second had released to it)
            try:
                if recv == r.me:
                    self.enclave.contract_refund(r.cid, i)  # the key goes back to its owner
                    self._progress(r, now)
                    cmds.append(Notify("contract.refund", {"contract": r.key, "index": i, "pubkey": r.spec.parties[
                        r.me].chunks[i].pubkey.hex()}))
                    cmds += self._settle(r, r.me, i, r.spec.step_of(r.me, i))
                    continue
                data = self.enclave.contract_release(r.cid, i, recv)
            except EnclaveRefused as exc:
                if exc.code in ("not-allowed", "unattested"):
                    continue  # the view moved under us, or a quote is still on its way: ask again next time
                return cmds + self._stop(r, "local-refusal", f"our enclave refused: {exc.code}: {exc.reason}")
            step = r.spec.step_of(r.me, i)
            r.pending[step] = data
            self._progress(r, now)
            cmds.append(self._request(r.key, "release", step, recv, r.spec.parties[recv].binding.peer_id, data, now))
            cmds.append(Notify("contract.released", {"contract": r.key, "index": i, "to": recv,
                                                     "pubkey": r.spec.parties[r.me].chunks[i].pubkey.hex()}))
        if st.finished or st.settled:
            after = self.enclave.contract_status(r.cid)
            if (after.finished or after.settled) and not after.allowed and not r.pending and all(
                    r.claim_of(r.spec.step_of(m.giver, m.index)) for m in after.moved if m.receiver == r.me):
                return cmds + self._stop(r, "settled", f"contract {st.status}")
        return cmds + self._timers(r, now)

    def _resend(self, r: Run, now: float) -> list[Command]:
        """Our unacknowledged releases again, but those whose answer is still to come (``_in_flight``)."""
        out = []
        busy = self._in_flight(r, now)
        for step, data in sorted(r.pending.items()):
            env = wire.decode(data, wire.Signed)
            recv = r.spec.parties.index(next(p for p in r.spec.parties
                                             if p.binding.enc_pub == wire.decode(env.body, ReleaseBody).recipient))
            if ("release", step, recv) not in busy:
                out.append(self._request(r.key, "release", step, recv, r.spec.parties[recv].binding.peer_id, data,
                                         now))
        return out

    # -- requests -----------------------------------------------------------------------
    def _on_request(self, ev: RequestReceived, now: float) -> list[Command]:
        try:
            env, body = parse(ev.data, net=self.net, kinds={"open", "release", "approve", "who", "decline"},
                              bodies=BODIES)
        except MessageError as exc:
            return self._refuse(ev.request_id, b"", -1, exc.code, exc.reason)
        if env.kind == "who":
            why = self._learn(ev.peer, env, body, now)
            binding, quote = self._ident()
            if why or binding is None:
                return self._refuse(ev.request_id, b"", -1, "attestation", why or "no binding to answer with")
            return [Respond(ev.request_id, self._seal("whois", WhoBody(binding, quote)))]
        if env.kind == "open":
            return self._on_open(ev, env, body, now)
        if env.kind == "decline":
            return self._on_decline(ev, env, body)
        r = self.runs.get(body.contract_id.hex())
        if r is None:
            return self._refuse(ev.request_id, body.contract_id, -1, "unknown-contract", "no such contract here")
        if env.kind not in ACCEPTS_REQUEST[r.rec.state]:
            return self._refuse(ev.request_id, r.cid, -1, "stopped", f"contract is {r.rec.state}: {r.rec.reason}")
        if env.kind == "approve":
            return self._on_approve(ev, env, body, r, now)
        return self._on_release(ev, env, body, r, now)

    def _on_approve(self, ev, env, a: ApproveBody, r: Run, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused, verify_domain_sig

        if not 0 <= a.party < len(r.spec.parties):
            return self._refuse(ev.request_id, r.cid, -1, "wrong-peer", "no such party")
        if not verify_domain_sig(r.spec.parties[a.party].binding.sign_pub, "approval",
                                 approval_digest(r.cid, a.message), a.sig):
            return self._refuse(ev.request_id, r.cid, -1, "signature",
                                f"not party {a.party}'s signature over (contract id, {a.message!r})")
        try:
            self.enclave.contract_approve(r.cid, a.party, a.message, a.sig)
        except EnclaveRefused as exc:
            return self._refuse(ev.request_id, r.cid, -1, "signature", f"our enclave refused it: {exc.reason}")
        r.approvals.append((a.party, a.message))
        self._progress(r, now)
        cmds = [Respond(ev.request_id, self._seal("ack", AckBody(r.cid, -1))),
                Notify("contract.approval", {"contract": r.key, "party": a.party, "message": a.message})]
        return cmds + self._drive(r, now)

    def _on_release(self, ev, env, b: ReleaseBody, r: Run, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        owner = r.spec.owner_of(b.deposit_pub)
        if owner is None or r.spec.parties[owner[0]].binding.peer_id != ev.peer:
            return self._refuse(ev.request_id, r.cid, b.round, "wrong-peer", "not a chunk of the sender")
        raw, digest = message_digest(self.net, "ack", AckBody(r.cid, b.round))
        try:  # the enclave checks the record (signer, contract, step, recipient) and the key itself, then signs
            # our answer in the same call (contract_step releasing nothing: ours goes once the key's funds are seen)
            step = self.enclave.contract_step(r.cid, ev.data, -1, 0, digest)
        except EnclaveRefused as exc:
            cmds = self._refuse(ev.request_id, r.cid, b.round, exc.code, f"our enclave refused the key: {exc.reason}")
            if exc.code in CHEAT_CODES and r.rec.state in (RUNNING, WITHHELD):
                cmds += self._stop(r, "cheat", f"step {b.round}: {exc.code}: {exc.reason}")
            return cmds
        self._progress(r, now)
        ack = Respond(ev.request_id, signed(self.enclave.sign_pub(), self.net, "ack", raw, step.ack_sig))
        got = Notify("contract.received", {"contract": r.key, "step": b.round, "giver": owner[0], "at": now,
                                           "record": ev.data.hex()})  # the signed record our enclave accepted
        shown = self.escrow.show_moved(r.spec, ev.data, now) if self.escrow is not None else []
        return [ack, got, *shown] + self._drive(r, now)

    # -- responses ------------------------------------------------------------------------
    def _on_response(self, ev: ResponseReceived, now: float) -> list[Command]:
        pend = self._pending.pop(ev.request_id, None)
        if pend is None:
            return []
        key, kind, _, party, _ = pend
        delivery = self._approval_answered(ev, key, party) if kind == "approve" else []  # (run_approvals)
        return delivery + self._on_answer(ev, pend, now)

    def _on_answer(self, ev: ResponseReceived, pend: tuple, now: float) -> list[Command]:
        key, kind, step, party, _ = pend
        if kind == "who":
            if ev.error:
                return self._who_failed(ev.peer, ev.error, now)
            self._who_tries.pop(ev.peer, None)
            try:
                env, body = parse(ev.data, net=self.net, kinds={"whois", "error"}, bodies=BODIES)
            except MessageError as exc:
                return [Notify("contract.refused", {"code": exc.code, "reason": exc.reason})]
            why = "peer: " + body.reason if env.kind == "error" else self._learn(ev.peer, env, body, now)
            return [Notify("contract.who", {"peer": ev.peer, "ok": why is None, "reason": why or ""})]
        r = self.runs.get(key)
        if r is None or ev.error or kind == "decline":
            return []  # transport failure: the retry timer resends (a decline is sent once)
        want = {"open": {"opened", "error"}, "release": {"ack", "error"}, "approve": {"ack", "error"}}[kind]
        try:
            env, body = parse(ev.data, net=self.net, kinds=want, bodies=BODIES)
        except MessageError as exc:
            self.refusals.append((exc.code, exc.reason))
            return [Notify("contract.refused", {"code": exc.code, "reason": exc.reason})]
        if env.kind == "error":
            self.refusals.append(("peer-error", f"{body.code}: {body.reason}"))
            note = Notify("contract.peer-error", {"contract": key, "step": step, "code": body.code,
                                                  "reason": body.reason})
            if kind == "open" and body.code in OPEN_REFUSALS and r.rec.state == RUNNING and \
                    party not in {s.party for s in r.rec.sigs}:  # nothing of ours can have moved: it never signed
                return [note] + self._stop(r, "peer-refused", f"party {party} refused the contract: {body.code}: "
                                                              f"{body.reason}")
            return [note]
        if env.signer != r.spec.parties[party].binding.sign_pub or body.contract_id != r.cid:
            self.refusals.append(("wrong-peer", f"{env.kind} not from the party asked or for another contract"))
            return [Notify("contract.refused", {"code": "wrong-peer", "reason": "answer from the wrong enclave"})]
        self._progress(r, now)
        if env.kind == "opened":
            why = self._check_party(r, party, body.quote, body.binding, now) or self._add_sigs(r, body.sigs)
            if why:
                self.refusals.append(("attestation", why))
                return [Notify("contract.refused", {"code": "attestation", "reason": why})]
            if {s.party for s in body.sigs} >= set(r.runners()):
                r.complete.add(party)
            return self._drive(r, now)
        if kind == "release" and body.round == step:
            r.pending.pop(step, None)
            if step not in r.rec.acked:
                r.rec.acked = sorted([*r.rec.acked, step])
                self._persist(r)
        return self._drive(r, now)

    # -- timers ---------------------------------------------------------------------------------
    def _on_timer(self, name: str, now: float) -> list[Command]:
        what, _, key = name.partition(":")
        if what == "contract-run.who":
            return self._who_again(key, now)
        if what == "contract-run.approve":  # (an arbiter runs no contract: before the run's lookup)
            return self._approvals_again(key, now)
        if what == "contract-run.forget":  # (the run has ended: before the lookup below)
            self._forget_ended()
            return []
        r = self.runs.get(key)
        if r is None or r.rec.state in TERMINAL:
            return []
        if what == "contract-run.deadline":
            if r.busy or r.checking:  # waiting on our own ledger (a claim or funds task), not on the peers
                return [SetTimer(name, now + self.round_timeout)]
            if now + 1e-9 < r.progress_at + self.round_timeout:
                return [SetTimer(name, r.progress_at + self.round_timeout)]
            from node.tee.client import EnclaveRefused

            try:
                st = self.enclave.contract_status(r.cid)
            except EnclaveRefused as exc:  # e.g. no height handed in yet
                return [Notify("contract.waiting", {"contract": r.key, "reason": f"{exc.code}: {exc.reason}"})]
            if (st.finished or st.settled) and not st.allowed and r.pending:
                return self._stop(r, "settled", "contract over; the peer never acknowledged our last release")
            if st.missing and not st.moved and not r.pending and not r.undroppable and \
                    now >= r.progress_at + self.drop_after:
                return self._drop(r, st.missing)
            if r.rec.state == RUNNING:
                r.rec.state, r.rec.reason = TRANSITIONS[(RUNNING, "deadline")], \
                    f"no progress for {self.round_timeout:.0f} s"
                self._persist(r)
                released = sum(1 for m in st.moved if m.giver == r.me != m.receiver)
                received = sum(1 for m in st.moved if m.receiver == r.me != m.giver)
                return [Notify("contract.withheld", {"contract": r.key, "released": released, "received": received,
                                                     "reason": r.rec.reason, "owed": self._owed(r, st),
                                                     **self._outcome_detail(r, st.moved)})]
            return []
        if what == "contract-run.retry":
            r.retry_armed = False
            return self._open_all(r, now) + self._resend(r, now) + self._drive(r, now)
        return []
