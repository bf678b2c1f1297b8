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
"""

from __future__ import annotations

import msgspec

from node import wire
from node.contracts import Release, Transfer, View
from node.contracts.errors import ContractRuntimeError, StepLimitExceeded
from node.contracts.spec import (
    RELEASE_KIND, RELEASE_VERSION, ContractSpec, ReleaseBody, approval_digest, compile_spec, decode_spec,
    release_context, spec_id,
)
from node.contracts import evaluate

MAX_CONTRACTS = 10_000
MAX_FACTS = 1000


class PartySig(msgspec.Struct, array_like=True, frozen=True):
    party: int
    sig: bytes


class Moved(msgspec.Struct, array_like=True, frozen=True):
    giver: int
    index: int
    receiver: int


class HeightFact(msgspec.Struct, array_like=True, frozen=True):
    asset: str
    height: int


class ApprovalFact(msgspec.Struct, array_like=True, frozen=True):
    party: int
    message: str


class ContractState(msgspec.Struct, array_like=True):
    cid: bytes
    spec: bytes
    me: int
    sigs: list[PartySig] = []
    heights: list[HeightFact] = []
    approvals: list[ApprovalFact] = []
    moved: list[Moved] = []


# results handed to the host
class OpenResult(msgspec.Struct, array_like=True, frozen=True):
    cid: bytes
    me: int
    sig: bytes  # this enclave's signature over the contract id
    missing: list[int]  # runners whose signature the enclave still lacks


class ContractStatus(msgspec.Struct, array_like=True, frozen=True):
    cid: bytes
    me: int
    status: str  # running | complete | refunding | "waiting: <reason>" (the contract cannot evaluate yet)
    settled: bool
    allowed: list[tuple[int, int, int]]  # (giver = me, index, receiver) the contract allows now
    moved: list[Moved]
    missing: list[int]
    heights: list[HeightFact]
    finished: bool = False  # for us: the contract ended, all our chunks moved, and nothing is still due to us


def _refusal(code: str, reason: str):
    from node.tee.enclave.core import Refusal

    return Refusal(code, reason)


class Contracts:
    """The contract part of ``EnclaveCore`` (its state lives in ``State.contracts``)."""

    def __init__(self, core) -> None:
        self.core = core
        self._specs: dict[bytes, ContractSpec] = {}

    # -- helpers ---------------------------------------------------------------------------
    def committed(self, pub: bytes) -> bool:
        """Is ``pub`` one of our chunks in a contract this enclave opened?"""
        for st in self._all:
            _, spec = self._get(st.cid)
            if any(c.pubkey == pub for c in spec.parties[st.me].chunks):
                return True
        return False

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
        from node.tee.client import verify_domain_sig

        return verify_domain_sig(spec.parties[party].binding.sign_pub, "contract-terms", cid, sig)

    def _commit(self, undo) -> None:
        self.core._commit(undo)

    # -- operations ----------------------------------------------------------------------
    def open(self, spec_bytes: bytes, sigs: list[PartySig]) -> OpenResult:
        from node.crypto import sign_digest, tagged_hash

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
                if rec is None or rec.state != "held":
                    state = "unknown" if rec is None else rec.state
                    raise _refusal("not-held", f"our chunk {i}: deposit key {c.pubkey.hex()[:16]}... is {state}")
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
        from node.tee.client import verify_domain_sig

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

    def _check_allowed(self, st: ContractState, spec: ContractSpec, index: int, receiver: int) -> None:
        missing = self._missing(st, spec)
        if missing:
            raise _refusal("unsigned", f"parties {missing} have not signed the contract id yet")
        if not 0 <= receiver < len(spec.parties) or not 0 <= index < len(spec.parties[st.me].chunks):
            raise _refusal("bad-request", "no such chunk or receiver")
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

    def accept(self, cid: bytes, record: bytes) -> tuple[int, int]:
        """Take a key from a signed release record of the giver's enclave under this contract: checks the
        record (signature by the giver's attested key, contract, step, recipient = us), decrypts and checks
        the key against the committed deposit key. Returns (giver, index); idempotent."""
        from node.tee.client import verify_domain_sig

        st, spec = self._get(cid)
        try:
            env = wire.decode(record, wire.Signed, max_size=256 * 1024)
            body = wire.decode(env.body, ReleaseBody, max_size=256 * 1024)
        except wire.WireError as exc:
            raise _refusal("malformed", f"release record: {exc.reason}") from None
        if env.version != RELEASE_VERSION or env.kind != RELEASE_KIND or env.net != spec.net:
            raise _refusal("malformed", "not a release record of this version and network")
        if body.contract_id != cid:
            raise _refusal("wrong-contract", "the record names another contract")
        owner = spec.owner_of(body.deposit_pub)
        if owner is None:
            raise _refusal("wrong-key", "the record's deposit key is not committed to this contract")
        giver, index = owner
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
