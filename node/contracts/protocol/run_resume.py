"""``ContractRun`` restored from its records on ``Started`` (``node.contracts.protocol.run``), sans-IO: every
contract of ``store`` not ended re-opened in our enclave, its unacknowledged releases resent, its claim notices sent
again (and those of the ``keep_ended`` ended last: older ones stay on disk only); every
agreement of ``agreed`` still within ``agreement_ttl`` expected again."""

from __future__ import annotations

from node.contracts.spec import decode_spec, spec_id
from node.protocols.base import Command, Notify, SetTimer
from node.contracts.protocol.state import TERMINAL, AgreedRecord, Run
from node.enclave.contracts import PartySig


class Restore:
    """``ContractRun`` after a restart (a mixin: the state, the helpers and the application calls are there)."""

    def _resume_agreed(self, now: float) -> list[Command]:
        """Contracts agreed before a restart and not yet opened with us: expected again (or dropped: run here
        already, older than ``agreement_ttl``, or unreadable); an agreement time after ``now`` becomes ``now``."""
        cmds: list[Command] = []
        for key, rec in self.agreed.items():
            spec = rec if isinstance(rec, str) else decode_spec(rec.spec)
            if isinstance(spec, str):
                cmds.append(Notify("contract.store-error", {"contract": key, "reason": f"agreement: {spec}"}))
            elif key == spec_id(spec).hex() and key not in self.runs and now < rec.at + self.agreement_ttl:
                if rec.at > now:  # agreed "in the future": the wall clock was stepped back since. Counted from now,
                    rec = AgreedRecord(rec.spec, now)  # so no restart again later finds a whole TTL left
                    self.agreed.put(key, rec)  # (``node.contracts.desk.lapse``)
                self._expected[spec_id(spec)] = (spec, rec.at)
                continue
            self.agreed.delete(key)
        return cmds

    def _resume(self, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        cmds: list[Command] = []
        records = self.store.items()
        ended = [k for _, k in sorted((rec.ended_at, k) for k, rec in records
                                      if not isinstance(rec, str) and rec.state in TERMINAL)]
        kept = set(ended[len(ended) - self.keep_ended:]) if self.keep_ended > 0 else set()
        for key, rec in records:
            if isinstance(rec, str):
                cmds.append(Notify("contract.store-error", {"contract": key, "reason": rec}))
                continue
            if rec.state in TERMINAL and key not in kept:
                continue  # ended long ago: on disk only (``keep_ended``)
            spec = decode_spec(rec.spec)
            if isinstance(spec, str):
                cmds.append(Notify("contract.store-error", {"contract": key, "reason": spec}))
                continue
            me = self._my_party(spec)
            r = Run(rec, spec, spec_id(spec), me, progress_at=now, verified={me})
            self.runs[r.key] = r
            for c in rec.claims:  # settled claims of received keys, again: a crash may have lost the notice
                giver = spec.steps()[c.round][0]
                if giver != me:
                    cmds.append(self._claim_note(r, giver, c.round, c))
            if rec.state in TERMINAL:  # our enclave forgets it ``forget_after`` after it ended (if not already)
                self._ended[r.key] = None
                cmds.append(SetTimer(f"contract-run.forget:{r.key}", max(now, rec.ended_at + self.forget_after)))
                continue
            try:  # idempotent: re-opens a contract the crash caught before our enclave took it
                res = self.enclave.contract_open(rec.spec, [(s.party, s.sig) for s in rec.sigs if s.party != me])
                if all(s.party != me for s in rec.sigs):  # a record migrated from release/1 keeps no signatures
                    rec.sigs = sorted([*rec.sigs, PartySig(me, res.sig)], key=lambda s: s.party)
                    self._persist(r)
                st = self.enclave.contract_status(r.cid)
            except EnclaveRefused as exc:
                if exc.code != "contract-error":
                    cmds += self._stop(r, "local-refusal", f"on resume: {exc.code}: {exc.reason}")
                    continue
                st = None
            if st is not None:
                for m in st.moved:  # our releases the receiver has not acknowledged: resend them
                    if m.giver == me != m.receiver:
                        step = spec.step_of(me, m.index)
                        if step not in rec.acked:
                            r.pending[step] = self.enclave.contract_resend(r.cid, m.index)
            cmds += [self._opened_note(r)] + self._open_all(r, now) + self._resend(r, now) + self._drive(r, now)
        return cmds + self._resume_agreed(now)
