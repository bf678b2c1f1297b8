"""The escrow-holder book inside the enclave (``node.enclave.contracts``, "Key escrow under a contract" in its
docstring): ``Holdings``, the contracts this enclave holds escrow shares of, with no party of its own; a share
released only to the term's beneficiary, only when the contract refunds the chunk to its owner."""

from __future__ import annotations

import msgspec

from node.enclave.common import ESCROW_RELEASE_TAG, ESCROW_SPLIT_TAG, MAX_ESCROW_HOLDERS, escrow_aad
from node.contracts import Release
from node.contracts.errors import ContractRuntimeError, StepLimitExceeded
from node.contracts.spec import ContractSpec, compile_spec, decode_spec, escrow_context, spec_id
from node.contracts import evaluate
from node.enclave.contract_records import (
    MAX_CONTRACTS, ContractShare, ContractState, HoldResult, Moved, PartySig, SharePayloadV, ShareStatus,
    SplitShare, _decode_record, _refusal, share_digest,
)
from node.enclave.contracts import Contracts


class Holdings(Contracts):
    """The escrow-holder book of ``EnclaveCore`` (``State.holding``: contracts we hold shares of, with no party
    of our own, ``me = -1``; ``State.cshares``: the shares). Heights and approvals are handed in as for a
    party (``height``, ``approve``); what moved only from the givers' signed release records (``moved``)."""

    @property
    def _all(self) -> list[ContractState]:
        return self.core._state.holding

    def committed(self, pub: bytes) -> bool:  # a holder commits nothing
        return False

    def committed_to(self, pub: bytes) -> bytes | None:
        return None

    def committed_all(self) -> dict[bytes, bytes]:
        return {}

    def _shares(self, cid: bytes) -> list[ContractShare]:
        return [s for s in self.core._state.cshares if s.share.cid == cid]

    def hold(self, spec_bytes: bytes, sigs: list[PartySig], shares: list[SplitShare]) -> HoldResult:
        """Take (or add runners' signatures to) a contract we are an escrow holder of, and the shares sent
        to us; each share must be signed by its owner's enclave, an enclave we verified ourselves (I3: else
        anyone could fill our holdings with contracts of host keys), and bound to this contract and chunk."""
        from node.crypto import DecryptError, ecies_decrypt
        from node.crypto import verify_domain_sig

        spec = decode_spec(spec_bytes)
        if isinstance(spec, str):
            raise _refusal("bad-spec", spec)
        cid = spec_id(spec)
        me = self.core.enc_pub
        if not any(h.enc_pub == me for t in spec.escrows for h in t.holders):
            raise _refusal("not-a-holder", "this enclave is not an escrow holder of the contract")
        for s in sigs:
            if not 0 <= s.party < len(spec.parties) or not self._terms_sig_ok(spec, cid, s.party, s.sig):
                raise _refusal("bad-signature", f"party {s.party}'s signature over the contract id does not verify")
        if len(shares) > MAX_ESCROW_HOLDERS * 1000:
            raise _refusal("bad-request", "too many shares in one call")
        have = {(s.share.party, s.share.index) for s in self._shares(cid)}
        new: list[ContractShare] = []
        for sh in shares:
            term = spec.escrow_of(sh.party, sh.index) if 0 <= sh.party < len(spec.parties) else None
            if term is None or not 0 <= sh.index < len(spec.parties[sh.party].chunks):
                raise _refusal("bad-request", f"chunk {sh.party}/{sh.index} is not escrowed by this contract")
            pos = next((x for x, h in enumerate(term.holders) if h.enc_pub == me), None)
            if pos is None or sh.holder != me:
                raise _refusal("not-a-holder", f"this enclave holds no share of chunk {sh.party}/{sh.index}")
            owner = spec.parties[sh.party].binding
            if (sh.party, sh.index) not in have and not self.core.attested(owner.sign_pub, owner.enc_pub):
                raise _refusal("unattested", f"the owner of chunk {sh.party}/{sh.index} is not an enclave this "
                               "enclave verified (attest_peer its quote first): no share is held for a host key")
            ctx = escrow_context(cid, sh.party, sh.index)
            if not verify_domain_sig(spec.parties[sh.party].binding.sign_pub, "escrow-share",
                                     share_digest(ctx, me, sh.ciphertext), sh.sig):
                raise _refusal("bad-signature", f"share of chunk {sh.party}/{sh.index} is not signed by its owner")
            if (sh.party, sh.index) in have:
                continue  # the deterministic split: the same share again
            pub = spec.parties[sh.party].chunks[sh.index].pubkey
            try:
                p = msgspec.msgpack.decode(ecies_decrypt(self.core._enc, sh.ciphertext, escrow_aad(
                    ESCROW_SPLIT_TAG, pub, ctx)), type=SharePayloadV)
            except (DecryptError, msgspec.MsgspecError) as exc:
                raise _refusal("undecryptable", f"not a share for this enclave ({type(exc).__name__})") from None
            if (p.cid, p.party, p.index, p.pub, p.x, p.k, p.n, p.beneficiary) != (
                    cid, sh.party, sh.index, pub, pos + 1, term.k, len(term.holders), term.beneficiary):
                raise _refusal("wrong-share", f"share of chunk {sh.party}/{sh.index} does not match the terms")
            new.append(ContractShare(p))
            have.add((sh.party, sh.index))
        st = next((c for c in self._all if c.cid == cid), None)
        created = st is None
        if created and cid in self.core._state.forgotten:  # (a new hold only: a list scan, 32 bytes an id)
            raise _refusal("forgotten", "this enclave held shares of the contract and let them go: never again")
        if created and not new:  # only a share signed by its owner opens a holding: no empty ones for anyone
            raise _refusal("unknown-contract", "no share of this contract is held here")
        if created:
            if len(self._all) >= MAX_CONTRACTS:
                raise _refusal("full", f"at most {MAX_CONTRACTS} contracts held in escrow")
            st = ContractState(cid, spec.encode(), -1)
            self._all.append(st)
            self._specs[cid] = spec
        old_sigs = list(st.sigs)
        known = {s.party for s in st.sigs}
        add = list({s.party: s for s in sigs if s.party not in known}.values())
        if created or add or new:
            st.sigs = sorted([*st.sigs, *add], key=lambda s: s.party)
            self.core._state.cshares.extend(new)

            def undo() -> None:
                del self.core._state.cshares[len(self.core._state.cshares) - len(new):]
                st.sigs = old_sigs
                if created:
                    self._all.remove(st)

            self._commit(undo)
        return HoldResult(cid, sorted(have), self._missing(st, spec))

    def forget(self, cid: bytes) -> None:
        """Let go of a contract we hold shares of: its shares, heights and moved chunks leave the sealed state and
        its id is kept (32 bytes), so a hold of it sent again is refused ("forgotten") and no share of it is ever
        released again. Granted whenever the host asks: a forgotten share can only not be released, which harms
        no payee (a share released after its chunk moved could), only the owner's recovery, which the holder's
        host can deny anyway by not passing its asks. The host's escrow protocol asks once every share is
        released or its chunk moved, or the refund path stood open for long (``node.protocols.escrow_letgo``,
        ``LetGo.done_after``, ``open_after``); without it a holder kept every contract it ever held, and its
        bound of contracts held for others counted them all."""
        st, _ = self._get(cid)
        state = self.core._state
        kept = state.cshares
        state.cshares = [s for s in state.cshares if s.share.cid != cid]
        state.forgotten.append(cid)

        def undo() -> None:
            state.cshares = kept
            state.forgotten.pop()

        self._remove(st, cid, undo)

    def _refund_allowed(self, st: ContractState, spec: ContractSpec, party: int, index: int) -> str | None:
        """None when the contract, over our view, refunds chunk (party, index) to its owner now; else why not."""
        from node.contracts import ViewError

        missing = self._missing(st, spec)
        if missing:
            return f"parties {missing} have not signed the contract id"
        try:
            out = evaluate(compile_spec(spec), self._view(st, spec))
        except (ContractRuntimeError, StepLimitExceeded, ViewError) as exc:
            return f"the contract cannot decide yet: {exc}"
        owner = spec.ids[party]
        if Release(owner, index, owner) in out.releases:
            return None
        if any(m.giver == party and m.index == index for m in st.moved):
            return f"chunk {party}/{index} moved to another party (a signed release record)"
        heights = {h.asset: h.height for h in st.heights}
        return f"the contract does not refund chunk {party}/{index} now (status {out.status}, heights {heights})"

    def share(self, cid: bytes, party: int, index: int, recipient: bytes) -> bytes:
        """Our share of chunk (party, index), encrypted to ``recipient``: only if it is the term's beneficiary
        and the contract refunds that chunk now. Again after that: the same sealed ciphertext."""
        from node.crypto import ecies_encrypt

        st, spec = self._get(cid)
        rec = next((s for s in self._shares(cid) if (s.share.party, s.share.index) == (party, index)), None)
        if rec is None:
            raise _refusal("unknown-share", f"no share of chunk {party}/{index} of this contract is held here")
        p = rec.share
        if recipient != p.beneficiary:
            raise _refusal("wrong-recipient", "the contract's escrow names another beneficiary for this chunk")
        self.core.require_attested([], p.beneficiary)  # I3: the terms name it; we must have verified it ourselves
        if rec.state == "released":
            return rec.ciphertext
        if any(m.giver == party and m.index == index for m in st.moved):  # final: a recovery stops asking us
            raise _refusal("moved", f"chunk {party}/{index} moved to another party (a signed release record)")
        why = self._refund_allowed(st, spec, party, index)
        if why:
            raise _refusal("not-allowed", why)
        ctx = escrow_context(cid, party, index)
        ct = ecies_encrypt(p.beneficiary, msgspec.msgpack.encode(p), escrow_aad(ESCROW_RELEASE_TAG, p.pub, ctx))
        rec.state, rec.ciphertext = "released", ct
        self.core._journal("escrow-release", p.pub, p.beneficiary, ctx)

        def undo() -> None:
            rec.state, rec.ciphertext = "held", b""
            self.core._unjournal()

        self._commit(undo)  # sealed before the ciphertext leaves
        return ct

    def moved(self, cid: bytes, record: bytes) -> tuple[int, int, int]:
        """Learn from a giver's signed release record that its chunk went to another party: our share of
        that chunk is then never released (the contract no longer refunds it). Returns (giver, index, receiver)."""
        from node.crypto import verify_domain_sig

        st, spec = self._get(cid)
        env, body, giver, index = _decode_record(spec, cid, record)
        if env.signer != spec.parties[giver].binding.sign_pub or not verify_domain_sig(
                env.signer, "release", env.digest(), env.sig):
            raise _refusal("bad-signature", "the record is not signed by the giver's attested enclave")
        receiver = next((k for k, p in enumerate(spec.parties) if p.binding.enc_pub == body.recipient), None)
        if receiver is None or receiver == giver or body.round != spec.step_of(giver, index):
            raise _refusal("malformed", "the record names no other party of the contract, or another step")
        if not any(m.giver == giver and m.index == index for m in st.moved):
            old = list(st.moved)
            st.moved = [*st.moved, Moved(giver, index, receiver)]

            def undo() -> None:
                st.moved = old

            self._commit(undo)
        return giver, index, receiver

    def status(self, cid: bytes = b"") -> list[ShareStatus]:  # type: ignore[override]
        """Every share we hold (of ``cid``, or of all contracts) and whether it would be released now."""
        out = []
        for st in list(self._all):
            if cid and st.cid != cid:
                continue
            _, spec = self._get(st.cid)
            for s in self._shares(st.cid):
                p = s.share
                why = "" if s.state == "released" else (self._refund_allowed(st, spec, p.party, p.index) or "")
                moved = any(m.giver == p.party and m.index == p.index for m in st.moved)
                out.append(ShareStatus(st.cid, p.party, p.index, s.state, not why, why, moved))
        return out
