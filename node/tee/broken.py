"""A BROKEN simulated TEE, for demonstrations and tests of cheating detection only.

A real TEE's protections can fail (extracted sealing keys, a replayed older
sealed state, a microcode bug). ``BrokenEnclave`` simulates one such device:
the in-process simulated enclave whose sealed record of a key can be rolled
back, so the key looks held again after it was released. Its modes:

* ``double-release``: a key already released is released again to another
  recipient (the record is rolled back to "held" first, as a replayed older
  sealed state would have it), and ``list_keys`` reports released keys as held,
  so the host goes on selling them. Each release is a real one, signed as any;
  two of them are the proof of cheating (``cheating.CheatingProof``).
* ``sweep-after-release``: the owner may still export a released key and sweep
  the deposit away from the counterparty that received it (a double spend on
  the ledger).

Never selected by default: only ``tee.broken = "<mode>"`` (config, or
``KEYSWITCH_TEE_BROKEN``) picks it, and the node logs a loud warning when it
starts. The override rests on the public enclave calls (``contract_open``,
``contract_release``, ``contract_resend``, the raw ``release_key``,
``export_to_owner``, ``list_keys``) and one rollback of the core's key
record: the enclave's contract rules stay the honest ones, only its memory of
what it released is replayed.
"""

from __future__ import annotations

import logging

from node import wire
from node.tee.client import EnclaveRefused, InProcessEnclave, KeyStatus

log = logging.getLogger("keyswitch.tee.broken")
MODES = ("double-release", "sweep-after-release")
BANNER = "BROKEN SIMULATED TEE ({mode}): this enclave {what}; a demonstration of cheating, never for real funds"
WHAT = {"double-release": "releases a deposit key more than once",
        "sweep-after-release": "lets its owner sweep a deposit key after releasing it"}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"broken TEE mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


class BrokenEnclave(InProcessEnclave):
    """The in-process simulated enclave with one broken protection (``mode``, one of ``MODES``)."""

    def __init__(self, datadir=None, *, mode: str, **kw) -> None:
        self.mode = check_mode(mode)
        super().__init__(datadir, **kw)
        self._issued: dict[tuple[bytes, bytes, bytes], bytes] = {}  # (key, recipient, context) -> ciphertext
        self.releases = 0  # releases of keys that were already released (the cheating this device does)
        self._rolled: set[bytes] = set()  # keys rolled back to "held" and not yet released again
        log.warning(self.banner())

    def banner(self) -> str:
        return BANNER.format(mode=self.mode, what=WHAT[self.mode])

    def _rollback(self, pub: bytes) -> bool:
        """Roll the key's sealed record back to "held" (a replayed older sealed state); True if it was released."""
        from node.enclave.core import HELD, RELEASED

        with self._lock:  # the client's lock: no enclave call runs meanwhile
            rec = self._core._by_pub.get(pub) if self._core is not None else None
            if rec is None or rec.state != RELEASED:
                return False
            self._issued[(pub, rec.recipient, rec.context)] = rec.ciphertext
            rec.state, rec.recipient, rec.context, rec.ciphertext = HELD, b"", b"", b""
            return True

    def list_keys(self) -> list[KeyStatus]:
        keys = super().list_keys()
        if self.mode != "double-release":
            return keys
        return [KeyStatus(k.pubkey, "held", b"", k.origin) if k.state == "released" and k.origin != "received"
                else k for k in keys]

    def held_pubkeys(self) -> list[bytes]:
        # what the enclave really holds: its quotes and offer signatures stay consistent with its sealed state
        return [k.pubkey for k in super().list_keys() if k.state in ("held", "received")]

    def release_key(self, deposit_pub: bytes, *args, **kw):
        """The raw release (keys outside any contract): a released key is rolled back and released again."""
        if self.mode == "double-release":
            try:
                return super().release_key(deposit_pub, *args, **kw)
            except EnclaveRefused as exc:
                if exc.code != "already-released" or not self._rollback(deposit_pub):
                    raise
            self._again(deposit_pub)
        return super().release_key(deposit_pub, *args, **kw)

    def _again(self, pub: bytes) -> None:
        self.releases += 1
        log.warning("broken TEE: releasing deposit key %s... a second time", pub.hex()[:16])

    def contract_open(self, spec: bytes, sigs=()):
        """A contract over a key this device already released: the key's record is rolled back to "held"
        (the replayed sealed state), so the enclave's own checks let the contract commit it again."""
        try:
            return super().contract_open(spec, sigs)
        except EnclaveRefused as exc:
            if self.mode != "double-release" or exc.code != "not-held":
                raise
            refused = exc
        from node.contracts.spec import decode_spec

        s = decode_spec(spec)
        me = next((p for p in s.parties if p.binding.sign_pub == self.info().sign_pub), None) \
            if not isinstance(s, str) else None
        rolled = [c.pubkey for c in (me.chunks if me is not None else []) if self._rollback(c.pubkey)]
        if not rolled:
            raise refused
        self._rolled.update(rolled)
        return super().contract_open(spec, sigs)

    def contract_release(self, cid: bytes, index: int, receiver: int) -> bytes:
        return self._released(super().contract_release(cid, index, receiver))

    def contract_step(self, cid: bytes, record: bytes, index: int, receiver: int, ack_digest: bytes,
                      export: bool = False):
        out = super().contract_step(cid, record, index, receiver, ack_digest, export)
        if out.record:
            self._released(out.record)
        return out

    def _released(self, rec: bytes) -> bytes:
        pub = self._record_pub(rec)
        if pub in self._rolled:
            self._rolled.discard(pub)
            self._again(pub)
        return rec

    @staticmethod
    def _record_pub(record: bytes) -> bytes:
        from node.contracts.spec import ReleaseBody

        return wire.decode(wire.decode(record, wire.Signed).body, ReleaseBody).deposit_pub

    def contract_resend(self, cid: bytes, index: int) -> bytes:
        """The first release of a key released again (a retry after a lost ack) is rebuilt from this
        simulation's memory: the rolled-back sealed record no longer names it (the key is released to
        another recipient now, or rolled back and held again)."""
        try:
            return super().contract_resend(cid, index)
        except EnclaveRefused as exc:
            if exc.code not in ("already-released", "not-released"):
                raise
            from node.contracts.spec import release_context

            with self._lock:
                contracts = self._core.contracts
                st, spec = contracts._get(cid)
                m = next((m for m in st.moved if m.giver == st.me and m.index == index), None)
                if m is None:
                    raise
                pub = spec.parties[st.me].chunks[index].pubkey
                step = spec.step_of(st.me, index)
                recipient = spec.parties[m.receiver].binding.enc_pub
                ct = self._issued.get((pub, recipient, release_context(cid, step)))
                if ct is None:
                    raise
                return contracts._record(spec, cid, step, pub, recipient, ct)

    def resend_release(self, deposit_pub: bytes, *args, **kw):
        """The first release of a key released again is no longer in the (rolled back) sealed record: it is
        resent from this simulation's memory."""
        ct = self._issued.get((deposit_pub, *args)) if not kw else None
        return ct if ct is not None else super().resend_release(deposit_pub, *args, **kw)

    def export_to_owner(self, deposit_pub: bytes) -> bytes:
        if self.mode == "sweep-after-release" and self._rollback(deposit_pub):
            self.releases += 1
            log.warning("broken TEE: exporting released deposit key %s... to its owner", deposit_pub.hex()[:16])
        return super().export_to_owner(deposit_pub)
