"""Contracts inside the enclave: the enclave, not its host, decides which key is released to whom.

The host opens a contract with a ``ContractSpec`` (``node.contracts.spec``: terms, every party's committed
chunks and bindings). The enclave compiles the terms, checks it is one of the parties and holds its own
committed keys, and signs the contract id (domain "contract-terms", which the host cannot ask for). It
keeps the contract's *local view* in sealed state:

* the chunks that moved: its own releases and refunds, and the keys it accepted itself from signed
  release records of the giver's enclave (so the host cannot invent a receipt);
* heights handed in by the host (monotonic: a lower height is ignored). A TEE has no trusted clock and
  reads no ledger here, so **the enclave trusts its host for heights**: a lying host can only bring a
  time-lock path forward for its *own* chunks' refund, or delay it;
* approvals (a party's signature over ``approval_digest(cid, message)``), verified here against that
  party's attested signing key;
* the runners' signatures over the contract id (all are needed before the first release).

``release`` asks ``next_release(contract, view, giver=me)``; anything it does not allow is refused with
code ``not-allowed``. The release record (a ``wire.Signed`` "release" envelope around a ``ReleaseBody``
naming contract, step, deposit key, recipient and ciphertext) is signed here with the enclave's signing
key, so two such records for one key are a proof against the *device*, never a host's forgery.
A refund (``receiver == giver``) hands the key back to its owner (the one clear export).

**Key escrow under a contract** (an ``EscrowedSpec``; node/contracts/README.md, "Key escrow"):

* the owner's enclave (``Contracts.escrow_split``) splits each escrowed chunk's key into Shamir shares,
  one per holder, only when every holder and the beneficiary is an enclave it verified itself (I3,
  ``EnclaveCore.require_attested``: else "unattested", and no share is made), encrypted to the holder's attested key with the deposit key, contract, party and chunk
  in the AAD (``escrow_context``) and signed by the owner's enclave (internal domain "escrow-share", so a
  host cannot forge a share). The split is *deterministic* (the polynomial comes from a PRF keyed by the
  private key itself and bound to contract and chunk), so a re-split after a crash gives the holders the
  very same shares. It changes nothing in the owner's state: the key stays committed and the contract
  keeps releasing it as before (escrow never blocks the normal path).
* a holder's enclave (``Holdings``) keeps the contract like a party's enclave does (terms, the runners'
  signatures over the contract id, heights from its host, verified approvals) but with *no party* of its
  own; what moved, it learns only from the givers' signed release records shown to it (``moved``). It
  releases its share of chunk (p, i) **only** when the contract, evaluated over that view, refunds the
  chunk to its owner p (``Release(p, i, p)``: the time-lock path, or whatever the contract's refund rule
  says), only once every runner signed, and only to the term's ``beneficiary`` (the owner's recovery
  enclave), once it verified that enclave's quote itself (I3). Asked for another recipient, before the height, for another contract or chunk: refused. A
  share goes to one recipient only, ever (the beneficiary is fixed by the signed terms; the released
  ciphertext is sealed and handed out again, never re-encrypted to anyone else).
* **Safety assumption** (as with any HTLC): a holder cannot see a release it was not shown. A payee that
  received chunk (p, i) must sweep it *before* the time-lock height (or show the giver's signed release
  record to the holders, which then refuse for good): otherwise the owner's recovery enclave may rebuild
  the key at the height and race the payee. Heights come from the holder's host, as for parties: k
  holder hosts lying together can bring the refund forward, with the same consequence.

``Contracts`` (a party's book) is here; its records and the results handed to the host are in
``contract_records`` (importable from here as before), the owner's escrow split (``Contracts.escrow_split``) in
``contract_split``, the holder's book ``Holdings`` in ``contract_holdings``.
"""

from __future__ import annotations

import contextlib
import hashlib

from node import wire
from node.enclave.common import Refusal
from node.contracts import Release, Transfer, View
from node.contracts.errors import ContractRuntimeError, StepLimitExceeded
from node.contracts.spec import (
    RELEASE_KIND, RELEASE_VERSION, SPEC_TAG, ContractSpec, ReleaseBody, approval_digest, compile_spec, decode_spec,
    release_context, spec_id,
)
from node.contracts import evaluate
from node.enclave.contract_records import (
    MAX_CONTRACTS, MAX_FACTS, ApprovalFact, ContractState, ContractStatus, HeightFact, Moved, OpenResult, PartySig,
    StepResult, _decode_record, _refusal,
)
from node.enclave.contract_records import (  # noqa: F401 (re-exported: the records callers import from here)
    ContractShare, HoldResult, SharePayloadV, ShareStatus, SplitShare, share_digest,
)
from node.enclave.contract_split import EscrowSplit


class Contracts(EscrowSplit):
    """The contract part of ``EnclaveCore`` (its state lives in ``State.contracts``)."""

    def __init__(self, core) -> None:
        self.core = core
        self._specs: dict[bytes, ContractSpec] = {}

    # -- helpers ---------------------------------------------------------------------------
    def committed(self, pub: bytes) -> bool:
        """Is ``pub`` one of our chunks committed to an open contract (``committed_to``)?"""
        return self.committed_to(pub) is not None

    def committed_all(self) -> dict[bytes, bytes]:
        """Every key committed now (``committed_to``), to its contract id: one pass for a batch of checks."""
        out: dict[bytes, bytes] = {}
        for st in self._all:
            _, spec = self._get(st.cid)
            moved = {m.index for m in st.moved if m.giver == st.me}
            left = [i for i in range(len(spec.parties[st.me].chunks)) if i not in moved]
            for i in left:
                if not self._ended_without(st, spec, [i]):
                    out.setdefault(spec.parties[st.me].chunks[i].pubkey, st.cid)
        return out

    def committed_to(self, pub: bytes) -> bytes | None:
        """The id of the open contract ``pub`` (one of our chunks) is committed to, else None (I1).

        A chunk stays committed until it moved under that contract (released to a party, or refunded to us),
        or the contract ended without a release of it (status no longer "running" and the contract releases
        nothing of that chunk): only then may its owner export it, split it or commit it again."""
        for st in self._all:
            _, spec = self._get(st.cid)
            idx = [i for i, c in enumerate(spec.parties[st.me].chunks) if c.pubkey == pub]
            if not idx:
                continue
            if all(any(m.giver == st.me and m.index == i for m in st.moved) for i in idx):
                continue  # it moved under this contract: the key's own state (released / exported) governs
            if self._ended_without(st, spec, idx):
                continue
            return st.cid
        return None

    def _ended_without(self, st: ContractState, spec: ContractSpec, idx: list[int]) -> bool:
        """The contract ended (not running) and releases none of our chunks ``idx`` to anyone."""
        from node.contracts import ViewError

        if self._missing(st, spec):
            return False  # not every runner signed: it cannot be said to have ended
        try:
            out = evaluate(compile_spec(spec), self._view(st, spec))
        except (ContractRuntimeError, StepLimitExceeded, ViewError):
            return False
        me = spec.ids[st.me]
        return out.status != "running" and not any(r.giver == me and r.index in idx for r in out.releases)

    @property
    def _all(self) -> list[ContractState]:
        return self.core._state.contracts

    def _get(self, cid: bytes) -> tuple[ContractState, ContractSpec]:
        st = next((c for c in self._all if c.cid == cid), None)
        if st is None:
            raise _refusal("unknown-contract", f"no open contract {cid.hex()[:16]}...")
        spec = self._specs.get(cid)
        if spec is None:
            spec = decode_spec(st.spec)
            if isinstance(spec, str):  # sealed by us: cannot happen unless the code changed incompatibly
                raise _refusal("bad-spec", spec)
            self._specs[cid] = spec
        return st, spec

    def _missing(self, st: ContractState, spec: ContractSpec) -> list[int]:
        have = {s.party for s in st.sigs}
        return [k for k, p in enumerate(spec.parties) if p.runner and k not in have]

    def _view(self, st: ContractState, spec: ContractSpec) -> View:
        ids = spec.ids
        return View(spec.view_chunks(), [Transfer(ids[m.giver], m.index, ids[m.receiver]) for m in st.moved],
                    {h.asset: h.height for h in st.heights}, {},
                    [(ids[a.party], a.message) for a in st.approvals])

    def _allowed(self, st: ContractState, spec: ContractSpec) -> tuple[list[Release], object]:
        contract = compile_spec(spec)
        try:
            out = evaluate(contract, self._view(st, spec))
        except (ContractRuntimeError, StepLimitExceeded) as exc:
            raise _refusal("contract-error", f"the contract failed to evaluate: {exc}") from None
        me = spec.ids[st.me]
        return [r for r in out.releases if r.giver == me], out

    def _finished(self, st: ContractState, spec: ContractSpec, out) -> bool:
        """The contract is over *for us*: all our chunks moved, nothing more is allowed to or from us, and
        either it ended (complete / refunding) or every party that gave to us has given us all its chunks
        (our view cannot see transfers between others, e.g. the rest of a ring)."""
        me = spec.ids[st.me]
        if any(r.giver == me or r.receiver == me for r in out.releases):
            return False
        if len({m.index for m in st.moved if m.giver == st.me}) != len(spec.parties[st.me].chunks):
            return False
        if out.status != "running":
            return True
        senders = {m.giver for m in st.moved if m.receiver == st.me != m.giver}
        return bool(senders) and all(
            sum(1 for m in st.moved if m.giver == g) == len(spec.parties[g].chunks) for g in senders)

    def _terms_sig_ok(self, spec: ContractSpec, cid: bytes, party: int, sig: bytes) -> bool:
        from node.crypto import verify_domain_sig

        return verify_domain_sig(spec.parties[party].binding.sign_pub, "contract-terms", cid, sig)

    def _commit(self, undo) -> None:
        self.core._commit(undo)

    # -- operations ----------------------------------------------------------------------
    def _opened(self, spec_bytes: bytes) -> tuple[ContractState, ContractSpec] | None:
        """The contract these exact spec bytes opened before (its sealed spec was decoded and checked then,
        and is cached): a later open (the parties' signatures, the host asking for ours again) skips both."""
        cid = hashlib.sha256(SPEC_TAG + spec_bytes).digest()  # = spec_id when the bytes are the canonical encoding
        st = next((c for c in self._all if c.cid == cid), None)
        return self._get(cid) if st is not None and st.spec == spec_bytes else None

    def open(self, spec_bytes: bytes, sigs: list[PartySig]) -> OpenResult:
        from node.crypto import sign_digest, tagged_hash

        known = self._opened(spec_bytes)
        if known is not None:
            spec, cid, me = known[1], known[0].cid, known[0].me
        else:
            spec = decode_spec(spec_bytes)
            if isinstance(spec, str):
                raise _refusal("bad-spec", spec)
            cid = spec_id(spec)
            me = next((k for k, p in enumerate(spec.parties)
                       if p.binding.sign_pub == self.core.sign_pub and p.binding.enc_pub == self.core.enc_pub), None)
            if me is None:
                raise _refusal("not-a-party", "this enclave's keys are not one of the contract's parties")
        for s in sigs:
            if not 0 <= s.party < len(spec.parties) or not self._terms_sig_ok(spec, cid, s.party, s.sig):
                raise _refusal("bad-signature", f"party {s.party}'s signature over the contract id does not verify")
        st = next((c for c in self._all if c.cid == cid), None)
        own = sign_digest(self.core._sign, tagged_hash("keyswitch/contract-terms", cid))
        if st is None:
            if len(self._all) >= MAX_CONTRACTS:
                raise _refusal("full", f"at most {MAX_CONTRACTS} contracts")
            for i, c in enumerate(spec.parties[me].chunks):
                rec = self.core._by_pub.get(c.pubkey)
                if rec is None or rec.state not in ("held", "received"):  # received: a key kept from a contract
                    state = "unknown" if rec is None else rec.state
                    raise _refusal("not-held", f"our chunk {i}: deposit key {c.pubkey.hex()[:16]}... is {state}")
                other = self.committed_to(c.pubkey)
                if other is not None:  # I1: one key, one open contract
                    raise _refusal("committed", f"our chunk {i}: deposit key {c.pubkey.hex()[:16]}... is already "
                                   f"committed to open contract {other.hex()[:16]}...")
            st = ContractState(cid, spec.encode(), me, [PartySig(me, own)])
            self._all.append(st)
            self._specs[cid] = spec
            old = None
        else:
            old = list(st.sigs)
        have = {s.party for s in st.sigs}
        new = list({s.party: s for s in sigs if s.party not in have}.values())
        if new or old is None:
            st.sigs = [*st.sigs, *new]

            def undo() -> None:
                if old is None:
                    self._all.remove(st)
                else:
                    st.sigs = old

            self._commit(undo)
        return OpenResult(cid, me, own, self._missing(st, spec))

    def drop(self, cid: bytes) -> None:
        """Forget an open contract that not every runner has signed and under which nothing moved: our chunks in
        it are ours again (uncommitted: offered, exportable, committable again). A contract every runner signed,
        or one under which a key moved, is never dropped: it runs until the contract ends it (I1). Only our own
        signature can have left, and no release happens before every runner's is here, so no party's enclave
        can have released to us yet under it. Not a contract under which our keys are escrowed (their holders
        keep its terms). A later open of the same spec is a new open, with every check."""
        st, spec = self._get(cid)
        missing = self._missing(st, spec)
        if not missing:
            raise _refusal("signed", "every runner signed the contract: it runs until the contract ends it")
        if st.moved:
            raise _refusal("moved", f"{len(st.moved)} key(s) moved under the contract: it runs until it ends")
        if any(t.party == st.me for t in spec.escrows):  # shares of our keys went to holders under this contract:
            raise _refusal("escrowed", "our chunks' keys are escrowed under the contract: it runs until it ends")
        self._remove(st, cid)

    def _remove(self, st: ContractState, cid: bytes, undo_also=None) -> None:
        """``st`` out of the sealed state (``drop``, ``forget``, a holder's ``forget`` with its own changes, which
        ``undo_also`` reverts); undone in memory if the write fails."""
        at = self._all.index(st)
        self._all.remove(st)
        spec_cached = self._specs.pop(cid, None)

        def undo() -> None:
            self._all.insert(at, st)
            if spec_cached is not None:
                self._specs[cid] = spec_cached
            if undo_also is not None:
                undo_also()

        self._commit(undo)

    def forget(self, cid: bytes) -> None:
        """Drop a contract that is over for us from the sealed state: every chunk of ours moved under it (released
        to a party or refunded to us), nothing more is allowed to or from us (``_finished``), and none of our keys
        is escrowed under it. What it moved stays in the key table (released, received, exported), so no key
        leaves twice; and a later open of the same spec is refused (our chunks are no longer held). Without it
        the state kept every contract ever run, written whole on each sealed write, and refused new contracts
        past ``MAX_CONTRACTS``: a peer could drive a node there with value-neutral swaps."""
        st, spec = self._get(cid)
        _, out = self._allowed(st, spec)
        if not spec.parties[st.me].chunks:
            raise _refusal("not-finished", "we give no chunk under this contract: it is kept")
        if not self._finished(st, spec, out):
            raise _refusal("not-finished", "the contract is not over for us: a chunk of ours has not moved or a "
                           "release to or from us is still allowed")
        if any(t.party == st.me for t in spec.escrows):
            raise _refusal("escrowed", "our chunks' keys are escrowed under the contract: it is kept")
        self._remove(st, cid)

    def height(self, cid: bytes, asset: str, height: int) -> int:
        st, spec = self._get(cid)
        if not 0 <= height < 1 << 62 or not asset or len(asset) > 64:
            raise _refusal("bad-request", "height out of range or bad asset name")
        cur = next((h for h in st.heights if h.asset == asset), None)
        if cur is not None and cur.height >= height:
            return cur.height  # heights only move forward
        if cur is None and len(st.heights) >= MAX_FACTS:
            raise _refusal("full", "too many heights")
        old = list(st.heights)
        st.heights = sorted([h for h in st.heights if h.asset != asset] + [HeightFact(asset, height)],
                            key=lambda h: h.asset)

        def undo() -> None:
            st.heights = old

        self._commit(undo)
        return height

    def approve(self, cid: bytes, party: int, message: str, sig: bytes) -> None:
        from node.crypto import verify_domain_sig

        st, spec = self._get(cid)
        if not 0 <= party < len(spec.parties) or not message or len(message) > 256:
            raise _refusal("bad-request", "no such party, or a bad message")
        if not verify_domain_sig(spec.parties[party].binding.sign_pub, "approval", approval_digest(cid, message), sig):
            raise _refusal("bad-signature", f"not party {party}'s signature over ({cid.hex()[:16]}..., {message!r})")
        if any(a.party == party and a.message == message for a in st.approvals):
            return
        if len(st.approvals) >= MAX_FACTS:
            raise _refusal("full", "too many approvals")
        old = list(st.approvals)
        st.approvals = [*st.approvals, ApprovalFact(party, message)]

        def undo() -> None:
            st.approvals = old

        self._commit(undo)

    def status(self, cid: bytes) -> ContractStatus:
        st, spec = self._get(cid)
        try:
            allowed, out = self._allowed(st, spec)
        except Exception as exc:  # a Refusal: e.g. no height handed in yet; what moved is still answered
            if getattr(exc, "code", "") != "contract-error":
                raise
            return ContractStatus(cid, st.me, "waiting: " + exc.reason, False, [], list(st.moved),
                                  self._missing(st, spec), list(st.heights), False)
        ids = spec.ids
        return ContractStatus(cid, st.me, out.status, out.settled,
                              [(st.me, r.index, ids.index(r.receiver)) for r in allowed], list(st.moved),
                              self._missing(st, spec), list(st.heights), self._finished(st, spec, out))

    def _unattested(self, spec: ContractSpec, receiver: int) -> list[int]:
        """The runners, and ``receiver``, whose enclave this enclave has not verified itself (I3)."""
        return [k for k, p in enumerate(spec.parties)
                if (p.runner or k == receiver) and not self.core.attested(p.binding.sign_pub, p.binding.enc_pub)]

    def _check_allowed(self, st: ContractState, spec: ContractSpec, index: int, receiver: int) -> None:
        missing = self._missing(st, spec)
        if missing and receiver != st.me:  # (a refund needs no one's signature: the contract's rule decides;
            # a committed key whose counterparty never signed is not locked forever, I1 makes it leave only so)
            raise _refusal("unsigned", f"parties {missing} have not signed the contract id yet")
        if not 0 <= receiver < len(spec.parties) or not 0 <= index < len(spec.parties[st.me].chunks):
            raise _refusal("bad-request", "no such chunk or receiver")
        if receiver != st.me:
            unverified = self._unattested(spec, receiver)
            if unverified:  # I3: a key leaves only to an enclave, in a contract run by enclaves, verified here
                raise _refusal("unattested", f"parties {unverified} are not enclaves this enclave verified "
                               "(hand their quotes in: attest_peer / contract_open quotes)")
        allowed, _ = self._allowed(st, spec)
        want = Release(spec.ids[st.me], index, spec.ids[receiver])
        if want not in allowed:
            raise _refusal("not-allowed", f"the contract does not allow our chunk {index} to party {receiver} now"
                           + (f" (it allows {[(r.index, r.receiver) for r in allowed]})" if allowed else ""))

    def _record(self, spec: ContractSpec, cid: bytes, step: int, pub: bytes, recipient: bytes, ct: bytes) -> bytes:
        from node.crypto import sign_digest, tagged_hash

        body = wire.encode(ReleaseBody(cid, step, pub, recipient, ct))
        digest = wire.signing_digest(RELEASE_VERSION, spec.net, RELEASE_KIND, body)
        sig = sign_digest(self.core._sign, tagged_hash("keyswitch/release", digest))
        return wire.encode(wire.Signed(RELEASE_VERSION, spec.net, RELEASE_KIND, body, self.core.sign_pub, sig))

    def release(self, cid: bytes, index: int, receiver: int) -> bytes:
        """Release our chunk ``index`` to party ``receiver`` if the contract allows it now: the signed record."""
        st, spec = self._get(cid)
        if receiver == st.me:
            raise _refusal("bad-request", "a refund hands the key to its owner: use refund")
        self._check_allowed(st, spec, index, receiver)
        chunk = spec.parties[st.me].chunks[index]
        step = spec.step_of(st.me, index)
        recipient = spec.parties[receiver].binding.enc_pub
        ct = self.core.release_key(chunk.pubkey, recipient, release_context(cid, step), _moved=(st, Moved(
            st.me, index, receiver)))
        return self._record(spec, cid, step, chunk.pubkey, recipient, ct)

    def resend(self, cid: bytes, index: int) -> bytes:
        """The record of a past release of our chunk ``index`` (the journaled ciphertext; nothing new leaves)."""
        st, spec = self._get(cid)
        m = next((m for m in st.moved if m.giver == st.me and m.index == index), None)
        if m is None or m.receiver == st.me:
            raise _refusal("not-released", f"our chunk {index} was not released under this contract")
        chunk = spec.parties[st.me].chunks[index]
        step = spec.step_of(st.me, index)
        recipient = spec.parties[m.receiver].binding.enc_pub
        ct = self.core.resend_release(chunk.pubkey, recipient, release_context(cid, step))
        return self._record(spec, cid, step, chunk.pubkey, recipient, ct)

    def refund(self, cid: bytes, index: int) -> bytes:
        """Hand our chunk ``index`` back to its owner (the private key, for the owner's sweep) when the
        contract says so (a release with ``receiver == giver``). Again after a crash: the same key."""
        st, spec = self._get(cid)
        if not 0 <= index < len(spec.parties[st.me].chunks):
            raise _refusal("bad-request", "no such chunk")
        pub = spec.parties[st.me].chunks[index].pubkey
        done = any(m.giver == st.me and m.index == index and m.receiver == st.me for m in st.moved)
        if done:
            return self.core._record(pub).priv
        self._check_allowed(st, spec, index, st.me)
        return self.core.export_to_owner(pub, _moved=(st, Moved(st.me, index, st.me)))

    def step(self, cid: bytes, record: bytes, index: int, receiver: int, ack_digest: bytes,
             export: bool = False) -> StepResult:
        """One round of a tit-for-tat contract in one call: ``accept`` the peer's signed release record (every
        check of ``accept``; a refusal there refuses the call and releases nothing), with ``export`` hand the
        key just taken to its owner as well (``core.export_to_owner``: the owner's sweep then reads it without
        a write of its own), sign the host's answer (``ack_digest``, domain "release-msg", as ``sign``
        would), then, unless ``index`` is -1, ``release`` our chunk ``index`` to ``receiver`` if the
        contract, its view now holding the key just taken, allows it (every check of ``release``; the key
        journaled before its ciphertext leaves). The host has seen the funds of the key it hands in still
        there before it asks for a release (the enclave reads no ledger)."""

        if len(ack_digest) != 32:
            raise _refusal("bad-request", "the answer's digest must be 32 bytes")
        with self._one_write():
            giver, taken = self.accept(cid, record)
            if export:
                _, spec = self._get(cid)
                self.core.export_to_owner(spec.parties[giver].chunks[taken].pubkey)
            sig = self.core.sign("release-msg", ack_digest)
            try:
                rec = self.release(cid, index, receiver) if index != -1 else b""
                out = StepResult(giver, taken, rec, "", "", sig)
            except Refusal as exc:
                out = StepResult(giver, taken, b"", exc.code, exc.reason, sig)
        return out  # (the record leaves only now: after the one sealed write of the key taken and ours released)

    @contextlib.contextmanager
    def _one_write(self):
        """The core's sealed writes inside the block made as one, when it ends: a round's accept and release
        seal once (one fsync where three were: each save first syncs the counter the previous one advanced).
        Nothing made inside may leave before the block ends. An exception inside, or a failed write, undoes
        every change of the block (so memory matches what is sealed) and is raised."""
        core, undos = self.core, []

        def undo_all() -> None:
            for undo in reversed(undos):
                undo()
            core._by_pub = {r.pub: r for r in core._state.keys}  # (a key taken is indexed after its commit)

        core._commit = undos.append  # shadows EnclaveCore._commit on this instance while the block runs
        try:
            yield
        except BaseException:
            undo_all()
            raise
        finally:
            del core._commit
        if undos:
            core._commit(undo_all)

    def accept(self, cid: bytes, record: bytes) -> tuple[int, int]:
        """Take a key from a signed release record of the giver's enclave under this contract: checks the
        record (signature by the giver's attested key, contract, step, recipient = us), decrypts and checks
        the key against the committed deposit key. Returns (giver, index); idempotent."""
        from node.crypto import verify_domain_sig

        st, spec = self._get(cid)
        env, body, giver, index = _decode_record(spec, cid, record)
        if giver == st.me:
            raise _refusal("wrong-recipient", "that chunk is ours")
        if env.signer != spec.parties[giver].binding.sign_pub or not verify_domain_sig(
                env.signer, "release", env.digest(), env.sig):
            raise _refusal("bad-signature", "the record is not signed by the giver's attested enclave")
        if body.recipient != self.core.enc_pub:
            raise _refusal("wrong-recipient", "the record releases the key to another enclave")
        if body.round != spec.step_of(giver, index):
            raise _refusal("wrong-round", f"chunk {giver}[{index}] is step {spec.step_of(giver, index)}, "
                           f"not {body.round}")
        if any(m.giver == giver and m.index == index for m in st.moved):
            return giver, index
        self.core.accept_key(body.ciphertext, release_context(cid, body.round), body.deposit_pub,
                             _moved=(st, Moved(giver, index, st.me)))
        return giver, index
