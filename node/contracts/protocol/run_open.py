"""``ContractRun``'s open phase (``node.contracts.protocol.run``), sans-IO: a contract opened in our enclave and
with every other runner, a peer's ``open`` answered (its quote verified, the other parties' funds checked in a ledger
task first, its signatures handed to our enclave) or refused, a ``decline`` taken, and the peers' attested bindings
asked and learnt (``who`` / ``whois``)."""

from __future__ import annotations

from node import wire
import hashlib

from node.contracts.spec import ContractSpec, decode_spec, spec_id
from node.protocols.base import Command, LedgerCall, Notify, RequestReceived, Respond, SetTimer, TaskDone
from node.contracts.protocol.state import (
    MAX_WAITING_OPENS, TERMINAL, TRANSITIONS, WHO_ATTEMPTS, WITHHELD, DeclineBody, OpenBody, OpenedBody, Run,
    RunRecord, WhoBody, _funds_missing, _quote_check,
)
from node.contracts.protocol.envelope import AckBody
from node.attest.binding import Binding
from node.enclave.contracts import PartySig


class OpenPhase:
    """The open phase of ``ContractRun`` (a mixin: the state, the helpers and the application calls are there)."""

    def _on_decline(self, ev: RequestReceived, env: wire.Signed, d: DeclineBody) -> list[Command]:
        """A runner of a contract we expect declines it: only that runner's enclave can (never a third peer)."""
        cid = d.contract_id
        spec = self._expected.get(cid, (None,))[0]
        if spec is None or cid.hex() in self.runs:
            return self._refuse(ev.request_id, cid, -1, "not-expected", "no agreement with us waits for it")
        if not any(p.runner and p.binding.peer_id == ev.peer and p.binding.sign_pub == env.signer
                   for p in spec.parties):
            return self._refuse(ev.request_id, cid, -1, "wrong-peer", "the sender is not a runner of that contract")
        self.forget(cid)
        return [Respond(ev.request_id, self._seal("ack", AckBody(cid, -1))),
                Notify("contract.declined", {"contract": cid.hex(), "peer": ev.peer, "reason": d.reason[:300]})]

    def who(self, peer: str, now: float) -> list[Command]:
        """Ask ``peer`` for its attested binding; once verified it is in ``known[peer]``. A request that fails in
        transport is tried again, ``WHO_ATTEMPTS`` in all."""
        binding, quote = self._ident()
        if binding is None:
            raise ValueError("this node has no binding to introduce itself with")
        self._who_tries[peer] = 1
        return [self._request("", "who", -1, -1, peer, self._seal("who", WhoBody(binding, quote)), now)]

    def _who_failed(self, peer: str, error: str, now: float) -> list[Command]:
        tries = self._who_tries.get(peer)
        if tries is None:
            return []
        if tries < WHO_ATTEMPTS:
            return [SetTimer(f"contract-run.who:{peer}", now + self.retry_interval)]
        del self._who_tries[peer]
        return [Notify("contract.who", {"peer": peer, "ok": False,
                                        "reason": f"no answer after {tries} tries: {error}"})]

    def _who_again(self, peer: str, now: float) -> list[Command]:
        tries = self._who_tries.get(peer)
        if tries is None or peer in self.known:
            return []
        cmds = self.who(peer, now)
        self._who_tries[peer] = tries + 1
        return cmds

    def _new_run(self, spec: ContractSpec, cid: bytes, now: float, funds_checked: bool = False) -> Run | str:
        """Record the contract, open it in our enclave (it signs the id) and feed it the heights we know.
        The other parties' funds are checked here (an application call: ``start``) unless ``funds_checked``
        (a peer's open: checked in a ledger task first)."""
        from node.tee.client import EnclaveRefused

        me = self._my_party(spec)
        if me is None or not spec.parties[me].runner:
            return "we are not a runner of this contract"
        missing = None if funds_checked else _funds_missing(self.check_funds, spec, me, self.price_of,
                                                            self.price_tolerance)
        if missing:
            return missing
        rec = RunRecord(spec.encode(), TRANSITIONS[(None, "start")])
        r = Run(rec, spec, cid, me, progress_at=now, verified={me})
        self.store.put(r.key, rec)  # first the record: a crash before the enclave opens it re-opens on resume
        try:
            res = self.enclave.contract_open(rec.spec, [])
        except EnclaveRefused as exc:
            self.store.delete(r.key)
            return f"our enclave refused the contract: {exc.code}: {exc.reason}"
        rec.sigs = [PartySig(me, res.sig)]
        self._persist(r)
        self.runs[r.key] = r
        self._feed_heights(r)
        return r

    def _feed_heights(self, r: Run) -> None:
        for asset, h in sorted(self._heights.items()):
            self.enclave.contract_height(r.cid, asset, h)

    def _add_sigs(self, r: Run, sigs: list[PartySig]) -> str | None:
        """Hand signatures over the contract id to our enclave (it verifies them); keep the good ones."""
        from node.tee.client import EnclaveRefused

        have = {s.party for s in r.rec.sigs}
        new = [s for s in sigs if s.party not in have and 0 <= s.party < len(r.spec.parties)]
        if not new:
            return None
        try:
            self.enclave.contract_open(r.rec.spec, [(s.party, s.sig) for s in new])
        except EnclaveRefused as exc:
            return f"{exc.code}: {exc.reason}"
        r.rec.sigs = sorted([*r.rec.sigs, *new], key=lambda s: s.party)
        self._persist(r)
        return None

    def _open_all(self, r: Run, now: float, skip: int = -1) -> list[Command]:
        """Open the contract with every runner that has not yet shown us its quote and all signatures (but
        ``skip``: the party whose open we are answering; our answer carries our quote and signatures; and a
        runner whose answer to our last open is still to come)."""
        if r.rec.state in TERMINAL or (r.rec.state == WITHHELD and not r.undroppable
                                        and now >= r.progress_at + self.drop_after - 2 * self.request_timeout):
            return []  # (withheld, and a runner that never signed is about to be dropped: no open in flight then)
        busy = self._in_flight(r, now)
        to = [k for k in r.runners() if k not in (r.me, skip) and (k not in r.verified or k not in r.complete)
              and ("open", -1, k) not in busy]
        if not to:
            return []
        binding, quote = self._ident()
        body = self._seal("open", OpenBody(r.rec.spec, quote, list(r.rec.sigs), binding))
        return [self._request(r.key, "open", -1, k, r.spec.parties[k].binding.peer_id, body, now) for k in to]

    def _check_party(self, r: Run, k: int, quote: bytes, binding: Binding | None, now: float) -> str | None:
        if k in r.verified:
            return None
        why = _quote_check(self.attestations, r.spec, k, quote, binding, now)
        if why:
            return why
        from node.tee.client import EnclaveRefused

        try:  # our enclave verifies it too, itself (I3): it releases only to enclaves it verified
            self.enclave.attest_peer(binding or r.spec.parties[k].binding, quote, now=now)
        except EnclaveRefused as exc:
            return f"our enclave refused party {k}'s quote: {exc.code}: {exc.reason}"
        r.verified.add(k)
        return None

    def _opened_note(self, r: Run) -> Notify:
        """``contract.opened``: our enclave took the contract, so our chunks in it are committed (the desk takes
        them off our sheet at once: release/1's retraction at agreement) and the counterparties' devices are
        known. Sent at open and again on every start for a contract still running (idempotent for the reader)."""
        return Notify("contract.opened", {
            "contract": r.key, "party": r.me, "committed": [c.pubkey.hex() for c in r.spec.parties[r.me].chunks],
            "parties": [{"party": k, "peer": p.binding.peer_id, "device": hashlib.sha256(p.binding.sign_pub).hexdigest()}
                        for k, p in enumerate(r.spec.parties) if k != r.me]})

    def _on_open(self, ev: RequestReceived, env: wire.Signed, o: OpenBody, now: float) -> list[Command]:
        spec = decode_spec(o.spec)
        if isinstance(spec, str):
            return self._refuse(ev.request_id, b"", -1, "spec", spec)
        cid = spec_id(spec)
        k = next((k for k, p in enumerate(spec.parties) if p.binding.peer_id == ev.peer), None)
        if k is None or not spec.parties[k].runner:
            return self._refuse(ev.request_id, cid, -1, "wrong-peer", "the sender is not a runner of this contract")
        if env.signer != spec.parties[k].binding.sign_pub:
            return self._refuse(ev.request_id, cid, -1, "signature", "open is not signed by the sender's enclave")
        r = self.runs.get(cid.hex())
        if r is None:
            if cid not in self._expected:
                return self._refuse(ev.request_id, cid, -1, "not-expected", "no such contract was agreed with us")
            why = _quote_check(self.attestations, spec, k, o.quote, o.binding, now)
            if why:  # checked before our enclave takes the contract
                return self._refuse(ev.request_id, cid, -1, "attestation", why)
            return self._check_funds_first(ev.request_id, spec, cid, k, o)
        return self._opened(ev.request_id, r, k, o, now)

    def _check_funds_first(self, request_id: int, spec: ContractSpec, cid: bytes, k: int, o: OpenBody
                           ) -> list[Command]:
        """A new contract opened by a peer: the other parties' funds are checked on the ledger in a task
        (``LedgerCall``, never inside ``handle``); the open is answered when it is done (``_on_funds``)."""
        waiting = self._opening.setdefault(cid, [])
        if len(waiting) >= MAX_WAITING_OPENS:
            return self._refuse(request_id, cid, -1, "busy", "the funds check of this contract is still running")
        waiting.append((request_id, spec, k, o))
        if len(waiting) > 1:
            return []  # a check of this contract is in flight already
        me = self._my_party(spec)
        return [LedgerCall(f"contract-run.funds:{cid.hex()}", "contract_funds_missing",
                           (spec, me, self.price_tolerance))]  # ``_funds_missing`` with our ledger and price

    def _on_funds(self, ev: TaskDone, now: float) -> list[Command]:
        cid = bytes.fromhex(ev.name.split(":", 1)[1])
        waiting = self._opening.pop(cid, [])
        if not waiting:
            return []
        spec = waiting[0][1]
        missing = ev.result if ev.error is None else f"funds unknown: {type(ev.error).__name__}: {ev.error}"
        r = self.runs.get(cid.hex())
        if r is None and cid not in self._expected:  # the agreement lapsed (its hold went) while the check ran
            why = "the agreement lapsed while its funds were checked"
            return [c for rid, *_ in waiting for c in self._refuse(rid, cid, -1, "not-expected", why)]
        if r is None:
            made = missing or self._new_run(spec, cid, now, funds_checked=True)
            if isinstance(made, str):
                code = made.split(":")[0] if made.startswith("funds") else "not-held"
                if "funds unknown" not in made:  # refused for good (a chunk gone or short, or our enclave
                    self.forget(cid)  # refused it): no longer expected, so the host releases its reservation now
                return [c for rid, *_ in waiting for c in self._refuse(rid, cid, -1, code, made)]
            r = made
            self._agreed_done(cid)
            return [self._opened_note(r)] + [c for rid, _, k, o in waiting for c in self._opened(rid, r, k, o, now)]
        return [c for rid, _, k, o in waiting for c in self._opened(rid, r, k, o, now)]

    def _opened(self, request_id: int, r: Run, k: int, o: OpenBody, now: float) -> list[Command]:
        """Answer party ``k``'s open of a contract we run: its quote and signatures, then ``opened``."""
        cid = r.cid
        why = self._check_party(r, k, o.quote, o.binding, now)
        if why:
            return self._refuse(request_id, cid, -1, "attestation", why)
        why = self._add_sigs(r, o.sigs)
        if why:
            return self._refuse(request_id, cid, -1, "signature", why)
        if {s.party for s in o.sigs} >= set(r.runners()):
            r.complete.add(k)
        self._progress(r, now)
        binding, quote = self._ident()
        resp = Respond(request_id, self._seal("opened", OpenedBody(cid, quote, list(r.rec.sigs), binding)))
        return [resp] + self._open_all(r, now, skip=k) + self._drive(r, now)  # (opening k again at once, while a
        # runner had not signed, made two parties open to each other in a loop with no pause)

    def _learn(self, peer: str, env: wire.Signed, w: WhoBody, now: float) -> str | None:
        if w.binding.validate() or w.binding.net != self.net or w.binding.peer_id != peer:
            return "the binding names another peer or network"
        if env.signer != w.binding.sign_pub:
            return "not signed by the enclave the binding names"
        why = self.attestations.check(w.quote, w.binding, now)
        if why:
            return f"untrusted quote: {why}"
        self.known[peer] = w.binding
        self.known_quotes[peer] = w.quote
        self.who_listeners.fire(peer)
        return None

    def attest_known(self, peer: str, now: float) -> None:
        """Our enclave verifies ``peer``'s quote (from ``who``) itself (I3: e.g. a key-escrow holder or recovery
        enclave, before our enclave splits a key to it); ValueError with the reason when it refuses."""
        from node.tee.client import EnclaveRefused

        if peer not in self.known:
            raise ValueError(f"no attested binding from {peer}")
        try:
            self.enclave.attest_peer(self.known[peer], self.known_quotes[peer], now=now)
        except EnclaveRefused as exc:
            raise ValueError(f"our enclave refused {peer}'s quote: {exc.code}: {exc.reason}") from None
