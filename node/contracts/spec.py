"""A contract as the enclaves hold it: terms + each party's committed chunks + the parties' bindings.

Shared by the host (protocols) and the enclave (``node.enclave.contracts``); pure, no I/O.

``ContractSpec`` carries the contract source and parameters, one ``PartySpec`` per party (its attested
``Binding``, whose ``peer_id`` is the party's identity in the terms, and the chunks it commits: deposit
public key, asset, address, amount, USD cents) and the *step order*, which numbers the chunks (a
release record names its step as ``round``). Its id::

    spec_id(spec) = SHA-256("keyswitch/contract-spec/1" || canonical msgpack(spec))

covers terms, commitments and bindings. Every runner's enclave signs it (``Enclave`` domain
"contract-terms", made only inside the enclave when it opens the contract) before anything is released.

Approvals (the escrow arbiter's "release", the option buyer's "exercise") are signatures by a party's
enclave signing key over ``approval_digest(cid, message)`` in the domain "approval".

**Key escrow** (``EscrowedSpec``, issue 7's liveness half): a spec may also name, per party (for all its
chunks, or a list of them), escrow holders (attested enclave encryption keys, with the peer id to reach
them), a threshold ``k`` and the owner's recovery ``beneficiary`` (its heir/backup enclave's encryption
key). ``EscrowedSpec`` is ``ContractSpec`` plus a trailing ``escrow`` list, a separate type so that a
spec without escrow encodes exactly as before (same bytes, same ``spec_id``); ``decode_spec`` reads
either. The owner's enclave splits each such chunk's key to the holders (``Contracts.escrow_split``),
the holders release their shares only when the contract refunds that chunk to its owner
(``node.enclave.contract_holdings.Holdings``), and only to ``beneficiary``; see node/contracts/README.md.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import msgspec

from node import wire
from node.attest.binding import Binding

from .errors import ContractError
from .model import Chunk, Terms

SPEC_VERSION = 1
SPEC_TAG = b"keyswitch/contract-spec/1"
CONTEXT_TAG = b"keyswitch/release/1"
APPROVAL_TAG = "keyswitch/contract-approval/1"
MAX_CHUNKS = 1000
MAX_PARTIES = 16
MAX_SPEC = 256 * 1024
MAX_ESCROW_HOLDERS = 16
ESCROW_SHARE_TAG = b"keyswitch/contract-escrow/1"
RELEASE_KIND = "release"
RELEASE_VERSION = 1

ParamValue = bool | int | str


class Commit(msgspec.Struct, array_like=True, frozen=True):
    """One chunk a party commits: its deposit key and the values the others verified on the ledger."""

    pubkey: bytes  # 33-byte compressed deposit key
    asset: str
    address: str
    amount: int
    usd_cents: int = 0


class PartySpec(msgspec.Struct, array_like=True, frozen=True):
    binding: Binding
    chunks: list[Commit] = []
    runner: bool = True  # runs the protocol with an enclave (an arbiter that only signs approvals does not)


class Param(msgspec.Struct, array_like=True, frozen=True):
    name: str
    value: ParamValue


class ContractSpec(msgspec.Struct, array_like=True, frozen=True):
    net: str
    source: str
    params: list[Param]
    parties: list[PartySpec]
    order: list[tuple[int, int]] = []  # (party, chunk index) per step; empty: party order, then index
    version: int = SPEC_VERSION

    def encode(self) -> bytes:
        return wire.encode(self)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.binding.peer_id for p in self.parties)

    def terms(self) -> Terms:
        return Terms(self.source, {p.name: p.value for p in self.params}, self.ids)

    def steps(self) -> list[tuple[int, int]]:
        if self.order:
            return [tuple(s) for s in self.order]
        return [(k, i) for k, p in enumerate(self.parties) for i in range(len(p.chunks))]

    def step_of(self, party: int, index: int) -> int:
        return self.steps().index((party, index))

    def view_chunks(self) -> dict[str, list[Chunk]]:
        return {p.binding.peer_id: [Chunk(c.asset, c.amount, c.usd_cents) for c in p.chunks] for p in self.parties}

    def party_of(self, peer_id: str) -> int:
        return self.ids.index(peer_id)

    def owner_of(self, pubkey: bytes) -> tuple[int, int] | None:
        for k, p in enumerate(self.parties):
            for i, c in enumerate(p.chunks):
                if c.pubkey == pubkey:
                    return k, i
        return None

    @property
    def escrows(self) -> list["EscrowTerm"]:
        """The escrow terms (none for a plain ``ContractSpec``)."""
        return list(getattr(self, "escrow", []))

    def escrow_of(self, party: int, index: int) -> "EscrowTerm | None":
        """The escrow term covering ``party``'s chunk ``index``, if any."""
        return next((t for t in self.escrows if t.party == party and (not t.chunks or index in t.chunks)), None)

    def escrowed_chunks(self, term: "EscrowTerm") -> list[int]:
        return list(term.chunks) if term.chunks else list(range(len(self.parties[term.party].chunks)))


class EscrowHolder(msgspec.Struct, array_like=True, frozen=True):
    enc_pub: bytes  # the holder enclave's attested ECIES key (its share is encrypted to it)
    peer_id: str  # where its node is reached (routing only: the share itself is bound to enc_pub)


class EscrowTerm(msgspec.Struct, array_like=True, frozen=True):
    """Party ``party``'s chunks ``chunks`` (empty: all of them) in Shamir shares, ``k`` of the holders'
    rebuild a key; shares are released only to ``beneficiary`` (the owner's recovery enclave's ECIES key)
    and only when the contract refunds the chunk to the party (the time-lock path)."""

    party: int
    chunks: list[int]
    holders: list[EscrowHolder]
    k: int
    beneficiary: bytes


class EscrowedSpec(ContractSpec):
    """A ``ContractSpec`` whose owners escrow (some of) their chunks' keys; ``escrow`` is never empty."""

    escrow: list[EscrowTerm] = []


def make_spec(net: str, source: str, params: dict, parties: list[PartySpec],
              order: list[tuple[int, int]] | None = None, escrow: list[EscrowTerm] | None = None) -> ContractSpec:
    """A spec with its parameters in canonical (sorted) order; with ``escrow`` terms, an ``EscrowedSpec``."""
    args = (net, source, [Param(k, v) for k, v in sorted(params.items())], list(parties),
            [tuple(x) for x in order or []])
    if escrow:
        return EscrowedSpec(*args, escrow=sorted(escrow, key=lambda t: t.party))
    return ContractSpec(*args)


def escrow_context(cid: bytes, party: int, index: int) -> bytes:
    """What an escrow share is bound to (its AAD, with the deposit key): contract, party, chunk."""
    return ESCROW_SHARE_TAG + cid + party.to_bytes(2, "big") + index.to_bytes(4, "big")


def _valid_key(pub: bytes) -> bool:
    return isinstance(pub, bytes) and len(pub) == 33 and pub[0] in (2, 3)


def validate_escrow(spec: ContractSpec) -> str | None:
    """A reason when the escrow terms are malformed, else None."""
    if type(spec) is EscrowedSpec and not spec.escrows:
        return "an escrowed spec names at least one escrow term (else it is a plain contract spec)"
    parties = [t.party for t in spec.escrows]
    if parties != sorted(set(parties)):
        return "escrow terms must be sorted by party, one per party"
    for t in spec.escrows:
        where = f"escrow of party {t.party}"
        if not 0 <= t.party < len(spec.parties) or not spec.parties[t.party].chunks:
            return f"{where}: no such party with chunks"
        n = len(spec.parties[t.party].chunks)
        if list(t.chunks) != sorted(set(t.chunks)) or not all(0 <= i < n for i in t.chunks):
            return f"{where}: chunk indices must be sorted, unique and in range"
        if not 2 <= t.k <= len(t.holders) <= MAX_ESCROW_HOLDERS:
            return f"{where}: need 2 <= k <= holders <= {MAX_ESCROW_HOLDERS}"
        keys = [h.enc_pub for h in t.holders]
        if len(set(keys)) != len(keys) or not all(_valid_key(h) for h in keys):
            return f"{where}: holders must be distinct compressed secp256k1 keys"
        if not all(0 < len(h.peer_id) <= 128 for h in t.holders):
            return f"{where}: every holder needs a peer id (1..128 characters)"
        if not _valid_key(t.beneficiary) or t.beneficiary in keys:
            return f"{where}: the beneficiary must be a compressed secp256k1 key and not a holder"
    return None


def spec_id(spec: ContractSpec) -> bytes:
    return hashlib.sha256(SPEC_TAG + spec.encode()).digest()


def release_context(cid: bytes, rnd: int) -> bytes:
    """The context a release ciphertext is bound to (its AAD): contract and step."""
    return CONTEXT_TAG + cid + rnd.to_bytes(4, "big")


def approval_digest(cid: bytes, message: str) -> bytes:
    from node.crypto import tagged_hash

    return tagged_hash(APPROVAL_TAG, cid, message.encode())


@lru_cache(maxsize=256)
def _compile(source: str, params: tuple, parties: tuple):
    from . import compile_terms

    return compile_terms(Terms(source, dict(params), parties))


def compile_spec(spec: ContractSpec):
    """The compiled ``node.contracts.Contract`` of the spec's terms (ContractError if bad)."""
    return _compile(spec.source, tuple((p.name, p.value) for p in spec.params), spec.ids)


def validate_spec(spec: ContractSpec) -> str | None:
    """A reason when the spec is malformed, else None (its terms compile; keys, order and bindings are sane)."""
    if spec.version != SPEC_VERSION:
        return f"unsupported contract spec version {spec.version}"
    if not 1 <= len(spec.parties) <= MAX_PARTIES:
        return f"a contract has 1..{MAX_PARTIES} parties"
    names = [p.name for p in spec.params]
    if names != sorted(set(names)):
        return "parameters must be sorted by name and unique"
    seen: set[bytes] = set()
    total = 0
    for k, p in enumerate(spec.parties):
        bad = p.binding.validate()
        if bad:
            return f"party {k}: {bad}"
        if p.binding.net != spec.net:
            return f"party {k}: binding is for network {p.binding.net!r}, not {spec.net!r}"
        for i, c in enumerate(p.chunks):
            if len(c.pubkey) != 33 or c.pubkey[0] not in (2, 3):
                return f"party {k} chunk {i}: deposit key is not a compressed secp256k1 key"
            if c.pubkey in seen:
                return f"party {k} chunk {i}: deposit key appears twice"
            seen.add(c.pubkey)
            if c.amount <= 0 or c.usd_cents < 0 or not c.asset or not c.address:
                return f"party {k} chunk {i}: needs an asset, an address, a positive amount"
            total += 1
        if p.chunks and not p.runner:
            return f"party {k} commits chunks, so it must run the protocol"
    if len({p.binding.peer_id for p in spec.parties}) != len(spec.parties):
        return "a party appears twice"
    if total > MAX_CHUNKS:
        return f"at most {MAX_CHUNKS} chunks"
    if spec.order:
        want = sorted((k, i) for k, p in enumerate(spec.parties) for i in range(len(p.chunks)))
        if sorted(tuple(s) for s in spec.order) != want:
            return "the step order must name every chunk exactly once"
    bad = validate_escrow(spec)
    if bad:
        return bad
    try:
        compile_spec(spec)
    except ContractError as exc:
        return f"terms: {exc}"
    return None


def decode_spec(data: bytes) -> ContractSpec | str:
    """A plain spec, or an ``EscrowedSpec`` (one more trailing element); a reason when neither."""
    try:
        spec = wire.decode(data, ContractSpec, max_size=MAX_SPEC)
    except wire.WireError as exc:
        try:
            spec = wire.decode(data, EscrowedSpec, max_size=MAX_SPEC)
        except wire.WireError:
            return f"malformed contract spec: {exc.reason}"
    return validate_spec(spec) or spec


# -- the signed release record (the envelope shape release/1 has always used) -------------------------
class ReleaseBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    round: int
    deposit_pub: bytes
    recipient: bytes  # the taker enclave's ECIES key the ciphertext is for
    ciphertext: bytes
