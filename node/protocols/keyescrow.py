"""Key escrow of a contract's chunks, between nodes (stream protocol ``/keyswitch/key-escrow/1``), sans-IO.

A contract (``EscrowedSpec``) names, per party, escrow holders, a threshold k and the owner's recovery
enclave (the *beneficiary*). This protocol carries the shares; the enclaves decide
(``node.enclave.contracts``: the owner's split, ``Holdings`` on a holder, ``escrow_rebuild`` on the
beneficiary). Three roles, any node may play each:

* **owner** (``distribute``, called by ``ContractRun`` once its enclave opened the contract, and again when
  the runners' signatures are all in): its enclave splits every escrowed, unmoved chunk's key, only if it
  verified every holder's and the beneficiary's quote itself (I3: else "unattested", ``escrow.split-refused``;
  the escrow desk hands those quotes in when it builds the terms)
  (deterministically: the same shares again after a crash) and the host sends each holder its shares with
  the spec and the signatures over the contract id, until the holder answers ``held`` or refuses for good
  (``HOLD_RETRIED``). Nothing here blocks the contract: releases go on meanwhile.
* **holder**: hands ``hold`` / ``moved`` / ``ask`` to its enclave, and every ledger height it observes
  (``observe_height``) to every contract it holds shares of. Its enclave answers an ``ask`` only when the
  contract refunds that chunk to its owner (the time-lock path: at the refund height, or whatever the
  contract's refund rule says) and only for the term's beneficiary, an enclave it verified itself (the
  ``ask`` carries the beneficiary's binding and quote; the holder's host hands them to its enclave). With ``max_contracts`` /
  ``max_shares`` set (the daemon: node/contracts/desk/escrow.py) a ``hold`` past either bound is refused, code "full".
* **recovery** (``recover``: the owner's heir/backup node, whose enclave is the beneficiary): at the height,
  asks every holder for its share of the chunk, retries those that refuse (e.g. "not-allowed": their
  height is behind) or never answered (``request_timeout``) every ``retry_interval``, rebuilds the key in its enclave once k shares came, and
  sweeps it home to the owner's claim address in a ledger task (``claim``). With fewer than k holders
  answering it never rebuilds; after ``give_up_after`` seconds it reports ``escrow.failed`` with what the
  holders said. A holder whose enclave saw the giver's release record answers "moved" and is not asked
  again; once too few holders are left to reach k, the recovery ends at once with ``escrow.moved``.

Wire (``node.wire``: canonical MessagePack, size-bounded to 256 KiB, version 1; ``wire.Signed`` envelopes
signed by the sender's enclave in the domain "release-msg", like contract-run; errors unsigned)::

    hold   HoldBody(spec, sigs, shares, binding, quote)    owner -> holder (request); the owner's binding
                                                           and quote, handed to the holder's enclave
    moved  MovedBody(contract_id, record)                  any -> holder (request): a giver's signed
                                                           release record (the chunk went to a party)
    held   HeldBody(contract_id, held, missing)            response to hold / moved
    ask    AskBody(spec, sigs, party, index, recipient,   recovery -> holder (request); the asker's
                   binding, quote)                         binding and quote, handed to the holder's enclave
    share  ShareBody(contract_id, party, index, ciphertext)  response to ask: the share, encrypted by the
                                                           holder's enclave to the beneficiary
    error  ErrorBody(contract_id, round=-1, code, reason)  response; unsigned

Every message is validated (``envelope.parse``: size, canonical form, version, network, kind, signature)
and refused with a labelled reason; the enclave checks again what matters (the spec and its signatures,
the owner's signature on each share, the beneficiary, the contract's rule). A share in transit is
ciphertext only its recipient enclave opens; a forged share slipped in by a host is skipped at rebuild.

Safety assumption (as with any HTLC; node/contracts/README.md): a payee must sweep a chunk it received
before the contract's time-lock height, or show the giver's release record to the holders (``moved``),
else the owner's recovery enclave may rebuild the key at the height and race it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from node.contracts.spec import ContractSpec, decode_spec, spec_id
from node.protocols.base import (
    Command, Event, LedgerCall, Notify, RequestReceived, Respond, ResponseReceived, SendRequest, SetTimer, Started,
    TaskDone, TimerFired, Validation,
)
from node.contracts.protocol.claims import ClaimRecord
from node.contracts.protocol.envelope import MessageError, error_message, parse, seal
from node.contracts.protocol.schedule import Chunk
from node.attest.binding import Binding
from node.enclave.contracts import PartySig
from node.protocols.escrow_letgo import LetGo, owners_of
from node.protocols.keyescrow_wire import (  # noqa: F401 (re-exported: the wire bodies are named here)
    BODIES, AskBody, HeldBody, HoldBody, MovedBody, ShareBody,
)

PROTOCOL_ID = "/keyswitch/key-escrow/1"
#: a holder's refusals of a hold that may change with its state (room freed, a disk back): the owner sends the
#: hold again every ``retry_interval``; after any other refusal (the same bytes would get the same answer) it
#: stops and says so (``escrow.peer-error``)
HOLD_RETRIED = frozenset({"full", "storage-failed"})
ASKING, REBUILT, SWEPT, FAILED, MOVED = "asking", "rebuilt", "swept", "failed", "moved"


@dataclass
class Recovery:
    """One chunk the recovery node is bringing home: shares by holder position, what the others said."""

    spec: ContractSpec
    cid: bytes
    sigs: list[PartySig]
    party: int
    index: int
    started: float
    state: str = ASKING
    shares: dict[int, bytes] = field(default_factory=dict)
    said: dict[int, str] = field(default_factory=dict)  # holder position -> its last refusal
    moved: set[int] = field(default_factory=set)  # holders whose enclave knows the chunk moved: never asked again
    busy: bool = False
    claim: ClaimRecord | None = None

    @property
    def key(self) -> str:
        return f"{self.cid.hex()}:{self.party}:{self.index}"

    @property
    def term(self):
        return self.spec.escrow_of(self.party, self.index)


@dataclass
class KeyEscrow:
    """One node's side of key escrow: owner, holder and recovery. ``claim(chunk) -> txid`` sweeps a key the
    enclave holds to the owner's address (a recovery); ``check_funds`` tells a double spend from our own
    ledger failing."""

    #: its handle calls the enclave (a blocking IPC): the runtime runs it off the event loop (node.runtime.driver)
    handle_blocks = True

    net: str
    enclave: object
    claim: Callable[[Chunk], str] | None = None
    check_funds: Callable[[str, str], bool] = lambda asset, address: True
    retry_interval: float = 2.0
    #: s a request may wait for its answer: a holder checks an ask and releases its share in its enclave, which
    #: takes far longer than ``retry_interval`` on a loaded machine; while one request to a peer is out for a
    #: chunk the retry timer sends it no other (each copy would cost the holder the same work again)
    request_timeout: float = 60.0
    give_up_after: float = 3600.0
    max_contracts: int = 0  # holder: at most this many contracts held for others (0: no bound), then "full"
    max_shares: int = 0  # holder: at most this many shares over all of them (0: no bound), then "full"
    #: owner and recovery: ``identity() -> (binding, quote)``, ours, carried in every ``hold`` and ``ask`` (the
    #: holders' enclaves take shares only from an owner, and release one only to a beneficiary, they verified
    #: themselves); None: holds and asks carry none
    identity: Callable[[], tuple[Binding, bytes]] | None = None
    #: holder: when it lets go of a contract it holds shares of, and how many one owner may have it hold
    #: (node/protocols/escrow_letgo.py), checked every ``let_go_every`` seconds
    let_go: LetGo = field(default_factory=LetGo)
    let_go_every: float = 600.0

    def __post_init__(self) -> None:
        self.topics: list[str] = []
        self.stream_protocols = [PROTOCOL_ID]
        self.local_peer = ""
        self._heights: dict[str, int] = {}
        self._held: set[bytes] = set()  # contracts our enclave holds shares of
        self._counts: dict[bytes, int] = {}  # contract -> how many of its shares our enclave holds
        self._reads: dict[bytes, set[str]] = {}  # contract -> assets whose heights it may read (as feed_heights)
        self._out: dict[tuple[bytes, bytes], tuple[str, bytes]] = {}  # (cid, holder) -> (peer, hold message)
        self._pending: dict[int, tuple[str, object]] = {}  # request id -> (kind, key)
        self._req = 0
        self.recoveries: dict[str, Recovery] = {}
        self.refusals: deque[tuple[str, str]] = deque(maxlen=1000)  # the last refusals (newest last)
        self._verified: set[tuple[bytes, bytes]] = set()  # holder: (binding, quote) our enclave verified
        self._enc_pub = b""  # ``_me``

    # -- application calls -------------------------------------------------------------
    def distribute(self, spec: ContractSpec, sigs: list[PartySig], now: float) -> list[Command]:
        """Owner: send every holder its shares of our escrowed chunks (with the spec and the signatures)."""
        from node.tee.client import EnclaveRefused

        cid = spec_id(spec)
        try:
            shares = self.enclave.contract_escrow_split(cid)
        except EnclaveRefused as exc:  # e.g. "unattested": a holder or the beneficiary our enclave never verified
            self.refusals.append((exc.code, exc.reason))
            return [Notify("escrow.split-refused", {"contract": cid.hex(), "code": exc.code, "reason": exc.reason})]
        cmds: list[Command] = []
        ours = self.identity() if self.identity is not None else (None, b"")
        for term in spec.escrows:
            for h in term.holders:
                mine = [s for s in shares if s.holder == h.enc_pub]
                if not mine:
                    continue
                data = self._seal("hold", HoldBody(spec.encode(), list(sigs), mine, *ours))
                self._out[(cid, h.enc_pub)] = (h.peer_id, data)
                cmds.append(self._request("hold", (cid, h.enc_pub), h.peer_id, data))
        return cmds + self._timer(now) if cmds else cmds

    def recover(self, spec: ContractSpec, sigs: list[PartySig], party: int, index: int, now: float
                ) -> list[Command]:
        """Recovery: bring chunk (party, index) home without its owner's enclave; our enclave must be the
        chunk's beneficiary. Progress and the end come as ``escrow.*`` notices."""
        bad = decode_spec(spec.encode())
        if isinstance(bad, str):
            raise ValueError(bad)
        term = spec.escrow_of(party, index) if 0 <= party < len(spec.parties) else None
        if term is None or not 0 <= index < len(spec.parties[party].chunks):
            raise ValueError(f"chunk {party}/{index} is not escrowed by this contract")
        if term.beneficiary != self._me():
            raise ValueError("our enclave is not this chunk's beneficiary")
        r = Recovery(spec, spec_id(spec), sorted(sigs, key=lambda s: s.party), party, index, now)
        if r.key in self.recoveries and self.recoveries[r.key].state != FAILED:
            return []
        self.recoveries[r.key] = r
        return self._ask(r) + self._timer(now)

    def show_moved(self, spec: ContractSpec, record: bytes, now: float) -> list[Command]:
        """Show a giver's signed release record to the holders of that chunk (e.g. the payee, on receipt):
        their shares of it are then never released."""
        from node.contracts.spec import ReleaseBody
        from node import wire

        body = wire.decode(wire.decode(record, wire.Signed).body, ReleaseBody)
        owner = spec.owner_of(body.deposit_pub)
        term = spec.escrow_of(*owner) if owner else None
        if term is None:
            return []
        data = self._seal("moved", MovedBody(spec_id(spec), record))
        return [self._request("moved", None, h.peer_id, data) for h in term.holders]

    def observe_height(self, asset: str, height: int, now: float) -> list[Command]:
        """A ledger height from our host's ledger: handed to every contract our enclave holds shares of."""
        if height <= self._heights.get(asset, -1):
            return []
        self._heights[asset] = height
        for cid in sorted(self._held):
            if asset in self._reads.get(cid, (asset,)):  # unknown (held before a restart): every asset
                self.enclave.escrow_height(cid, asset, height)
        return self._ask_all() if self.recoveries else []

    def state(self, cid: bytes, party: int, index: int) -> str | None:
        r = self.recoveries.get(f"{cid.hex()}:{party}:{index}")
        return r.state if r else None

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        return Validation.ignore("the key-escrow protocol has no gossip topic")

    # -- events -----------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, Started):
            self.local_peer = event.local_peer
            self._counts = {}
            for s in self.enclave.escrow_holdings():
                self._counts[s.cid] = self._counts.get(s.cid, 0) + 1
            self._held = set(self._counts)
            return [SetTimer("key-escrow.let-go", now + self.let_go_every)]
        if isinstance(event, TimerFired) and event.name == "key-escrow.let-go":
            return [*self._let_go(now), SetTimer("key-escrow.let-go", now + self.let_go_every)]
        if isinstance(event, RequestReceived) and event.protocol == PROTOCOL_ID:
            return self._on_request(event, now)
        if isinstance(event, ResponseReceived) and event.protocol == PROTOCOL_ID:
            return self._on_response(event, now)
        if isinstance(event, TimerFired) and event.name == "key-escrow.retry":
            return self._on_timer(now)
        if isinstance(event, TaskDone) and event.name.startswith("key-escrow.sweep:"):
            return self._on_swept(event, now)
        return []

    # -- helpers ----------------------------------------------------------------------
    def _seal(self, kind: str, body) -> bytes:
        return seal(self.enclave, self.enclave.info().sign_pub, self.net, kind, body)

    def _request(self, kind: str, key, peer: str, data: bytes) -> SendRequest:
        self._req += 1
        self._pending[self._req] = (kind, key)
        return SendRequest(PROTOCOL_ID, peer, self._req, data, timeout=self.request_timeout)

    def _out_now(self) -> set[tuple[str, object]]:
        """(kind, key) of every request still waiting for its answer (or its timeout)."""
        return set(self._pending.values())

    def _refuse(self, rid: int, cid: bytes, code: str, reason: str) -> list[Command]:
        self.refusals.append((code, reason))
        return [Respond(rid, error_message(self.net, cid, -1, code, reason)),
                Notify("escrow.refused", {"code": code, "reason": reason})]

    def _timer(self, now: float) -> list[Command]:
        return [SetTimer("key-escrow.retry", now + self.retry_interval)]

    def _ask(self, r: Recovery) -> list[Command]:
        if r.state != ASKING:
            return []
        binding, quote = self.identity() if self.identity is not None else (None, b"")
        data = self._seal("ask", AskBody(r.spec.encode(), r.sigs, r.party, r.index, r.term.beneficiary, binding,
                                         quote))
        out = self._out_now()
        return [self._request("ask", (r.key, pos), h.peer_id, data)
                for pos, h in enumerate(r.term.holders)
                if pos not in r.shares and pos not in r.moved and ("ask", (r.key, pos)) not in out]

    def _stop_if_moved(self, r: Recovery) -> list[Command]:
        """Stop a recovery that can no longer reach k shares because holders' enclaves know the chunk moved to
        another party (a holder that says "moved" keeps saying it: its enclave sealed the giver's record). A
        lying holder gains nothing by it: it could refuse its share anyway."""
        could = len(r.shares) + sum(1 for pos in range(len(r.term.holders)) if pos not in r.shares and pos not in r.moved)
        if could >= r.term.k:
            return []
        r.state = MOVED
        return [Notify("escrow.moved", {"contract": r.cid.hex(), "party": r.party, "index": r.index,
                                        "holders": sorted(r.moved), "k": r.term.k})]

    def _ask_all(self) -> list[Command]:
        return [c for r in list(self.recoveries.values()) for c in self._ask(r)]

    def _me(self) -> bytes:
        """Our enclave's encryption key, asked once (sealed with its state: the same for the client's life)."""
        if not self._enc_pub:
            self._enc_pub = self.enclave.info().enc_pub
        return self._enc_pub

    def _let_go(self, now: float) -> list[Command]:
        """Holder: forget the contracts ``let_go`` says are due (done, or their refund path long open)."""
        from node.tee.client import EnclaveRefused

        out: list[Command] = []
        for cid, why in self.let_go.due(self.enclave.escrow_holdings(), now):
            try:
                self.enclave.escrow_forget(cid)
            except EnclaveRefused as exc:
                self.refusals.append((exc.code, exc.reason))
                continue
            self._held.discard(cid)
            self._counts.pop(cid, None)
            self._reads.pop(cid, None)
            self.let_go.forgot(cid)
            out.append(Notify("escrow.let-go", {"contract": cid.hex(), "why": why}))
        return out

    def _feed(self, spec: ContractSpec, cid: bytes) -> None:
        self._held.add(cid)
        self.let_go.owners[cid] = owners_of(spec, self._me())
        self._reads[cid] = {p.value for p in spec.params if isinstance(p.value, str)} | {
            c.asset for p in spec.parties for c in p.chunks}  # what its terms may read heights of
        for asset, h in sorted(self._heights.items()):
            if asset in self._reads[cid]:
                self.enclave.escrow_height(cid, asset, h)

    # -- holder: requests ---------------------------------------------------------------
    def over_bound(self, cid: bytes, shares: int, owners: frozenset[bytes] = frozenset()) -> str | None:
        """Why a hold of ``shares`` shares of ``cid`` (escrowing chunks of ``owners``) would take us past our
        bounds, else None (a contract we already hold is re-sent with all its shares: they replace its count)."""
        by_owner = self.let_go.over_owner_bound(cid, owners) if cid not in self._held else None
        if by_owner:
            return by_owner
        if self.max_contracts and cid not in self._held and len(self._held) >= self.max_contracts:
            return f"this node already holds escrow shares of {len(self._held)} contracts (at most {self.max_contracts})"
        others = sum(n for c, n in self._counts.items() if c != cid)
        if self.max_shares and others + shares > self.max_shares:
            return f"this node holds {others} escrow shares for others; {shares} more would pass its bound of " \
                   f"{self.max_shares}"
        return None

    def holding(self) -> dict[str, int]:
        """Contracts (id hex) our enclave holds shares of, with how many."""
        return {c.hex(): n for c, n in sorted(self._counts.items())}

    def _verify_sender(self, binding: Binding | None, quote: bytes, now: float) -> None:
        """Hand the quote a hold (the owner's) or an ask (the beneficiary's) carries to our enclave, which
        verifies it itself (I3) and refuses the hold or the share anyway when that enclave is not one it
        verified. Nothing carried: our enclave decides on what it verified before."""
        if binding is None or not quote:
            return
        seen = (binding.encode(), quote)
        if seen not in self._verified:
            self.enclave.attest_peer(binding, quote, now=now)
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified.add(seen)

    def _on_request(self, ev: RequestReceived, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        try:
            env, body = parse(ev.data, net=self.net, kinds={"hold", "moved", "ask"}, bodies=BODIES)
        except MessageError as exc:
            return self._refuse(ev.request_id, b"", exc.code, exc.reason)
        cid = getattr(body, "contract_id", b"")
        try:
            if env.kind == "moved":
                self.enclave.escrow_moved(body.contract_id, body.record)
                return [Respond(ev.request_id, self._seal("held", HeldBody(cid, [], [])))]
            spec = decode_spec(body.spec)
            if isinstance(spec, str):
                return self._refuse(ev.request_id, b"", "spec", spec)
            cid = spec_id(spec)
            if env.kind == "hold" and env.signer not in {p.binding.sign_pub for p in spec.parties if p.runner}:
                return self._refuse(ev.request_id, cid, "wrong-peer", "hold is not signed by a runner's enclave")
            full = (self.over_bound(cid, len(body.shares), owners_of(spec, self._me()))
                    if env.kind == "hold" else None)
            if full:
                return self._refuse(ev.request_id, cid, "full", full)
            if env.kind == "hold" and body.shares:
                self._verify_sender(body.binding, body.quote, now)
            res = self.enclave.escrow_hold(body.spec, [(s.party, s.sig) for s in body.sigs],
                                           body.shares if env.kind == "hold" else [])
            self._feed(spec, cid)
            if env.kind == "hold":
                self._counts[cid] = len(res.held)
                return [Respond(ev.request_id, self._seal("held", HeldBody(cid, res.held, res.missing)))]
            if body.binding is not None and body.binding.enc_pub == body.recipient:
                self._verify_sender(body.binding, body.quote, now)
            ct = self.enclave.escrow_share(cid, body.party, body.index, body.recipient)
        except EnclaveRefused as exc:
            return self._refuse(ev.request_id, cid, exc.code, f"our enclave refused: {exc.reason}")
        return [Respond(ev.request_id, self._seal("share", ShareBody(cid, body.party, body.index, ct))),
                Notify("escrow.share-released", {"contract": cid.hex(), "party": body.party, "index": body.index})]

    # -- owner / recovery: responses ----------------------------------------------------------
    def _on_response(self, ev: ResponseReceived, now: float) -> list[Command]:
        pend = self._pending.pop(ev.request_id, None)
        if pend is None or ev.error:
            return []  # transport failure: the retry timer asks again
        kind, key = pend
        want = {"hold": {"held", "error"}, "moved": {"held", "error"}, "ask": {"share", "error"}}[kind]
        try:
            env, body = parse(ev.data, net=self.net, kinds=want, bodies=BODIES)
        except MessageError as exc:
            self.refusals.append((exc.code, exc.reason))
            return [Notify("escrow.refused", {"code": exc.code, "reason": exc.reason})]
        if env.kind == "error":
            self.refusals.append(("peer-error", f"{body.code}: {body.reason}"))
            cmds: list[Command] = [Notify("escrow.peer-error", {"kind": kind, "code": body.code, "reason": body.reason})]
            if kind == "hold" and body.code not in HOLD_RETRIED:
                self._out.pop(key, None)  # the same bytes would get the same answer: not sent again
            r = self.recoveries.get(key[0]) if kind == "ask" else None
            if r is not None:
                r.said[key[1]] = f"{body.code}: {body.reason}"
                if body.code == "moved" and r.state == ASKING:
                    r.moved.add(key[1])
                    cmds += self._stop_if_moved(r)
            return cmds
        if kind == "hold":
            if body.contract_id == key[0]:
                self._out.pop(key, None)
            return [Notify("escrow.held", {"contract": key[0].hex(), "holder": key[1].hex(), "held": body.held})]
        if kind == "moved":
            return []
        r = self.recoveries.get(key[0])
        if r is None or r.state != ASKING:
            return []
        if (body.contract_id, body.party, body.index) != (r.cid, r.party, r.index):
            self.refusals.append(("wrong-share", "a share of another contract or chunk"))
            return [Notify("escrow.refused", {"code": "wrong-share", "reason": "a share of another chunk"})]
        r.shares[key[1]] = body.ciphertext
        r.said.pop(key[1], None)
        return self._try_rebuild(r, now)

    def _try_rebuild(self, r: Recovery, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        if len(r.shares) < r.term.k:
            return []
        pub = r.spec.parties[r.party].chunks[r.index].pubkey
        try:
            self.enclave.escrow_rebuild(r.cid, r.party, r.index, pub, list(r.shares.values()))
        except EnclaveRefused as exc:
            if exc.code != "duplicate-key":  # duplicate: rebuilt before (a restart); go on to the sweep
                return [Notify("escrow.rebuild-failed", {"chunk": r.key, "code": exc.code, "reason": exc.reason})]
        r.state = REBUILT
        return [Notify("escrow.rebuilt", {"contract": r.cid.hex(), "party": r.party, "index": r.index,
                                          "holders": sorted(r.shares)})] + self._sweep(r)

    def _sweep(self, r: Recovery) -> list[Command]:
        if self.claim is None or r.busy:
            return []
        c = r.spec.parties[r.party].chunks[r.index]
        chunk = Chunk(c.asset, c.address, c.pubkey, c.amount)
        r.busy = True
        return [LedgerCall(f"key-escrow.sweep:{r.key}", "claim_chunk", ("sweep", chunk, r.index))]

    def _on_swept(self, ev: TaskDone, now: float) -> list[Command]:
        r = self.recoveries.get(ev.name.split(":", 1)[1])
        if r is None:
            return []
        r.busy = False
        rec = ev.result if isinstance(ev.result, ClaimRecord) else ClaimRecord(
            r.index, "claim-failed", "", f"{type(ev.error).__name__}: {ev.error}")
        if rec.status == "claim-failed":  # our ledger: again on the timer
            return [Notify("escrow.sweep-retry", {"chunk": r.key, "detail": rec.detail})] + self._timer(now)
        r.claim, r.state = rec, SWEPT
        return [Notify("escrow.recovered", {"contract": r.cid.hex(), "party": r.party, "index": r.index,
                                            "status": rec.status, "txid": rec.txid, "detail": rec.detail})]

    def _on_timer(self, now: float) -> list[Command]:
        out = self._out_now()
        cmds: list[Command] = [self._request("hold", key, peer, data) for key, (peer, data) in self._out.items()
                               if ("hold", key) not in out]
        for r in list(self.recoveries.values()):
            if r.state == REBUILT and not r.busy:
                cmds += self._sweep(r)
            elif r.state == ASKING and now >= r.started + self.give_up_after:
                r.state = FAILED
                cmds.append(Notify("escrow.failed", {"contract": r.cid.hex(), "party": r.party, "index": r.index,
                                                     "shares": len(r.shares), "k": r.term.k, "holders": dict(
                                                         sorted(r.said.items()))}))
            else:
                cmds += self._ask(r)
        if self._out or any(r.state in (ASKING, REBUILT) for r in self.recoveries.values()):
            cmds += self._timer(now)
        return cmds
