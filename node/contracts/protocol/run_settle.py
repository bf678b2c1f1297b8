"""``ContractRun``'s claims and outcome (``node.contracts.protocol.run``), sans-IO: a key that came to us checked
(``funds_state``) and claimed (``contract_settle``) in ledger tasks, the claim recorded and reported, the chunks owed to
us named on a stall, a contract stopped (its swap-shaped outcome) or dropped by our enclave."""

from __future__ import annotations

from node.protocols.base import Command, LedgerCall, Notify, SetTimer, TaskDone
from node.contracts.protocol.state import TERMINAL, TRANSITIONS, Run
from node.contracts.protocol.swap import swap_outcome
from node.contracts.protocol.claims import FUNDS_OK, FUNDS_UNKNOWN, ClaimRecord


class Settlement:
    """Claims and outcome of ``ContractRun`` (a mixin: the state, the helpers and the application calls are there)."""

    def _settle(self, r: Run, giver: int, index: int, step: int) -> list[Command]:
        """Claim a key that came to us (sweep or keep a received one; sweep a refunded one to our owner) in a
        ledger task (``LedgerCall``: never inside ``handle``); ``_on_claimed`` records the outcome."""
        if step in r.busy:
            return []
        chunk = r.chunk(giver, index)
        # a peer's key: its chunk must still hold what was committed, and its declared USD value be within
        # risk.price_tolerance at our price now, before we go on, then ``claim_policy``; our own key handed back
        # (a refund): swept home when a claim is configured (``interpret.contract_settle``)
        r.busy.add(step)
        usd = r.spec.parties[giver].chunks[index].usd_cents
        return [LedgerCall(f"contract-run.claim:{r.key}:{giver}:{step}", "contract_settle",
                           (self.claim_policy, chunk, step, giver != r.me, usd, self.price_tolerance,
                            step in r.checked))]

    def _check(self, r: Run, giver: int, index: int, step: int) -> list[Command]:
        """A received key's chunk: does it still hold what was committed, and is its declared USD value within
        ``price_tolerance`` at our price now? (``funds_state``, in a ledger task; ``_on_checked``.)"""
        if step in r.checking or step in r.busy:
            return []
        r.checking.add(step)
        usd = r.spec.parties[giver].chunks[index].usd_cents
        return [LedgerCall(f"contract-run.check:{r.key}:{giver}:{step}", "funds_state",
                           (r.chunk(giver, index), usd, self.price_tolerance))]

    def _on_checked(self, ev: TaskDone, now: float) -> list[Command]:
        """Funds there: the contract goes on and the key is swept alongside. Unknown (our ledger or feed):
        asked again on the retry timer, no one blamed. Short, gone or mispriced: settled first, as before
        (the claim finds and records a double spend, or the mispricing stops the contract)."""
        _, key, giver, step = ev.name.split(":")
        r, giver, step = self.runs.get(key), int(giver), int(step)
        if r is None or step not in r.checking:
            return []
        r.checking.discard(step)
        if r.rec.state in TERMINAL:
            return []
        state, why = ev.result if ev.error is None else (FUNDS_UNKNOWN, f"{type(ev.error).__name__}: {ev.error}")
        if state == FUNDS_OK:
            r.checked.add(step)
            return self._drive(r, now)
        if state == FUNDS_UNKNOWN:
            return [Notify("contract.waiting", {"contract": r.key, "reason": f"step {step}: {why}"})]
        return self._settle(r, giver, r.spec.steps()[step][1], step)

    def _on_claimed(self, ev: TaskDone, now: float) -> list[Command]:
        _, key, giver, step = ev.name.split(":")
        r, giver, step = self.runs.get(key), int(giver), int(step)
        if r is None or step not in r.busy:
            return []
        r.busy.discard(step)
        rec, mispriced = ev.result if isinstance(ev.result, tuple) else (ev.result, None)
        if not isinstance(rec, ClaimRecord):
            rec = ClaimRecord(step, "claim-failed", "", f"{type(ev.error).__name__}: {ev.error}")
        if rec.status == "claim-failed":  # our ledger: retry on the timer, blame no one
            if r.rec.state in TERMINAL:
                return []
            return [Notify("contract.claim-retry", {"contract": r.key, "step": step, "detail": rec.detail})]
        r.rec.claims = [*r.rec.claims, rec]  # kept even if the contract stopped meanwhile (the sweep happened)
        note = [self._claim_note(r, giver, step, rec)] if giver != r.me else []
        if mispriced and giver != r.me and r.rec.state not in TERMINAL:  # the key is ours (claimed); nothing
            # more of ours goes out for it (the claim and the stop in one write: a restart never goes on)
            return note + self._stop(r, "local-refusal", f"step {step}: {mispriced}")
        self._persist(r)  # (the record is written before its notice leaves)
        if r.rec.state in TERMINAL:
            return note
        if rec.status == "double-spent" and giver != r.me:
            return note + self._stop(r, "cheat", f"step {step}: double-spent: {rec.detail}")
        return note + self._drive(r, now)

    def _party_detail(self, r: Run, k: int) -> dict:
        b = r.spec.parties[k].binding
        return {"giver": k, "peer": b.peer_id, "sign_pub": b.sign_pub.hex()}

    def _claim_note(self, r: Run, giver: int, step: int, rec: ClaimRecord) -> Notify:
        """``contract.claim``: a key received from ``giver`` settled (claimed / kept / double-spent), with
        what an outcome report names: the giver's enclave key, the chunk and the transaction. Sent when the
        claim record is written and again on every start (a crash may have lost it): the reporter dedupes."""
        c = r.chunk(*r.spec.steps()[step])
        return Notify("contract.claim", {"contract": r.key, "step": step, **self._party_detail(r, giver),
                                         "status": rec.status, "txid": rec.txid, "detail": rec.detail,
                                         "asset": c.asset, "address": c.address, "deposit_pub": c.pubkey.hex()})

    def _owed(self, r: Run, st) -> list[dict]:
        """The chunks other parties may release to us now by the contract, over our enclave's view (what
        moved, the heights it holds, the approvals delivered since we started): whom a stall is blamed on."""
        from node.contracts import Transfer, View, evaluate
        from node.contracts.errors import ContractRuntimeError
        from node.contracts.model import ViewError
        from node.contracts.spec import compile_spec

        ids = r.spec.ids
        view = View(r.spec.view_chunks(), [Transfer(ids[m.giver], m.index, ids[m.receiver]) for m in st.moved],
                    {h.asset: h.height for h in st.heights}, {}, [(ids[k], msg) for k, msg in r.approvals])
        try:
            out = evaluate(compile_spec(r.spec), view)
        except (ContractRuntimeError, ViewError):  # our enclave cannot evaluate it either: blame no one
            return []
        owed = []
        for x in out.releases:
            if x.receiver == ids[r.me] != x.giver:
                g = ids.index(x.giver)
                c = r.chunk(g, x.index)
                owed.append({**self._party_detail(r, g), "index": x.index, "asset": c.asset, "address": c.address})
        return owed

    def _stop(self, r: Run, event: str, reason: str) -> list[Command]:
        from node.tee.client import EnclaveRefused

        r.rec.state, r.rec.reason = TRANSITIONS[(r.rec.state, event)], reason
        r.rec.ended_at = self._now
        self._persist(r)
        for rid in [rid for rid, p in self._pending.items() if p[0] == r.key]:
            del self._pending[rid]
        self._ended.pop(r.key, None)
        self._ended[r.key] = None
        self._forget_ended()
        try:
            moved = self.enclave.contract_status(r.cid).moved if len(r.spec.parties) == 2 else []
        except EnclaveRefused:
            moved = []
        return [Notify("contract.outcome", {"contract": r.key, "state": r.rec.state, "reason": reason,
                                            **self._outcome_detail(r, moved)}),
                SetTimer(f"contract-run.forget:{r.key}", self._now + self.forget_after)]

    def _forget_ended(self) -> None:
        """Every run ended ``forget_after`` ago, once idle (no claim or funds task in flight: its result is
        recorded on the run), is forgotten by our enclave (``contract_forget``: granted only for a contract over
        for us) and what moved under it written to its record (``summary`` reads it there), so the enclave's
        sealed state holds the contracts running or just ended, not every one ever run. Beyond ``keep_ended``
        ended runs, the earliest ended that our enclave forgot (or refused to) also leave memory; their records
        stay in the store. Called when a contract ends and by each run's "contract-run.forget" timer."""
        from node.tee.client import EnclaveError, EnclaveRefused

        for key in list(self._ended):
            r = self.runs.get(key)
            if r is None or r.busy or r.checking or r.rec.moved or r.unforgettable or \
                    self._now < r.rec.ended_at + self.forget_after:
                continue
            try:  # what moved is written first: a crash between leaves a record that tells it either way
                r.rec.moved = list(self.enclave.contract_status(r.cid).moved)
                self._persist(r)  # (never empty once forgotten: the enclave forgets only after a chunk of ours moved)
                self.enclave.contract_forget(r.cid)
            except EnclaveRefused:
                r.rec.moved, r.unforgettable = [], True  # not over for us (a chunk never moved, an escrow): kept
                self._persist(r)
                continue
            except EnclaveError:  # the enclave is away, the forget done or not: the record keeps what moved
                break
        excess = len(self._ended) - self.keep_ended
        for key in list(self._ended)[:max(0, excess)]:
            r = self.runs.get(key)
            if r is not None and (r.busy or r.checking or r.rec.state not in TERMINAL or (
                    not r.rec.moved and not r.unforgettable)):
                continue  # (not yet forgotten by our enclave: it would stay there)
            del self._ended[key]
            self.runs.pop(key, None)

    def _drop(self, r: Run, missing: list[int]) -> list[Command]:
        """A runner never signed the contract within ``drop_after`` and nothing moved: our enclave drops it (it
        refuses if every runner signed meanwhile, or a key moved) and our chunks in it are ours again."""
        from node.tee.client import EnclaveRefused

        try:
            self.enclave.contract_drop(r.cid)
        except EnclaveRefused as exc:  # (our keys escrowed under it: it runs until its time-lock)
            r.undroppable = True
            return [Notify("contract.waiting", {"contract": r.key, "reason": f"not dropped: {exc.code}: {exc.reason}"})]
        return self._stop(r, "unsigned", f"party {', '.join(map(str, missing))} never signed the contract in "
                                         f"{self.drop_after:.0f} s: dropped, our chunks in it are ours again")

    def _outcome_detail(self, r: Run, moved) -> dict:
        """A two-party contract: ``{"outcome": swap-shaped outcome}`` (what the request desk and the outcome
        reporter read of a swap: released / received / lost and each of the peer's chunks), kept in ``r.outcome``."""
        r.outcome = swap_outcome(r.spec, r.cid, r.me, r.rec.state, r.rec.reason, moved, r.rec.claims)
        return {"outcome": r.outcome.to_json()} if r.outcome is not None else {}
