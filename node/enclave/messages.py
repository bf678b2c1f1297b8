"""The enclave's request/response protocol (the narrow boundary).

Framing: a 4-byte big-endian length, then that many bytes of canonical msgpack
(``node.wire``). A request is ``Request(v, id, op)`` where ``op`` is one of the
tagged structs below; a reply is ``Response(v, id, ok, code, reason, body)``,
``body`` being the msgpack of the op's result. ``handle`` never raises: a
malformed, oversized or unknown request gets an error reply with a reason.
"""

from __future__ import annotations

from typing import Union

import msgspec

from node import wire
from node.enclave.contracts import PartySig, SplitShare
from node.enclave.core import EnclaveCore, Refusal
from node.enclave.sealed import SealedStateError

PROTOCOL_VERSION = 1
MAX_FRAME = 64 << 20  # batches of offer sheets can be large
MAX_BATCH = 100_000


class Hello(msgspec.Struct, tag="hello", array_like=True, frozen=True):
    pass


class GenerateKeys(msgspec.Struct, tag="generate", array_like=True, frozen=True):
    n: int


class ListKeys(msgspec.Struct, tag="list", array_like=True, frozen=True):
    pass


class OfferableKeys(msgspec.Struct, tag="offerable", array_like=True, frozen=True):
    """The keys this enclave would sign an offer sheet for (I4): held, not released, not committed."""


class MakeQuote(msgspec.Struct, tag="quote", array_like=True, frozen=True):
    binding: bytes
    timestamp: int
    nonce: bytes = b""


class OfferItem(msgspec.Struct, array_like=True, frozen=True):
    sheet: bytes
    pubs: list[bytes]


class SignOfferSheets(msgspec.Struct, tag="sign-offers", array_like=True, frozen=True):
    items: list[OfferItem]


class SignDomain(msgspec.Struct, tag="sign", array_like=True, frozen=True):
    domain: str
    digest: bytes


class ExportKey(msgspec.Struct, tag="export", array_like=True, frozen=True):
    pub: bytes


class EscrowSplit(msgspec.Struct, tag="escrow-split", array_like=True, frozen=True):
    pub: bytes
    holders: list[bytes]
    k: int
    beneficiary: bytes
    context: bytes


class EscrowAccept(msgspec.Struct, tag="escrow-accept", array_like=True, frozen=True):
    ciphertext: bytes
    owner_pub: bytes
    context: bytes


class EscrowReleaseShare(msgspec.Struct, tag="escrow-release", array_like=True, frozen=True):
    owner_pub: bytes
    context: bytes


class EscrowRecover(msgspec.Struct, tag="escrow-recover", array_like=True, frozen=True):
    owner_pub: bytes
    context: bytes
    ciphertexts: list[bytes]


class PeerQuote(msgspec.Struct, array_like=True, frozen=True):
    binding: bytes  # a peer enclave's Binding (canonical msgpack)
    quote: bytes  # its attestation evidence for that binding
    at: int  # the host's unix time (validity windows only): 0 <= at < 2^40


class AttestPeer(msgspec.Struct, tag="attest-peer", array_like=True, frozen=True):
    """I3: the enclave verifies a peer's quote itself, under its own policy, and remembers the peer."""

    binding: bytes
    quote: bytes
    at: int


class ContractOpen(msgspec.Struct, tag="contract-open", array_like=True, frozen=True):
    spec: bytes
    sigs: list[PartySig]
    quotes: list[PeerQuote] = []  # parties' quotes, verified (attest_peer) before the contract is taken


class ContractHeight(msgspec.Struct, tag="contract-height", array_like=True, frozen=True):
    cid: bytes
    asset: str
    height: int


class ContractApprove(msgspec.Struct, tag="contract-approve", array_like=True, frozen=True):
    cid: bytes
    party: int
    message: str
    sig: bytes


class ContractStatusOp(msgspec.Struct, tag="contract-status", array_like=True, frozen=True):
    cid: bytes


class ContractDrop(msgspec.Struct, tag="contract-drop", array_like=True, frozen=True):
    cid: bytes


class ContractForget(msgspec.Struct, tag="contract-forget", array_like=True, frozen=True):
    cid: bytes


class ContractRelease(msgspec.Struct, tag="contract-release", array_like=True, frozen=True):
    cid: bytes
    index: int
    receiver: int


class ContractResend(msgspec.Struct, tag="contract-resend", array_like=True, frozen=True):
    cid: bytes
    index: int


class ContractRefund(msgspec.Struct, tag="contract-refund", array_like=True, frozen=True):
    cid: bytes
    index: int


class ContractAccept(msgspec.Struct, tag="contract-accept", array_like=True, frozen=True):
    cid: bytes
    record: bytes


class ContractEscrowSplit(msgspec.Struct, tag="contract-escrow-split", array_like=True, frozen=True):
    cid: bytes


class EscrowHold(msgspec.Struct, tag="escrow-hold", array_like=True, frozen=True):
    spec: bytes
    sigs: list[PartySig]
    shares: list[SplitShare]


# the holder's height and approval calls carry what a party's do (and are dispatched before them)
class EscrowHeight(ContractHeight, tag="escrow-height"):
    pass


class EscrowApprove(ContractApprove, tag="escrow-approve"):
    pass


class EscrowMoved(msgspec.Struct, tag="escrow-moved", array_like=True, frozen=True):
    cid: bytes
    record: bytes


class EscrowShare(msgspec.Struct, tag="escrow-share", array_like=True, frozen=True):
    cid: bytes
    party: int
    index: int
    recipient: bytes


class EscrowHoldings(msgspec.Struct, tag="escrow-holdings", array_like=True, frozen=True):
    cid: bytes  # b"": every contract


class EscrowForget(msgspec.Struct, tag="escrow-forget", array_like=True, frozen=True):
    cid: bytes


class EscrowRebuild(msgspec.Struct, tag="escrow-rebuild", array_like=True, frozen=True):
    cid: bytes
    party: int
    index: int
    pub: bytes
    ciphertexts: list[bytes]


class ContractStep(msgspec.Struct, tag="contract-step", array_like=True, frozen=True):
    """contract-accept, then (one call, one round trip) contract-release and a signature over the answer."""

    cid: bytes
    record: bytes
    index: int  # -1: release nothing
    receiver: int
    ack_digest: bytes
    export: bool = False


Op = Union[
    Hello, GenerateKeys, ListKeys, OfferableKeys, MakeQuote, SignOfferSheets, SignDomain, ExportKey, AttestPeer, EscrowSplit, EscrowAccept, EscrowReleaseShare, EscrowRecover,
    ContractOpen, ContractHeight, ContractApprove, ContractStatusOp, ContractRelease, ContractResend,
    ContractRefund, ContractAccept, ContractEscrowSplit, EscrowHold, EscrowHeight, EscrowApprove, EscrowMoved,
    EscrowShare, EscrowHoldings, EscrowForget, EscrowRebuild, ContractStep, ContractDrop, ContractForget,
]


class Request(msgspec.Struct, array_like=True, frozen=True):
    v: int
    id: int
    op: Op


class Response(msgspec.Struct, array_like=True, frozen=True):
    v: int
    id: int
    ok: bool
    code: str  # "ok" or the refusal / error code
    reason: str
    body: bytes = b""


# -- results ------------------------------------------------------------------


class InfoResult(msgspec.Struct, array_like=True, frozen=True):
    protocol: int
    device_id: bytes
    sign_pub: bytes
    enc_pub: bytes
    measurement: str
    simulated: bool
    debug: bool
    device_cert: bytes
    counter: int


class KeyStatusMsg(msgspec.Struct, array_like=True, frozen=True):
    pub: bytes
    state: str
    origin: str
    recipient: bytes


_enc = msgspec.msgpack.Encoder()


def encode_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def _ok(req_id: int, result) -> Response:
    return Response(PROTOCOL_VERSION, req_id, True, "ok", "", _enc.encode(result))


def _dispatch(core: EnclaveCore, op) -> object:
    if isinstance(op, Hello):
        i = core.info()
        return InfoResult(PROTOCOL_VERSION, i["device_id"], i["sign_pub"], i["enc_pub"], i["measurement"],
                          i["simulated"], i["debug"], i["device_cert"], core.counter)
    if isinstance(op, GenerateKeys):
        return core.generate_keys(op.n)
    if isinstance(op, ListKeys):
        return [KeyStatusMsg(r.pub, r.state, r.origin, r.recipient) for r in core.list_keys()]
    if isinstance(op, MakeQuote):
        return core.quote(op.binding, timestamp=op.timestamp, nonce=op.nonce)
    if isinstance(op, SignOfferSheets):
        if len(op.items) > MAX_BATCH:
            raise Refusal("bad-request", f"batch over {MAX_BATCH} items")
        return core.sign_offer_sheets([(it.sheet, it.pubs) for it in op.items])
    if isinstance(op, SignDomain):
        return core.sign(op.domain, op.digest)
    if isinstance(op, OfferableKeys):
        return core.offerable_pubkeys()
    if isinstance(op, AttestPeer):
        return core.attest_peer(op.binding, op.quote, op.at)
    if isinstance(op, ExportKey):
        return core.export_to_owner(op.pub)
    if isinstance(op, EscrowSplit):
        return core.escrow_split(op.pub, list(op.holders), op.k, op.beneficiary, op.context)
    if isinstance(op, EscrowAccept):
        return core.escrow_accept(op.ciphertext, op.owner_pub, op.context)
    if isinstance(op, EscrowReleaseShare):
        return core.escrow_release_share(op.owner_pub, op.context)
    if isinstance(op, EscrowRecover):
        return core.escrow_recover(op.owner_pub, op.context, list(op.ciphertexts))
    if isinstance(op, EscrowRebuild):
        return core.escrow_rebuild(op.cid, op.party, op.index, op.pub, list(op.ciphertexts))
    hs = core.holdings
    if isinstance(op, EscrowHold):
        return hs.hold(op.spec, list(op.sigs), list(op.shares))
    if isinstance(op, EscrowHeight):
        return hs.height(op.cid, op.asset, op.height)
    if isinstance(op, EscrowApprove):
        hs.approve(op.cid, op.party, op.message, op.sig)
        return True
    if isinstance(op, EscrowMoved):
        return list(hs.moved(op.cid, op.record))
    if isinstance(op, EscrowShare):
        return hs.share(op.cid, op.party, op.index, op.recipient)
    if isinstance(op, EscrowHoldings):
        return hs.status(op.cid)
    if isinstance(op, EscrowForget):
        hs.forget(op.cid)
        return True
    cs = core.contracts
    if isinstance(op, ContractEscrowSplit):
        return cs.escrow_split(op.cid)
    if isinstance(op, ContractOpen):
        if len(op.quotes) > 64:
            raise Refusal("bad-request", "over 64 quotes in one contract-open")
        for q in op.quotes:
            core.attest_peer(q.binding, q.quote, q.at)
        return cs.open(op.spec, list(op.sigs))
    if isinstance(op, ContractHeight):
        return cs.height(op.cid, op.asset, op.height)
    if isinstance(op, ContractApprove):
        cs.approve(op.cid, op.party, op.message, op.sig)
        return True
    if isinstance(op, ContractStatusOp):
        return cs.status(op.cid)
    if isinstance(op, ContractDrop):
        cs.drop(op.cid)
        return True
    if isinstance(op, ContractForget):
        cs.forget(op.cid)
        return True
    if isinstance(op, ContractRelease):
        return cs.release(op.cid, op.index, op.receiver)
    if isinstance(op, ContractResend):
        return cs.resend(op.cid, op.index)
    if isinstance(op, ContractRefund):
        return cs.refund(op.cid, op.index)
    if isinstance(op, ContractAccept):
        return list(cs.accept(op.cid, op.record))
    if isinstance(op, ContractStep):
        return cs.step(op.cid, op.record, op.index, op.receiver, op.ack_digest, op.export)
    raise Refusal("unknown-op", type(op).__name__)  # unreachable: the union is closed


#: operations that once were in this set and are NOT served here: a raw release, resend or acceptance of a key
#: outside any contract (no production caller; tests that need them build their own handler table on top of
#: this one, outside this package). Named only to refuse them with a clear reason.
TEST_ONLY_TAGS = {"release": "raw key release outside a contract", "resend": "raw release resend",
                  "accept": "raw key acceptance outside a contract"}


def _test_only_tag(payload: bytes) -> str | None:
    """The tag of a refused test-only operation, when ``payload`` is a request naming one."""
    try:
        raw = msgspec.msgpack.decode(payload) if len(payload) <= MAX_FRAME else None
    except msgspec.MsgspecError:
        return None
    if isinstance(raw, list) and len(raw) == 3 and isinstance(raw[2], list) and raw[2] \
            and isinstance(raw[2][0], str) and raw[2][0] in TEST_ONLY_TAGS:
        return raw[2][0]
    return None


def handle(core: EnclaveCore, payload: bytes) -> bytes:
    """One request payload in, one response payload out. Never raises."""
    try:
        req = wire.decode(payload, Request, max_size=MAX_FRAME)
    except wire.WireError as exc:
        tag = _test_only_tag(payload)
        if tag is not None:
            return _enc.encode(Response(PROTOCOL_VERSION, 0, False, "test-only-op",
                                        f"operation {tag!r} ({TEST_ONLY_TAGS[tag]}) is test-only: the production "
                                        "enclave does not serve it"))
        return _enc.encode(Response(PROTOCOL_VERSION, 0, False, "malformed", f"malformed request: {exc.reason}"))
    if req.v != PROTOCOL_VERSION:
        return _enc.encode(Response(PROTOCOL_VERSION, req.id, False, "unsupported-version",
                                    f"protocol version {req.v} not supported (this enclave speaks {PROTOCOL_VERSION})"))
    try:
        resp = _ok(req.id, _dispatch(core, req.op))
    except Refusal as r:
        resp = Response(PROTOCOL_VERSION, req.id, False, r.code, r.reason)
    except SealedStateError as exc:
        resp = Response(PROTOCOL_VERSION, req.id, False, "sealed-state", exc.reason)
    except Exception as exc:  # a bug; say what kind without echoing data that may hold secrets
        resp = Response(PROTOCOL_VERSION, req.id, False, "internal", f"internal error ({type(exc).__name__})")
    return _enc.encode(resp)
