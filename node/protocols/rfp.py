"""Requests for proposals: the switchboard spread across peers' risk engines.

A client wants "X USD of asset Y under contract Z, with these diversity
limits". It gossips a signed ``Request`` on ``/keyswitch/<net>/requests/1``;
every peer whose risk engine can answer *within its own caps* sends back a
signed ``Proposal`` (the chunks it would allocate, from its own offer book)
over the stream protocol ``/keyswitch/contract/1``. The client's own engine
answers too. At the deadline the client chooses by its own rules: it pools
the proposed chunks that its own book also holds (it trusts its own view of
the attestation and the ledger, not the proposer's) and runs its own
allocator over that pool, within its own caps. The answer (``Chosen``) names
which proposals contributed.

Both messages are signed by the sender's libp2p identity key (Ed25519; the
key is read out of the peer id: ``node.peerkey``), carry ``expiry`` and are
size-bounded. Validation is pure and every check is labelled ``[REJECT]`` or
``[IGNORE]`` as in the consensus specs.

Contract agreement ("run this contract with me") shares the stream protocol and
lives in ``node.contracts.protocol.agreement``: ``RfpProtocol`` hands it those messages.

Responder sortition (request version 2). A request carries ``draw_bp``: the
share of peers, in basis points, drawn to answer it. A peer answers only if
``drawn(request_id, its peer id, draw_bp)``: a hash of the two, read as a
fraction, falls under the share; 10,000 draws every peer. The client sets
the share so that about ``target_proposals`` (``DEFAULT_TARGET_PROPOSALS``)
peers answer, from how many answered its earlier requests (the first one
goes to every peer); when fewer than a quarter of the target arrive by the
deadline it asks once more under a new id with four times the share
(every peer at most), keeping what came, and decides at the second deadline.
Why k proposals suffice: the client never takes a proposer's word for a
chunk, it pools only the proposed chunks its *own* book holds, adds its own
engine's answer and runs its own allocator over that pool within its own
caps. A proposal adds chunks the client's own allocator did not reach for;
k peers drawn at random (not chosen by the client: the draw is fixed by the
request id and the peer id, and the client gains nothing from grinding ids,
as it is free to ignore proposals anyway) give as diverse a pool as all of
them when the books agree, and the request costs the network ~k allocations
and k proposals instead of one per full node. A proposal from a peer that
was not drawn is IGNOREd.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import msgspec

from node import peerkey, wire
from node.assets.prices import DEFAULT_PRICE_TOLERANCE, StaticPrices, declared_usd_mismatch
from node.contracts.protocol.agreement import Ack, Agreement, ContractOffer  # noqa: F401 (Ack, ContractOffer re-exported)
from node.protocols.base import (
    Command, Event, GossipReceived, Listeners, Notify, Publish, RequestReceived, Respond, ResponseReceived,
    SendRequest, SetTimer, Started, TimerFired, Validation, topic,
)
from node.protocols.signed import (  # noqa: F401 (re-exported: the envelope, shared with contract agreement)
    CONTRACT_PROTOCOL, MAX_CLOCK_SKEW, MAX_LIFETIME, MAX_PROPOSAL_SIZE, RFP_VERSION, SignedMsg, lifetime, sign_msg,
    signing_bytes,
)
from node.risk.allocate import Limits
from node.risk.types import Candidate

REQUEST_VERSION = 2  # 2: responder sortition (``draw_bp``)
DRAW_ALL_BP = 10_000  # every peer is drawn
DEFAULT_TARGET_PROPOSALS = 16
MAX_REQUEST_SIZE = 2 * 1024
MAX_OFFERS_PER_PROPOSAL = 500
MAX_REQUEST_CENTS = 10_000_000  # $100k in one request
DEFAULT_DEADLINE = 5.0


class Request(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    request_id: bytes  # 16 random bytes
    client: str  # peer id; signs the request
    asset: str
    usd_cents: int
    contract: str  # contract kind or terms hash
    max_per_device: int
    max_share_device_bp: int  # basis points of usd_cents
    max_share_owner_bp: int
    issued_at: float
    expiry: float
    draw_bp: int  # share of peers drawn to answer, basis points (10,000: every peer)

    def limits(self) -> Limits:
        return Limits(self.max_per_device, self.max_share_device_bp / 10_000, self.max_share_owner_bp / 10_000)


class ProposedOffer(msgspec.Struct, array_like=True, frozen=True):
    offer_id: bytes
    device_id: bytes
    owner: str
    usd_cents: int


class Proposal(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    request_id: bytes
    proposer: str  # peer id; signs the proposal
    offers: list[ProposedOffer]
    total_cents: int
    issued_at: float
    expiry: float


def drawn(request_id: bytes, peer_id: str, draw_bp: int) -> bool:
    """Whether ``peer_id`` is drawn to answer the request: sha256(tag, request id, peer id), its first 8 bytes
    read as a fraction of 2**64, under ``draw_bp`` / 10,000."""
    if draw_bp >= DRAW_ALL_BP:
        return True
    h = hashlib.sha256(b"keyswitch/rfp/draw\x00" + request_id + peer_id.encode()).digest()
    return int.from_bytes(h[:8], "big") * DRAW_ALL_BP < draw_bp << 64


def draw_share(target: int, responders: float | None) -> int:
    """The ``draw_bp`` that draws about ``target`` of ``responders`` peers (every peer when the count is
    unknown, at or under the target, or the target is 0)."""
    if not target or responders is None or responders <= target:
        return DRAW_ALL_BP
    return max(1, min(DRAW_ALL_BP, math.ceil(target * DRAW_ALL_BP / responders)))


def _reject(reason: str) -> Validation:
    return Validation.reject(reason)


def _ignore(reason: str) -> Validation:
    return Validation.ignore(reason)


def validate_request(data: bytes, *, net: str, now: float, seen: Callable[[bytes], bool]
                     ) -> tuple[Validation, Request | None]:
    """ACCEPT / REJECT / IGNORE for a gossiped request (pure but for ``seen``)."""
    # [REJECT] Within the size limit, canonical encoding, kind "request".
    if len(data) > MAX_REQUEST_SIZE:
        return _reject(f"over size: {len(data)} > {MAX_REQUEST_SIZE} bytes"), None
    try:
        msg = wire.decode(data, SignedMsg, max_size=MAX_REQUEST_SIZE)
        if msg.kind != "request":
            return _reject(f"wrong kind {msg.kind!r} on the requests topic"), None
        req = wire.decode(msg.body, Request, max_size=MAX_REQUEST_SIZE)
    except wire.WireError as exc:
        return _reject(f"malformed: {exc.reason}"), None
    # [REJECT] A version we speak, our network.
    if req.version != REQUEST_VERSION:
        return _reject(f"unsupported request version {req.version}"), None
    if req.net != net:
        return _reject(f"wrong network {req.net!r} (we are {net!r})"), None
    # [REJECT] Well-formed fields and limits within bounds.
    if len(req.request_id) != 16:
        return _reject("request_id must be 16 bytes"), None
    if not 0 < req.usd_cents <= MAX_REQUEST_CENTS:
        return _reject(f"usd_cents must be in (0, {MAX_REQUEST_CENTS}], got {req.usd_cents}"), None
    if not 1 <= req.max_per_device <= 1000:
        return _reject(f"max_per_device must be in [1, 1000], got {req.max_per_device}"), None
    for name in ("max_share_device_bp", "max_share_owner_bp"):
        v = getattr(req, name)
        if not 0 < v <= 10_000:
            return _reject(f"{name} must be in (0, 10000], got {v}"), None
    if not 0 < req.draw_bp <= DRAW_ALL_BP:
        return _reject(f"draw_bp must be in (0, {DRAW_ALL_BP}], got {req.draw_bp}"), None
    if not req.asset or len(req.asset) > 32 or len(req.contract) > 128:
        return _reject("asset (1..32 chars) or contract (..128 chars) out of bounds"), None
    bad = lifetime(req.issued_at, req.expiry, now)
    if bad is not None and bad.result.value == "reject":
        return bad, None
    # [REJECT] Signed by the client's identity key.
    if not peerkey.verify(req.client, signing_bytes(msg.kind, msg.body), msg.sig):
        return _reject("bad signature (not by the client's identity key)"), None
    if bad is not None:
        return bad, None
    # [IGNORE] Not seen before.
    if seen(req.request_id):
        return _ignore("duplicate request"), None
    return Validation.accept(), req


def validate_proposal(data: bytes, *, net: str, now: float, request: Request | None, from_peer: str
                      ) -> tuple[Validation, Proposal | None]:
    """ACCEPT / REJECT / IGNORE for a proposal received on the contract stream."""
    # [REJECT] Within the size limit, canonical, kind "proposal".
    if len(data) > MAX_PROPOSAL_SIZE:
        return _reject(f"over size: {len(data)} > {MAX_PROPOSAL_SIZE} bytes"), None
    try:
        msg = wire.decode(data, SignedMsg, max_size=MAX_PROPOSAL_SIZE)
        if msg.kind != "proposal":
            return _reject(f"wrong kind {msg.kind!r} on {CONTRACT_PROTOCOL}"), None
        prop = wire.decode(msg.body, Proposal, max_size=MAX_PROPOSAL_SIZE)
    except wire.WireError as exc:
        return _reject(f"malformed: {exc.reason}"), None
    if prop.version != RFP_VERSION:
        return _reject(f"unsupported proposal version {prop.version}"), None
    if prop.net != net:
        return _reject(f"wrong network {prop.net!r} (we are {net!r})"), None
    # [REJECT] The stream's peer is the signer.
    if prop.proposer != from_peer:
        return _reject("proposer is not the peer that sent it"), None
    if not peerkey.verify(prop.proposer, signing_bytes(msg.kind, msg.body), msg.sig):
        return _reject("bad signature (not by the proposer's identity key)"), None
    # [REJECT] Bounded, consistent offers.
    if not 0 < len(prop.offers) <= MAX_OFFERS_PER_PROPOSAL:
        return _reject(f"must propose 1..{MAX_OFFERS_PER_PROPOSAL} offers, got {len(prop.offers)}"), None
    if len({o.offer_id for o in prop.offers}) != len(prop.offers):
        return _reject("an offer is proposed twice"), None
    if any(len(o.offer_id) != 32 or len(o.device_id) != 32 or o.usd_cents <= 0 for o in prop.offers):
        return _reject("malformed offer (ids are 32 bytes, values positive)"), None
    if sum(o.usd_cents for o in prop.offers) != prop.total_cents:
        return _reject("total_cents is not the sum of the offers"), None
    bad = lifetime(prop.issued_at, prop.expiry, now)
    if bad is not None:
        return bad, None
    # [IGNORE] It answers a request of ours that is still open.
    if request is None:
        return _ignore("no open request with this id"), None
    # [IGNORE] The proposer was drawn to answer this request.
    if not drawn(request.request_id, prop.proposer, request.draw_bp):
        return _ignore("proposer not drawn for this request"), None
    # [REJECT] Within the request's own limits (a device's share is never below one chunk: node.risk.allocate).
    per_dev: dict[bytes, list[int]] = {}
    for o in prop.offers:
        per_dev.setdefault(o.device_id, []).append(o.usd_cents)
    lim = request.limits()
    for dev, vals in per_dev.items():
        if len(vals) > lim.max_per_device or sum(vals) > max(int(lim.max_share_device * request.usd_cents),
                                                              min(vals)):
            return _reject(f"over the request's per-device limit for device {dev.hex()[:16]}"), None
    return Validation.accept(), prop


@dataclass
class OpenRequest:
    request: Request
    deadline: float
    origin: bytes = b""  # the id the client asked under first (its answer is filed under it)
    rounds: int = 1  # 2 after a re-ask with a wider draw
    proposals: dict[str, Proposal] = field(default_factory=dict)  # proposer -> proposal
    refused: dict[str, str] = field(default_factory=dict)  # proposer -> reason
    #: our book's offers of the request's asset and our price of it, read at the first proposal (``_mispriced``)
    priced: tuple[dict, dict] | None = None
    #: owners whose offers this client leaves out of its choice (a request to contracts asking for its
    #: shortfall again: not from the providers that refused or withheld; ``node.protocols.request_run``)
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Chosen:
    request_id: bytes
    ok: bool
    offers: tuple[Candidate, ...]
    total_cents: int
    target_cents: int
    from_proposers: tuple[str, ...]  # peers whose proposals hold at least one chosen offer
    proposals: int
    reason: str = ""
    notes: tuple[str, ...] = ()  # how the allocation rules bent (``Allocation.notes``)

    def to_json(self) -> dict:
        return {"request_id": self.request_id.hex(), "ok": self.ok, "total_cents": self.total_cents,
                "target_cents": self.target_cents, "overshoot_cents": max(0, self.total_cents - self.target_cents),
                "proposals": self.proposals, "from_proposers": list(self.from_proposers), "reason": self.reason,
                "notes": list(self.notes),
                "offers": [{"offer_id": c.offer_id.hex(), "device": c.device_id.hex(), "owner": c.owner_id,
                            "usd_cents": c.usd_cents, "address": c.address} for c in self.offers]}


class RfpProtocol:
    """Sans-IO requests-for-proposals. ``engine`` is a ``node.risk.engine.RiskEngine``;
    ``sign`` signs as this node's peer id (``PeerSigner.sign``)."""

    def __init__(self, *, net: str, engine, sign: Callable[[bytes], bytes], proposal_ttl: float = 60.0,
                 max_open: int = 64, seen_limit: int = 10_000,
                 target_proposals: int = DEFAULT_TARGET_PROPOSALS, prices=None,
                 price_tolerance: float = DEFAULT_PRICE_TOLERANCE, rng: random.Random | None = None) -> None:
        """``prices``: OUR price feed (``node.assets.prices.PriceFeed``; default the embedded table): a
        proposal whose USD value of an offer strays from the offer's amount at our price beyond
        ``price_tolerance`` (config ``risk.price_tolerance``) is ignored, its reason counted. ``rng``: where
        request ids come from, passed in by the composition root (the simulator and tests: a seeded
        ``random.Random``, for replay; default ``random.SystemRandom()``, the OS's entropy: a request id must
        not be predictable from earlier ones, which a Mersenne twister seeded once is not)."""
        if not 0 <= price_tolerance < 1:
            raise ValueError(f"price_tolerance must be a fraction in [0, 1), got {price_tolerance!r}")
        self.prices = prices if prices is not None else StaticPrices()
        self.price_tolerance = price_tolerance
        self.rng = rng if rng is not None else random.SystemRandom()
        self.net = net
        self.topic = topic(net, "requests", 1)
        self.topics = [self.topic]
        self.stream_protocols = [CONTRACT_PROTOCOL]
        self.engine = engine
        self.sign = sign
        self.proposal_ttl = proposal_ttl
        self.max_open = max_open
        self.local_peer = ""
        self.open: dict[bytes, OpenRequest] = {}
        self.results: dict[bytes, Chosen] = {}
        self._seen: dict[bytes, None] = {}
        self._seen_limit = seen_limit
        self._next = 0
        self.stats = {"requests_in": 0, "proposals_out": 0, "proposals_in": 0, "proposals_refused": 0,
                      "declined": 0, "not_drawn": 0, "reasked": 0, "contracts_offered": 0, "contracts_accepted": 0, "contracts_refused": 0}
        #: woken by our request id once its decision is in ``results``
        self.result_listeners = Listeners()
        self.reasons: dict[str, int] = {}
        #: contract agreement, on the same stream protocol (``node.contracts.protocol.agreement``)
        self.agreement = Agreement(net=net, sign=sign, stats=self.stats, reasons=self.reasons)
        #: proposals a request should draw (0: every peer answers every request); ``responders`` estimates how
        #: many peers answer a request sent to all (proposals received / share drawn, smoothed)
        self.target_proposals = target_proposals
        self.responders: float | None = None
        self._accepted: tuple[bytes, Request] | None = None  # the last request ``validate`` accepted

    # ------------------------------------------------------------ gossip
    def _remember(self, rid: bytes) -> None:
        self._seen[rid] = None
        while len(self._seen) > self._seen_limit:
            self._seen.pop(next(iter(self._seen)))

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        if topic_ != self.topic:
            return _ignore(f"not our topic {topic_}")
        v, req = validate_request(data, net=self.net, now=now, seen=lambda rid: rid in self._seen)
        if v.result.value != "accept":
            key = f"{v.result.value}: {v.reason.split(':', 1)[0][:50]}"
            self.reasons[key] = self.reasons.get(key, 0) + 1
        else:
            self._accepted = (data, req)  # handle() takes it from here instead of validating again
        return v

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, Started):
            self.local_peer = event.local_peer
            return []
        if isinstance(event, GossipReceived) and event.topic == self.topic:
            return self._on_request(event.data, now)
        if isinstance(event, RequestReceived) and event.protocol == CONTRACT_PROTOCOL:
            return self._on_proposal(event, now)
        if isinstance(event, ResponseReceived) and event.protocol == CONTRACT_PROTOCOL:
            if self.agreement.on_answer(event):  # an answer to one of our contract offers
                return []
            if event.error:
                self.reasons[f"send failed: {event.error[:50]}"] = self.reasons.get(f"send failed: {event.error[:50]}", 0) + 1
            return []
        if isinstance(event, TimerFired) and event.name.startswith("rfp.deadline."):
            return self._decide(bytes.fromhex(event.name.rsplit(".", 1)[1]), now)
        return []

    def _on_request(self, data: bytes, now: float) -> list[Command]:
        hit, self._accepted = self._accepted, None
        if hit is not None and hit[0] == data:  # validated a moment ago: only time can have changed
            req = hit[1] if hit[1].expiry > now else None
        else:
            req = validate_request(data, net=self.net, now=now, seen=lambda rid: False)[1]
        if req is None or req.client == self.local_peer:
            return []
        self._remember(req.request_id)
        self.stats["requests_in"] += 1
        if not drawn(req.request_id, self.local_peer, req.draw_bp):
            self.stats["not_drawn"] += 1
            return []
        choice = self.engine.choose(req.asset, req.usd_cents, now, limits=req.limits(),
                                    seed=int.from_bytes(req.request_id[:8], "big"))
        if not choice.ok:
            self.stats["declined"] += 1
            return [Notify("rfp.declined", {"request": req.request_id.hex(), "reason": choice.allocation.reason})]
        prop = Proposal(RFP_VERSION, self.net, req.request_id, self.local_peer,
                        [ProposedOffer(c.offer_id, c.device_id, c.owner_id, c.usd_cents) for c in choice.offers],
                        sum(c.usd_cents for c in choice.offers), now, min(req.expiry, now + self.proposal_ttl))
        self._next += 1
        self.stats["proposals_out"] += 1
        return [SendRequest(CONTRACT_PROTOCOL, req.client, self._next, sign_msg("proposal", prop, self.sign),
                            timeout=10.0)]

    # ------------------------------------------------------------ contract agreement (node.contracts.protocol.agreement)
    @property
    def on_contract(self) -> Callable[[str, ContractOffer, float], str | None] | None:
        """``on_contract(peer, offer, now) -> None | reason``: the node's policy for contract offers."""
        return self.agreement.on_contract

    @on_contract.setter
    def on_contract(self, policy: Callable[[str, ContractOffer, float], str | None] | None) -> None:
        self.agreement.on_contract = policy

    @property
    def contract_answers(self) -> dict[int, tuple[bool, str]]:
        """Our request id -> (accepted, reason): the answers to our contract offers."""
        return self.agreement.answers

    @property
    def answer_listeners(self) -> Listeners:
        """Woken by our request id once its answer is in ``contract_answers``."""
        return self.agreement.listeners

    def offer_contract(self, peer: str, kind: str, schedule: bytes, now: float, ttl: float = 60.0
                       ) -> tuple[int, list[Command]]:
        """Ask ``peer`` to agree to a contract; the answer lands in ``contract_answers[id]``."""
        self._next += 1
        return self._next, self.agreement.offer(self._next, peer, self.local_peer, kind, schedule, now, ttl)

    def _on_proposal(self, ev: RequestReceived, now: float) -> list[Command]:
        try:
            msg = wire.decode(ev.data, SignedMsg, max_size=MAX_PROPOSAL_SIZE)
            if msg.kind == "contract":
                return self.agreement.on_offer(ev, msg, now)
        except wire.WireError:
            pass
        rid = None
        try:
            msg = wire.decode(ev.data, SignedMsg, max_size=MAX_PROPOSAL_SIZE)
            rid = wire.decode(msg.body, Proposal, max_size=MAX_PROPOSAL_SIZE).request_id
        except wire.WireError:
            pass
        open_ = self.open.get(rid) if rid is not None else None
        v, prop = validate_proposal(ev.data, net=self.net, now=now,
                                    request=open_.request if open_ else None, from_peer=ev.peer)
        if prop is None or open_ is None:
            self.stats["proposals_refused"] += 1
            key = f"proposal {v.result.value}: {v.reason.split(':', 1)[0][:50]}"
            self.reasons[key] = self.reasons.get(key, 0) + 1
            if open_ is not None:
                open_.refused[ev.peer] = v.reason
            return [Respond(ev.request_id, wire.encode(Ack(False, f"[{v.result.value.upper()}] {v.reason}")))]
        why = self._mispriced(open_, prop, now)
        if why:  # [IGNORE] a value our own price does not bear out: the proposal is not counted
            self.stats["proposals_refused"] += 1
            key = f"proposal ignore: price: {why.split(':', 1)[0][:40]}"
            self.reasons[key] = self.reasons.get(key, 0) + 1
            open_.refused[ev.peer] = why
            return [Respond(ev.request_id, wire.encode(Ack(False, f"[IGNORE] {why}")))]
        self.stats["proposals_in"] += 1
        open_.proposals[prop.proposer] = prop
        return [Respond(ev.request_id, wire.encode(Ack(True, "")))]

    def _mispriced(self, open_: OpenRequest, prop: Proposal, now: float) -> str | None:
        """Why an offer's USD value in ``prop`` is not believed (None: every one is within tolerance): each
        offer our book holds is priced from its amount at OUR price (``declared_usd_mismatch``); offers our
        book does not hold are never used (``_decide``). Book and prices are read once per request."""
        from node.assets.prices import PriceError

        if open_.priced is None:
            open_.priced = ({c.offer_id: c for c in self.engine.candidates(open_.request.asset, now)}, {})
        book, prices = open_.priced
        for o in prop.offers:
            c = book.get(o.offer_id)
            if c is None:
                continue
            if c.asset not in prices:
                try:
                    prices[c.asset] = self.prices.price(c.asset, now)
                except PriceError as exc:
                    return f"price unknown: {exc}"
            price = prices[c.asset]
            for declared, whose in ((o.usd_cents, "proposal"), (c.usd_cents, "offer sheet")):
                bad = declared_usd_mismatch(c.asset, c.amount, declared, price, self.price_tolerance)
                if bad:
                    return f"price check: offer {o.offer_id.hex()[:16]} ({whose}): {bad}"
        return None

    # -------------------------------------------------------- application
    def request(self, asset: str, usd_cents: int, contract: str, now: float, *, limits: Limits | None = None,
                deadline: float = DEFAULT_DEADLINE, ttl: float = 60.0, request_id: bytes | None = None,
                exclude: frozenset[str] = frozenset()) -> tuple[bytes, list[Command]]:
        """Ask the network; returns (request id, commands). The answer lands in ``results``. Offers of the
        owners in ``exclude`` are left out of the choice (a local decision: the request on the wire is the same)."""
        if len(self.open) >= self.max_open:
            raise ValueError(f"too many open requests ({self.max_open}); wait for some to finish")
        lim = limits or self.engine.limits
        rid = request_id or self.rng.getrandbits(128).to_bytes(16, "big")
        req = Request(REQUEST_VERSION, self.net, rid, self.local_peer, asset, int(usd_cents), contract,
                      lim.max_per_device, round(lim.max_share_device * 10_000), round(lim.max_share_owner * 10_000),
                      now, now + max(ttl, deadline), draw_share(self.target_proposals, self.responders))
        return rid, self._ask(OpenRequest(req, now + deadline, rid, exclude=frozenset(exclude)), now)

    def _ask(self, open_: OpenRequest, now: float) -> list[Command]:
        """Sign, check and gossip ``open_.request``; its deadline timer."""
        req = open_.request
        data = sign_msg("request", req, self.sign)
        v, _ = validate_request(data, net=self.net, now=now, seen=lambda r: False)
        if v.result.value != "accept":
            raise ValueError(f"request refused before sending: {v.reason}")
        self._remember(req.request_id)
        self.open[req.request_id] = open_
        return [Publish(self.topic, data), SetTimer(f"rfp.deadline.{req.request_id.hex()}", open_.deadline)]

    def _reask(self, open_: OpenRequest, now: float) -> list[Command]:
        """Too few answered: the same request under a new id with four times the share drawn (every peer at
        most), keeping the proposals that came; decided at a second deadline as long as the first."""
        req, wait = open_.request, open_.deadline - open_.request.issued_at
        rid = hashlib.sha256(b"keyswitch/rfp/reask\x00" + req.request_id).digest()[:16]
        wider = msgspec.structs.replace(req, request_id=rid, issued_at=now, expiry=max(req.expiry, now + wait),
                                        draw_bp=min(DRAW_ALL_BP, req.draw_bp * 4))
        self.stats["reasked"] += 1
        return self._ask(OpenRequest(wider, now + wait, open_.origin, 2, dict(open_.proposals), dict(open_.refused),
                                     exclude=open_.exclude), now)

    def _learn(self, proposals: int, draw_bp: int) -> None:
        """How many peers answer a request drawn to all: this round's proposals / share, smoothed."""
        sample = proposals * DRAW_ALL_BP / draw_bp
        self.responders = sample if self.responders is None else 0.75 * self.responders + 0.25 * sample

    def _decide(self, rid: bytes, now: float) -> list[Command]:
        open_ = self.open.pop(rid, None)
        if open_ is None:
            return []
        req = open_.request
        if self.target_proposals and open_.rounds == 1:
            self._learn(len(open_.proposals), req.draw_bp)
            if req.draw_bp < DRAW_ALL_BP and len(open_.proposals) < max(1, self.target_proposals // 4):
                try:
                    return self._reask(open_, now)
                except ValueError:
                    pass  # cannot be re-sent (expired): decide with what came
        rid = open_.origin or rid
        # our own engine answers too; proposals only count for offers our own book holds
        own = {c.offer_id: c for c in self.engine.candidates(req.asset, now) if c.owner_id not in open_.exclude}
        pool: dict[bytes, Candidate] = {}
        contributed: dict[bytes, set[str]] = {}
        for proposer, prop in sorted(open_.proposals.items()):
            for o in prop.offers:
                c = own.get(o.offer_id)
                if c is not None:
                    pool.setdefault(o.offer_id, c)
                    contributed.setdefault(o.offer_id, set()).add(proposer)
        local = self.engine.choose(req.asset, req.usd_cents, now, limits=req.limits(),
                                   among=list(own.values()) if open_.exclude else None,
                                   seed=int.from_bytes(rid[:8], "big"))  # the first id seeds the choice
        for c in local.offers:
            pool.setdefault(c.offer_id, c)
            contributed.setdefault(c.offer_id, set()).add(self.local_peer)
        choice = self.engine.choose(req.asset, req.usd_cents, now, limits=req.limits(), among=pool.values(),
                                    seed=int.from_bytes(rid[:8], "big"))
        if not pool:  # nobody, us included, could answer: our own engine's reason says why
            choice = local
        peers = tuple(sorted(set().union(set(), *(contributed[c.offer_id] for c in choice.offers)) - {self.local_peer}))
        result = Chosen(rid, choice.ok, choice.offers, choice.allocation.total_cents if choice.ok else 0,
                        req.usd_cents, peers, len(open_.proposals), choice.allocation.reason, choice.allocation.notes)
        self.results[rid] = result
        self.result_listeners.fire(rid)
        while len(self.results) > 1000:
            self.results.pop(next(iter(self.results)))
        return [Notify("rfp.chosen", result.to_json())]
