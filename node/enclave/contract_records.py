"""The records of the contracts inside the enclave (``node.enclave.contracts``): what its sealed state keeps per
contract (``ContractState``: the spec, our party, the runners' signatures, heights, approvals, what moved) and per
escrow share held, the results handed to the host, and the helpers both books use (a release record decoded and
checked against the contract, a refusal)."""

from __future__ import annotations

import msgspec

from node import wire
from node.enclave.common import Refusal
from node.contracts.spec import RELEASE_KIND, RELEASE_VERSION, ContractSpec, ReleaseBody


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


class SplitShare(msgspec.Struct, array_like=True, frozen=True):
    """One escrow share of chunk (party, index) for one holder, signed by the owner's enclave."""

    party: int
    index: int
    holder: bytes  # the holder's ECIES key
    ciphertext: bytes
    sig: bytes  # owner's enclave, domain "escrow-share", over share_digest(...)


class SharePayloadV(msgspec.Struct, array_like=True, frozen=True):
    """The plaintext of a contract escrow share (to a holder, and from a holder to the beneficiary)."""

    cid: bytes
    party: int
    index: int
    pub: bytes
    x: int
    k: int
    n: int
    y: bytes
    beneficiary: bytes


class ContractShare(msgspec.Struct, array_like=True):
    """A share this enclave holds as an escrow holder of a contract's chunk (``share.y`` is secret)."""

    share: SharePayloadV
    state: str = "held"  # held | released
    ciphertext: bytes = b""  # the sealed release to the beneficiary (handed out again, never re-made)

    def __repr__(self) -> str:
        s = self.share
        return f"ContractShare(cid={s.cid.hex()[:16]}, chunk={s.party}/{s.index}, {self.state}, y=<redacted>)"


class HoldResult(msgspec.Struct, array_like=True, frozen=True):
    cid: bytes
    held: list[tuple[int, int]]  # (party, index) of every share of this contract we hold
    missing: list[int]  # runners whose signature over the contract id we still lack


class ShareStatus(msgspec.Struct, array_like=True, frozen=True):
    cid: bytes
    party: int
    index: int
    state: str  # held | released
    allowed: bool  # would the share be released to the beneficiary now
    why: str = ""  # when not: the reason
    moved: bool = False  # its chunk went to another party (a giver's release record): never released


def share_digest(context: bytes, holder: bytes, ciphertext: bytes) -> bytes:
    from node.crypto import tagged_hash

    return tagged_hash("keyswitch/escrow-share-digest/1", context, holder, ciphertext)


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


def _decode_record(spec: ContractSpec, cid: bytes, record: bytes) -> tuple[wire.Signed, ReleaseBody, int, int]:
    """A release record's envelope, body and chunk (giver, index), if it is one of this contract's."""
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
    return env, body, owner[0], owner[1]


class StepResult(msgspec.Struct, array_like=True, frozen=True):
    """``Contracts.step``: the key taken (giver, index), our release record (b"" when the contract does not
    allow it now: ``code``/``reason`` say why) and our "release-msg" signature over the answer's digest."""

    giver: int
    index: int
    record: bytes
    code: str
    reason: str
    ack_sig: bytes


def _refusal(code: str, reason: str):
    return Refusal(code, reason)
