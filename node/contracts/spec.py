"""A contract as the enclaves hold it: terms + each party's committed chunks + the parties' bindings.

Shared by the host (protocols) and the enclave (``node.tee.enclave.contracts``); pure, no I/O.

``ContractSpec`` carries the contract source and parameters, one ``PartySpec`` per party (its attested
``Binding``, whose ``peer_id`` is the party's identity in the terms, and the chunks it commits: deposit
public key, asset, address, amount, USD cents) and the *step order*, which numbers the chunks (a
release record names its step as ``round``). Its id::

    spec_id(spec) = SHA-256("keyswitch/contract-spec/1" || canonical msgpack(spec))

covers terms, commitments and bindings. Every runner's enclave signs it (``Enclave`` domain
"contract-terms", made only inside the enclave when it opens the contract) before anything is released.

Approvals (the escrow arbiter's "release", the option buyer's "exercise") are signatures by a party's
enclave signing key over ``approval_digest(cid, message)`` in the domain "approval".
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import msgspec

from node import wire
from node.tee.binding import Binding

from .errors import ContractError
from .model import Chunk, Terms

SPEC_VERSION = 1
SPEC_TAG = b"keyswitch/contract-spec/1"
CONTEXT_TAG = b"keyswitch/release/1"
APPROVAL_TAG = "keyswitch/contract-approval/1"
MAX_CHUNKS = 1000
MAX_PARTIES = 16
MAX_SPEC = 256 * 1024
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


def make_spec(net: str, source: str, params: dict, parties: list[PartySpec],
              order: list[tuple[int, int]] | None = None) -> ContractSpec:
    """A spec with its parameters in canonical (sorted) order."""
    return ContractSpec(net, source, [Param(k, v) for k, v in sorted(params.items())], list(parties),
                        [tuple(x) for x in order or []])


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
    try:
        compile_spec(spec)
    except ContractError as exc:
        return f"terms: {exc}"
    return None


def decode_spec(data: bytes) -> ContractSpec | str:
    try:
        spec = wire.decode(data, ContractSpec, max_size=MAX_SPEC)
    except wire.WireError as exc:
        return f"malformed contract spec: {exc.reason}"
    return validate_spec(spec) or spec


# -- the signed release record (the envelope shape release/1 has always used) -------------------------
class ReleaseBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    round: int
    deposit_pub: bytes
    recipient: bytes  # the taker enclave's ECIES key the ciphertext is for
    ciphertext: bytes
