"""Tit-for-tat key release between two enclaves (stream protocol ``/keyswitch/release/1``), sans-IO.

A **schedule** is an ordered list of rounds; round ``r`` says which party
(``giver``, 0 or 1) releases which deposit key (``chunk``) to whom
(``taker``). ``swap_schedule(a_chunks, b_chunks)`` alternates one chunk at a
time (a0, b0, a1, b1, ...), so neither party is ever exposed to more than one
chunk; ``validate_schedule`` refuses any schedule that would expose a party to
more. A schedule is run as a contract **inside the enclaves**: ``schedule_spec``
compiles it to the stdlib ``turns`` contract with both parties' chunks and
bindings (``node.contracts.spec``), which each enclave opens and signs; the
enclave then releases a key only when that contract allows it (its own view:
its releases and the keys it accepted), and signs the release record itself.
Language contracts in general (escrow, option, ring...) run over
``node.protocols.contract_run``.

Wire (``node.wire``: canonical MessagePack, size-bounded): every message is a
``wire.Signed`` envelope ``(version, net, kind, body, signer, sig)``. A
``release`` record is made and signed inside the giver's enclave
(``contract_release``; domain "release", which a host cannot ask its enclave
to sign); every other kind is ``Enclave.sign("release-msg", signing_digest(...))``. Kinds::

    hello    HelloBody(schedule, binding, quote)            initiator -> responder (request)
    agree    AgreeBody(contract_id, binding, quote, terms_sig)   response to hello (terms_sig: the
                                                            responder's enclave signature over the contract id)
    cosign   CosignBody(contract_id, terms_sig)             initiator -> responder (request), the initiator's
                                                            enclave signature; answered with ack (round -1)
    release  ReleaseBody(contract_id, round, deposit_pub, recipient, ciphertext)   giver -> taker (request)
    ack      AckBody(contract_id, round)                    response to release / cosign
    error    ErrorBody(contract_id, round, code, reason)    response; unsigned (signer and sig empty)

``contract_id = spec_id(schedule_spec(schedule, bindings))``: SHA-256 over the
terms, both parties' chunks and bindings. A signed ``release`` record names the
deposit key, the recipient enclave's ECIES key and the contract/round: two such
records by one signing key for the same deposit key and different recipients or
contracts are a self-contained :class:`CheatingProof` against the device (an
honest enclave refuses a second release, and no host can sign such a record).

State per contract (h11-style; ``TRANSITIONS`` is the table)::

    (none) --propose--> PROPOSED --agree--> RUNNING --last-round / unacked-end--> DONE
    (none) --hello----------------------> RUNNING --deadline (peer silent)--> WITHHELD
                        PROPOSED --bad-agree / refused--> FAILED   RUNNING --cheat / peer-stopped /
                        PROPOSED --deadline--> WITHHELD                      local-refusal--> FAILED

Which message kinds each state accepts is ``ACCEPTS_REQUEST`` / ``ACCEPTS_RESPONSE``; anything else is
answered with an ``error`` carrying a stable code (malformed, version, network, kind, signature,
out-of-order, unknown-contract, wrong-peer, wrong-round, wrong-key, wrong-recipient, stopped, schedule,
not-expected, attestation, not-held, funds, double-spent) and a reason; input never raises.

Before releasing its next key a side requires that the key of the peer's
previous round was accepted by its enclave (``contract_accept`` checks the
signed record and the key against the committed deposit key) and that the funds
are still there: at least the committed amount, confirmed (``check_funds``, ``funds_state``; a chunk
holding less stops the contract), or a sweep that landed. When our release
follows the peer's round at once (a swap: every round but the last), the funds
are checked first and then one enclave call does the rest (``contract_step``:
the key taken with every check of ``contract_accept``, the ack signed, our next
key released if the contract allows it, all in one sealed write). The ledger is never
called from ``handle``: a funds check and a claim are ``LedgerCall`` commands whose
``TaskDone`` comes back as an event. The sweep runs in the background after
the funds check (the next key goes out meanwhile); the contract ends, and its
outcome is reported, once every received key is claimed. Progress is derived from
the enclave's journal (``list_keys``), so a restarted node resumes: a round it
released is re-sent with ``contract_resend`` (the journaled bytes, nothing new
is released) and the next round continues. Host-side contract records (terms,
claims, acks) live in the ``store`` it is given (a :class:`RecordStore`: in memory by default, files in
``node.stores.contracts``).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import msgspec

from node import wire
from node.protocols.base import (
    Command, Event, LedgerCall, Notify, RequestReceived, Respond, ResponseReceived, SendRequest, SetTimer, Started,
    TaskDone, TimerFired, Validation,
)
from node.contracts.spec import (  # ReleaseBody, release_context and CONTEXT_TAG are re-exported from here
    CONTEXT_TAG, ReleaseBody, release_context,
)

__reexported__ = (CONTEXT_TAG, release_context)
from node.attest.binding import Binding
from node.protocols.cheating import CheatingProof, verify_cheating_proof
from node.protocols.claims import (
    FUNDS_GONE, FUNDS_MISPRICED, FUNDS_OK, FUNDS_SHORT, FUNDS_UNKNOWN, ChunkOutcome, ClaimRecord,
    MemoryContractStore, Outcome, RecordStore, funds_now, funds_state, price_state, sweep_claimer,
)
from node.protocols.contract_swap import ContractRecord
from node.protocols.envelope import (
    MAX_MESSAGE, MSG_DOMAIN, SIGN_DOMAIN, VERSION, AckBody, ErrorBody, MessageError, error_message, parse, seal,
    signature_ok,
)
from node.protocols.schedule import (
    MAX_ROUNDS, Chunk, Round, Schedule, chunk_index, contract_id, exposure, schedule_hash, schedule_spec,
    swap_schedule, validate_schedule,
)

__reexported__ += (CheatingProof, verify_cheating_proof, FUNDS_GONE, FUNDS_MISPRICED, FUNDS_SHORT, ChunkOutcome,
                   RecordStore, funds_now, price_state, sweep_claimer, MSG_DOMAIN, SIGN_DOMAIN, signature_ok,
                   MAX_ROUNDS, chunk_index, contract_id, exposure, schedule_hash, swap_schedule, validate_schedule)

PROTOCOL_ID = "/keyswitch/release/1"

# contract states
PROPOSED, RUNNING, DONE, WITHHELD, FAILED = "proposed", "running", "done", "withheld", "failed"
TERMINAL = (DONE, WITHHELD, FAILED)
#: the state table: which message kinds a contract in each state accepts (as request / as response)
ACCEPTS_REQUEST = {PROPOSED: frozenset(), RUNNING: frozenset({"release", "cosign"}),
                   DONE: frozenset({"release", "cosign"}),
                   WITHHELD: frozenset(), FAILED: frozenset()}
ACCEPTS_RESPONSE = {PROPOSED: frozenset({"agree", "error"}), RUNNING: frozenset({"ack", "error"}),
                    DONE: frozenset({"ack", "error"}), WITHHELD: frozenset(), FAILED: frozenset()}
TRANSITIONS = {  # (state, event) -> next state; any other pair is a bug (KeyError), never silently ignored
    (None, "propose"): PROPOSED,  # initiator: hello sent
    (None, "hello"): RUNNING,  # responder: an expected, verified hello was agreed
    (PROPOSED, "agree"): RUNNING,  # the peer's agreement verified
    (PROPOSED, "bad-agree"): FAILED,  # its quote, binding, contract id or funds do not check out
    (PROPOSED, "refused"): FAILED,  # the peer answered the hello with an error
    (PROPOSED, "deadline"): WITHHELD,  # no answer in time
    (RUNNING, "last-round"): DONE,  # every round done (and our last release acknowledged)
    (RUNNING, "deadline"): WITHHELD,  # the peer stopped answering mid-contract
    (RUNNING, "unacked-end"): DONE,  # every round done; the peer never acknowledged our last release
    (RUNNING, "cheat"): FAILED,  # wrong key, funds gone (double spend)
    (RUNNING, "peer-stopped"): FAILED,  # the peer refused our release and stopped
    (RUNNING, "local-refusal"): FAILED,  # our enclave will not release (key gone elsewhere)
}


# ------------------------------------------------------------------ schedule

# ------------------------------------------------------------------ messages
class HelloBody(msgspec.Struct, array_like=True, frozen=True):
    schedule: Schedule
    binding: Binding
    quote: bytes


class AgreeBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    binding: Binding
    quote: bytes
    terms_sig: bytes = b""  # the responder's enclave signature over the contract id (made when it opened it)


class CosignBody(msgspec.Struct, array_like=True, frozen=True):
    """The initiator's enclave signature over the contract id (the responder's enclave needs it to release)."""

    contract_id: bytes
    terms_sig: bytes



BODIES = {"hello": HelloBody, "agree": AgreeBody, "release": ReleaseBody, "ack": AckBody, "error": ErrorBody,
          "cosign": CosignBody}


# ------------------------------------------------------------------ protocol
@dataclass
class Contract:
    key: str  # contract id hex (or "p-..." for a proposal not yet agreed)
    rec: ContractRecord
    cid: bytes = b""
    next: int = 0  # first round not done (from the enclave's journal)
    progress_at: float = 0.0
    outcome: Outcome | None = None
    #: wall seconds this process spent on the contract by kind, in memory only (not persisted): "claim" (settling
    #: received keys: sweeps, funds checks), "enclave" (contract_accept, contract_release, signing acks),
    #: "store" (writing the contract record)
    spent: dict[str, float] = field(default_factory=dict)
    writes: int = 0  # records written by this process (``_persist``)
    cosigned: bool = False  # initiator: the responder acknowledged our signature over the contract id
    checked: set[int] = field(default_factory=set)  # peer rounds whose funds this process saw still there
    busy: set[tuple[str, int]] = field(default_factory=set)  # ledger tasks in flight: ("funds"|"claim", round)
    held: dict[int, Respond] = field(default_factory=dict)  # acks of peer rounds held until their funds are checked
    terms_sig: bytes = b""  # our enclave's signature over the contract id, from its (one) contract_open
    held_back: bool = False  # a retry tick sent no copy: a request was in flight (``_in_flight``)
    #: peer rounds received and not yet taken by our enclave: their funds are checked first, then one enclave
    #: call takes the key, signs the ack and releases our next round (``_step``): round -> (record, request ids)
    waiting: dict[int, tuple[bytes, list[int]]] = field(default_factory=dict)
    #: initiator: the check of the peer's offered funds started with the hello (``_check_offered``): None (not
    #: started), "pending", "ok" or the reason they are not there; when it ended; what the agree left to do
    offered: str | None = None
    offered_at: float = 0.0
    offered_then: Callable | None = None
    #: wall time (the protocol's clock) our enclave took the last key due to us, in memory only: with the
    #: peer's, the moment every key of the contract was exchanged (``benchmarks.swap``)
    keys_in_at: float = 0.0
    _spec: bytes = b""

    def spec(self) -> bytes:
        if not self._spec:
            self._spec = schedule_spec(self.rec.schedule, self.rec.bindings).encode()
        return self._spec

    def add(self, what: str, seconds: float) -> None:
        self.spent[what] = self.spent.get(what, 0.0) + seconds

    @property
    def me(self) -> int:
        return self.rec.role

    @property
    def rounds(self) -> list[Round]:
        return self.rec.schedule.rounds

    def claim_of(self, rnd: int) -> ClaimRecord | None:
        return next((c for c in self.rec.claims if c.round == rnd), None)


@dataclass
class ReleaseProtocol:
    """One node's side of every release contract it takes part in.

    ``check_funds(asset, address) -> node.ledger.base.Balance``: the deposit address's balance on our
    ledger; a peer's chunk counts as funded only when its confirmed balance, net of pending spends, is at least
    the amount committed in the schedule (``funds_state``: at agreement and before each release of ours), and,
    when the peer declared a USD value for it (``expect`` / ``propose``: ``usd``), when that value is within
    ``price_tolerance`` of the amount at OUR price (``price_of``) before each release of ours (else the key is
    taken and the contract stops, ``local-refusal``);
    ``claim(chunk) -> txid``: sweep a received key to a fresh owner address (raises
    ``node.ledger.base.AlreadySpent`` when the funds are gone); ``claim_policy``: "sweep" or "keep".
    """

    #: its handle calls the enclave (a blocking IPC): the runtime runs it off the event loop (node.runtime.driver)
    handle_blocks = True

    net: str
    enclave: object
    binding: Binding
    quote: bytes
    attestations: object  # AttestationCache: check(quote, binding, now) -> None | reason
    check_funds: Callable[[str, str], object]
    claim: Callable[[Chunk], str] | None = None
    store: RecordStore = field(default_factory=lambda: MemoryContractStore(record_type=ContractRecord))
    claim_policy: str = "sweep"
    round_timeout: float = 30.0
    retry_interval: float = 2.0
    #: s a request waits for its answer (the runtime's: the responder's driver answers or resets within its
    #: ``respond_timeout``, 10 s). Not ``retry_interval``: on a loaded machine an answer later than 2 s was
    #: thrown away and the request sent again, each copy costing both enclaves work, and the copies queued
    #: ahead of the answers: agreements came ~29 s late against the 30 s ``round_timeout``
    request_timeout: float = 10.0
    #: a monotonic clock (seconds) for the spans of its own work (``Contract.spent``, ``keys_in_at``), given by
    #: the composition root (the daemon: ``time.perf_counter``); None: every span is 0. Never used to decide.
    perf: Callable[[], float] | None = None
    #: ``price_of(asset) -> node.assets.prices.Price``: OUR price (the node's feed), for the declared values
    price_of: Callable[[str], object] | None = None
    price_tolerance: float = 0.10  # config ``risk.price_tolerance``

    def __post_init__(self) -> None:
        if self.claim_policy not in ("sweep", "keep"):
            raise ValueError("claim_policy is 'sweep' or 'keep'")
        if self.claim_policy == "sweep" and self.claim is None:
            raise ValueError("claim_policy 'sweep' needs a claim callable")
        self._declared: dict[tuple[str, bytes], list[int]] = {}  # expected contracts' ``ContractRecord.usd``
        self.topics: list[str] = []
        self.stream_protocols = [PROTOCOL_ID]
        self.duplex_streams = [PROTOCOL_ID]  # both sides send requests: the runtime opens a stream back early
        self.local_peer = ""
        self.contracts: dict[str, Contract] = {}
        self._expected: set[tuple[str, bytes]] = set()
        self._pending: dict[int, tuple[str, str, int]] = {}  # request id -> (contract key, kind, round)
        self._req = 0
        self.refusals: deque[tuple[str, str]] = deque(maxlen=1000)  # (code, reason) of refused input, newest last
        self._waiting: dict[str, Callable] = {}  # negotiation tasks in flight: name -> continuation

    # -- application calls ------------------------------------------------
    def expect(self, peer: str, schedule: Schedule, usd: list[int] | None = None) -> None:
        """As responder: agree to ``schedule`` when ``peer`` proposes it (negotiated elsewhere). ``usd``: per
        round, the USD cents the peer declared for its chunk (checked at our price before each of our rounds)."""
        self._expected.add((peer, schedule_hash(schedule)))
        if usd:
            self._declared[(peer, schedule_hash(schedule))] = list(usd)

    def expects(self, peer: str, shash: bytes) -> bool:
        """Is the schedule hashed ``shash`` (``schedule_hash``) agreed with ``peer`` and not yet proposed here?"""
        return (peer, shash) in self._expected

    def forget(self, peer: str, shash: bytes) -> None:
        """No longer agree to that schedule: its hello is refused ("not-expected") from now on (the host's
        reservation lapsed, or the hello was refused for good)."""
        self._expected.discard((peer, shash))
        self._declared.pop((peer, shash), None)

    def propose(self, peer: str, schedule: Schedule, now: float, usd: list[int] | None = None) -> list[Command]:
        """As initiator (party 0): start a contract with ``peer`` (``usd``: as for ``expect``)."""
        bad = validate_schedule(schedule)
        if bad:
            raise ValueError(bad)
        key = "p-" + hashlib.sha256(peer.encode() + schedule_hash(schedule)).hexdigest()[:32]
        rec = ContractRecord(self.net, 0, peer, schedule, [self.binding], [self.quote], TRANSITIONS[(None, "propose")],
                             usd=list(usd or []))
        c = Contract(key, rec, progress_at=now)
        self.contracts[key] = c
        self.store.put(key, rec)
        return self._send_hello(c, now) + self._check_offered(c) + self._timers(c, now)

    def _check_offered(self, c: Contract) -> list[Command]:
        """Initiator: check the funds of the peer's offered chunks as the hello goes out (the schedule names
        them), alongside the responder's check of ours, instead of after its agree; the agree waits for it."""
        name = f"release.offered:{c.key}"
        if c.offered == "pending":
            return []

        def done(why: str | None, now: float) -> list[Command]:
            c.offered, c.offered_at = why or "ok", now
            then, c.offered_then = c.offered_then, None
            return then(why, now) if then is not None else []

        c.offered = "pending"
        return self._offered_funds(name, c.rec.schedule, 1, done)

    def outcome(self, cid: bytes) -> Outcome | None:
        c = self.contracts.get(cid.hex())
        return c.outcome if c else None

    def state(self, cid: bytes) -> str | None:
        c = self.contracts.get(cid.hex())
        return c.rec.state if c else None

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        return Validation.ignore("the release protocol has no gossip topic")

    # -- events -------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, Started):
            self.local_peer = event.local_peer
            return self._resume(now)
        if isinstance(event, RequestReceived) and event.protocol == PROTOCOL_ID:
            return self._on_request(event, now)
        if isinstance(event, ResponseReceived) and event.protocol == PROTOCOL_ID:
            return self._on_response(event, now)
        if isinstance(event, TimerFired) and event.name.startswith("release."):
            return self._on_timer(event.name, now)
        if isinstance(event, TaskDone) and event.name.startswith("release.task:"):
            return self._on_task(event, now)
        if isinstance(event, TaskDone) and event.name in self._waiting:
            then = self._waiting.pop(event.name)
            return then(event.result if event.error is None else f"funds unknown: {event.error!r}", now)
        return []

    # -- helpers --------------------------------------------------------------
    def _seal(self, kind: str, body) -> bytes:
        return seal(self.enclave, self.binding.sign_pub, self.net, kind, body)

    def _request(self, c: Contract, kind: str, rnd: int, data: bytes) -> SendRequest:
        self._req += 1
        self._pending[self._req] = (c.key, kind, rnd)
        c.held_back = False
        return SendRequest(PROTOCOL_ID, c.rec.peer, self._req, data,
                           timeout=max(self.retry_interval, self.request_timeout))

    def _in_flight(self, c: Contract) -> bool:
        """A request of ``c`` still waits for its answer (or the transport's failure): the retry timer sends no
        copy, and looks again ``request_timeout`` later (``held_back``). Still unanswered then, it is taken as
        lost (a driver that never reports it): forgotten, and the copy goes out."""
        mine = [rid for rid, p in self._pending.items() if p[0] == c.key]
        if mine and not c.held_back:
            c.held_back = True
            return True
        for rid in mine:
            del self._pending[rid]
        return False

    def _refuse(self, request_id: int, cid: bytes, rnd: int, code: str, reason: str, notify=True) -> list[Command]:
        self.refusals.append((code, reason))
        cmds: list[Command] = [Respond(request_id, error_message(self.net, cid, rnd, code, reason))]
        if notify:
            cmds.append(Notify("release.refused", {"code": code, "reason": reason}))
        return cmds

    def _offered_funds(self, name: str, schedule: Schedule, giver: int, then) -> list[Command]:
        """A task checking the funds of ``giver``'s chunks; ``then(reason | None, now)`` continues on its
        ``TaskDone`` (the negotiation waits for the ledger without calling it inside ``handle``)."""
        rounds = tuple((r, rd.chunk) for r, rd in enumerate(schedule.rounds) if rd.giver == giver)
        self._waiting[name] = then
        return [LedgerCall(name, "first_unfunded", (rounds,))]  # why the first has no funds, or None

    def _tick(self) -> float:
        return self.perf() if self.perf is not None else 0.0

    def _persist(self, c: Contract) -> None:
        t0 = self._tick()
        self.store.put(c.key, c.rec)
        c.writes += 1
        c.add("store", self._tick() - t0)

    def _peer_binding(self, c: Contract) -> Binding:
        return c.rec.bindings[1 - c.me]

    def _timers(self, c: Contract, now: float) -> list[Command]:
        if c.rec.state in TERMINAL:
            return []
        return [SetTimer(f"release.retry:{c.key}", now + self.retry_interval),
                SetTimer(f"release.deadline:{c.key}", c.progress_at + self.round_timeout)]

    def _progress(self, c: Contract, now: float) -> None:
        c.progress_at = now

    def _send_hello(self, c: Contract, now: float) -> list[Command]:
        data = self._seal("hello", HelloBody(c.rec.schedule, *self._proposed_as(c)))
        return [self._request(c, "hello", -1, data)]

    def _proposed_as(self, c: Contract) -> tuple[Binding, bytes]:
        """Initiator: the binding and quote our proposal was made with (kept in its record). After a restart our
        binding is another (its ``keys_root`` commits to the keys held now): a hello carrying that one names
        another contract id, and a responder that agreed before the restart refused it ("not-expected")."""
        return (c.rec.bindings[0], c.rec.quotes[0]) if c.rec.bindings else (self.binding, self.quote)

    def _key_states(self) -> dict[bytes, object]:
        return {k.pubkey: k for k in self.enclave.list_keys()}

    def _sync(self, c: Contract) -> str | None:
        """Set ``c.next`` from the enclave's journal; a reason if our keys are not in a releasable state."""
        keys = self._key_states()
        peer_enc = self._peer_binding(c).enc_pub
        for r, rd in enumerate(c.rounds):
            k = keys.get(rd.chunk.pubkey)
            if rd.giver == c.me:
                if k is None:
                    c.next = r
                    return f"round {r}: our enclave does not hold deposit key {rd.chunk.pubkey.hex()[:16]}..."
                if k.state == "released":
                    if k.recipient != peer_enc:
                        c.next = r
                        return f"round {r}: deposit key was released to another enclave"
                    continue
                c.next = r
                return None if k.state in ("held", "received") else \
                    f"round {r}: our deposit key is {k.state}, not held"  # received: kept from a contract
            if k is None:
                c.next = r
                return None
        c.next = len(c.rounds)
        return None

    def _resume(self, now: float) -> list[Command]:
        cmds: list[Command] = []
        for key, rec in self.store.items():
            if isinstance(rec, str):
                cmds.append(Notify("release.store-error", {"contract": key, "reason": rec}))
                continue
            c = Contract(key, rec, progress_at=now)
            self.contracts[key] = c
            if rec.state == PROPOSED:
                cmds += self._send_hello(c, now) + self._check_offered(c) + self._timers(c, now)
                continue
            c.cid = bytes.fromhex(key)
            if rec.state in TERMINAL:
                self._sync(c)
                c.outcome = self._make_outcome(c)
                continue
            why = self._sync(c)
            if why:
                cmds += self._stop(c, "local-refusal", why, now)
                continue
            cmds += self._resend_last(c) + self._advance(c, now)
        return cmds

    def _mine_unacked(self, c: Contract) -> int | None:
        """Our most recent released round if the peer has not acknowledged it (and has not answered since)."""
        r = c.next - 1
        if r >= 0 and c.rounds[r].giver == c.me and c.rec.acked < r:
            return r
        return None

    def _send_cosign(self, c: Contract) -> list[Command]:
        """Initiator: our enclave's signature over the contract id, until the responder acknowledges it."""
        if c.me != 0 or c.cosigned or c.rec.state != RUNNING:
            return []
        from node.tee.client import EnclaveRefused

        try:
            sig = self._terms_sig(c)
        except EnclaveRefused:
            return []  # reported by the release that follows
        return [self._request(c, "cosign", -1, self._seal("cosign", CosignBody(c.cid, sig)))]

    def _enclave_attests(self, binding, quote: bytes, now: float) -> str | None:
        """Our enclave verifies the peer's quote too, itself (I3: it releases only to enclaves it verified)."""
        from node.tee.client import EnclaveRefused

        try:
            self.enclave.attest_peer(binding, quote, now=now)
        except EnclaveRefused as exc:
            return f"our enclave refused it: {exc.code}: {exc.reason}"
        return None

    def _terms_sig(self, c: Contract) -> bytes:
        """Our enclave's signature over the contract id: kept from the contract's opening; after a restart the
        enclave is asked once (it finds the contract it sealed: nothing is decoded or checked again)."""
        if not c.terms_sig:
            c.terms_sig = self.enclave.contract_open(c.spec(), []).sig
        return c.terms_sig

    def _resend_last(self, c: Contract) -> list[Command]:
        r = self._mine_unacked(c)
        if r is None or c.rec.state != RUNNING:
            return self._send_cosign(c)
        data = self.enclave.contract_resend(c.cid, chunk_index(c.rec.schedule, r))
        return self._send_cosign(c) + [self._request(c, "release", r, data)]

    def _task(self, c: Contract, kind: str, r: int) -> LedgerCall:
        """A ledger call for the peer's round ``r`` ("funds": are they still there, ``funds_state``; "claim":
        sweep, ``claim_chunk``), run by the driver off the event loop; it returns (answer, seconds)."""
        chunk = c.rounds[r].chunk
        usd = c.rec.usd[r] if r < len(c.rec.usd) and self._gates(c, r) else 0  # (nothing of ours after it: no matter)
        op = ("funds_state", (chunk, usd, self.price_tolerance)) if kind == "funds" else (
            "claim_chunk", ("sweep", chunk, r))
        c.busy.add((kind, r))
        return LedgerCall(f"release.task:{c.key}:{kind}:{r}", "timed", op)

    def _funds_now(self, chunk: Chunk) -> tuple[str, str]:
        """(state, reason) of the chunk's committed funds on our ledger (``funds_state``)."""
        return funds_state(self.check_funds, chunk)

    def _settle(self, c: Contract, now: float) -> tuple[list[Command], bool]:
        """Start the ledger work the received keys still need: (commands, stopped). A received key is
        funds-checked first (before our next release), then swept in the background ("sweep"), or
        recorded as kept ("keep"); a key whose funds are gone stops the contract."""
        cmds: list[Command] = [self._task(c, "funds", r) for r in c.waiting if ("funds", r) not in c.busy]
        for r in range(c.next):
            if c.rounds[r].giver == c.me:
                continue
            rec = c.claim_of(r)
            if rec is not None and rec.status not in ("claimed", "kept"):
                return self._stop(c, "cheat", f"round {r}: {rec.status}: {rec.detail}", now), True
            if ("funds", r) in c.busy or ("claim", r) in c.busy or (rec is not None and rec.status == "claimed"):
                continue
            gates = self._gates(c, r)  # a release of ours waits for its funds
            if r not in c.checked and (rec is None or r == c.next - 1) and (gates or self.claim_policy == "keep"):
                cmds.append(self._task(c, "funds", r))  # (a kept key is checked again after a restart)
            elif rec is None and self.claim_policy == "sweep":  # (no release after it: the sweep proves them)
                cmds.append(self._task(c, "claim", r))
        return cmds, False

    def _on_task(self, ev: TaskDone, now: float) -> list[Command]:
        _, key, kind, rnd = ev.name.split(":")
        c, r = self.contracts.get(key), int(rnd)
        if c is None or (kind, r) not in c.busy:
            return []
        c.busy.discard((kind, r))
        if c.rec.state != RUNNING:
            return []
        out, secs = ev.result if ev.error is None else (f"{type(ev.error).__name__}: {ev.error}", 0.0)
        c.spent[kind] = c.spent.get(kind, 0.0) + secs
        chunk = c.rounds[r].chunk
        cmds: list[Command] = []
        if kind == "funds":  # (state, reason) -> True (all there), False (nothing left), reason (unknown)
            state, why = out if isinstance(out, tuple) else (FUNDS_UNKNOWN, str(out))
            if state == FUNDS_SHORT:  # less than committed: the peer's chunk is not what it agreed to give;
                # nothing more of ours goes out (its key, if it came, is not taken)
                return self._stop(c, "cheat", f"round {r}: {why}", now)
            if state == FUNDS_MISPRICED:  # worth less (or more) than agreed at our price now: no one cheated; its
                # key is ours (taken, kept in our enclave for the owner's sweep), nothing more of ours goes out
                cmds = self._take(c, r, now) if r in c.waiting else []
                return cmds if c.rec.state != RUNNING else cmds + self._stop(c, "local-refusal", f"round {r}: {why}",
                                                                             now)
            out = True if state == FUNDS_OK else False if state == FUNDS_GONE else why
        if kind == "funds" and r in c.waiting:
            if out is True:
                return self._step(c, r, now)
            if not isinstance(out, str):  # gone: take the key all the same, the sweep tells who spent them
                cmds = self._take(c, r, now)
                if c.rec.state != RUNNING:
                    return cmds
        if kind == "funds" and r in c.waiting:  # our ledger cannot answer: retried (``_settle``)
            self._progress(c, now)
            return [Notify("release.claim-retry", {"contract": c.key, "round": r, "detail": out})]
        if kind == "funds":
            if isinstance(out, str):  # our ledger cannot answer: wait and retry (retry timer), blame no one
                self._progress(c, now)
                return [Notify("release.claim-retry", {"contract": c.key, "round": r, "detail": out})]
            if out:
                c.checked.add(r)
                if self.claim_policy == "keep" and c.claim_of(r) is None:
                    self._record(c, ClaimRecord(r, "kept"))
            elif self.claim_policy == "keep":
                self._record(c, ClaimRecord(r, "double-spent", "", f"funds at {chunk.address} are gone"))
            else:  # gone from the deposit address: the sweep tells whether we swept them (a claim before a
                cmds.append(self._task(c, "claim", r))  # restart) or someone else did (double spend)
        else:
            rec = out if isinstance(out, ClaimRecord) else ClaimRecord(r, "claim-failed", "", str(out))
            if rec.status == "claim-failed":  # our ledger, not the peer: retry; the peer is not to blame
                self._progress(c, now)
                return [Notify("release.claim-retry", {"contract": c.key, "round": r, "detail": rec.detail})]
            self._record(c, rec)
        cmds += self._advance(c, now)
        return self._answer_held(c) + cmds

    @staticmethod
    def _steps(c: Contract, r: int) -> bool:
        """Is the peer's round ``r`` followed at once by a release of ours (one enclave call takes the one and
        makes the other, once the funds of ``r`` are seen)?"""
        return r + 1 < len(c.rounds) and c.rounds[r + 1].giver == c.me

    def _ack(self, c: Contract, r: int) -> tuple[bytes, bytes]:
        """The ack of round ``r`` to be signed: (body, digest to sign)."""
        raw = wire.encode(AckBody(c.cid, r))
        return raw, wire.signing_digest(VERSION, self.net, "ack", raw)

    def _signed_ack(self, raw: bytes, sig: bytes) -> bytes:
        return wire.encode(wire.Signed(VERSION, self.net, "ack", raw, self.binding.sign_pub, sig))

    def _step(self, c: Contract, r: int, now: float) -> list[Command]:
        """The funds of the peer's round ``r`` are there: one enclave call takes its key (checked against the
        committed deposit key), signs our ack and releases our round ``r + 1`` if the contract allows it."""
        from node.tee.client import EnclaveRefused

        record, rids = c.waiting.pop(r)
        raw, digest = self._ack(c, r)
        t0 = self._tick()
        try:
            out = self.enclave.contract_step(c.cid, record, chunk_index(c.rec.schedule, r + 1), 1 - c.me, digest,
                                             self.claim_policy == "sweep")  # (the sweep follows: handed over now)
        except EnclaveRefused as exc:
            reason = f"round {r}: our enclave refused the key ({exc.code}: {exc.reason})"
            return ([Respond(rid, error_message(self.net, c.cid, r, "wrong-key", reason)) for rid in rids]
                    + self._stop(c, "cheat", reason, now))
        took = self._tick() - t0
        c.add("enclave", took)
        self._keys_in(c, r, now, took)
        c.next = r + 1
        c.checked.add(r)
        if self.claim_policy == "keep" and c.claim_of(r) is None:
            self._record(c, ClaimRecord(r, "kept"))
        ack = self._signed_ack(raw, out.ack_sig)
        cmds: list[Command] = [Respond(rid, ack) for rid in rids]
        if out.record:
            c.next = r + 2
            cmds += [self._request(c, "release", r + 1, out.record),
                     Notify("release.released", {"contract": c.key, "round": r + 1, "peer": c.rec.peer})]
        elif out.code != "unsigned":  # (unsigned: the peer's signature over the id is on its way: _advance)
            why = f"round {r + 1}: our enclave refused the release: {out.code}: {out.reason}"
            return cmds + self._stop(c, "local-refusal", why, now)
        self._progress(c, now)
        return cmds + self._advance(c, now)

    @staticmethod
    def _keys_in(c: Contract, r: int, now: float, took: float) -> None:
        """Our enclave just took the peer's round ``r`` in a call that took ``took`` seconds: if it was the last
        key due to us, stamp when (``now`` plus the call's duration)."""
        if not any(x.giver != c.me for x in c.rounds[r + 1:]):
            c.keys_in_at = now + took

    def _take(self, c: Contract, r: int, now: float) -> list[Command]:
        """Take the key of a waiting round whose funds are gone (the sweep then tells who spent them); its
        ack is held (``_answer_held``: refused once the contract stops)."""
        from node.tee.client import EnclaveRefused

        record, rids = c.waiting.pop(r)
        try:
            self.enclave.contract_accept(c.cid, record)
        except EnclaveRefused as exc:
            reason = f"round {r}: our enclave refused the key ({exc.code}: {exc.reason})"
            return ([Respond(rid, error_message(self.net, c.cid, r, "wrong-key", reason)) for rid in rids]
                    + self._stop(c, "cheat", reason, now))
        c.next = r + 1
        ack = Respond(rids[-1], self._seal("ack", AckBody(c.cid, r)))
        c.held[r] = ack
        return []

    @staticmethod
    def _gates(c: Contract, r: int) -> bool:
        """Does a release of ours come after the peer's round ``r`` (and so wait for its funds)?"""
        return any(x.giver == c.me for x in c.rounds[r + 1:])

    def _settled(self, c: Contract, r: int) -> bool:
        rec = c.claim_of(r)
        return r in c.checked or (rec is not None and rec.status in ("claimed", "kept"))

    def _answer_held(self, c: Contract) -> list[Command]:
        """Answer the held acks that can be answered: an ack once a round is settled, an error once stopped."""
        out: list[Command] = []
        if c.rec.state in (FAILED, WITHHELD):
            for r, (_, rids) in sorted(c.waiting.items()):
                out += [Respond(rid, error_message(self.net, c.cid, r, "stopped", c.rec.reason)) for rid in rids]
            c.waiting.clear()
        for r, ack in sorted(c.held.items()):
            if c.rec.state in (FAILED, WITHHELD):
                code = "double-spent" if any(x.status == "double-spent" for x in c.rec.claims) else "stopped"
                out.append(Respond(ack.request_id, error_message(self.net, c.cid, r, code, c.rec.reason)))
            elif self._settled(c, r) or c.rec.state == DONE:
                out.append(ack)
            else:
                continue
            del c.held[r]
        return out

    def _record(self, c: Contract, rec: ClaimRecord) -> None:
        """Keep a claim's outcome; it is written with the contract's end (``_stop``). A crash before that
        loses nothing: on resume each received key is checked and swept again, and a sweep that already
        went through is found on the ledger (``sweep_claimer`` returns its txid)."""
        c.rec.claims = [x for x in c.rec.claims if x.round != rec.round] + [rec]

    def _advance(self, c: Contract, now: float) -> list[Command]:
        """Release what the schedule lets us release now; finish when every round is done."""
        cmds: list[Command] = []
        while c.rec.state == RUNNING:
            work, stopped = self._settle(c, now)  # ledger work for the keys received so far
            cmds += work
            if stopped:
                return cmds + self._timers(c, now)
            if c.next >= len(c.rounds):
                if self._mine_unacked(c) is not None:
                    break  # wait for the last ack (resent on the retry timer)
                if any(c.rounds[r].giver != c.me and c.claim_of(r) is None for r in range(c.next)):
                    break  # the outcome is reported once every received key is claimed
                return cmds + self._stop(c, "last-round", "all rounds done", now)
            rd = c.rounds[c.next]
            if rd.giver != c.me:
                break  # the peer's turn
            if self._mine_unacked(c) is not None:
                break  # our previous release is not acknowledged yet
            prev = c.next - 1
            if prev >= 0 and c.rounds[prev].giver != c.me and prev not in c.checked and \
                    getattr(c.claim_of(prev), "status", "") != "claimed":
                break  # the peer's last key: its funds must be seen still there (or swept) first
            from node.tee.client import EnclaveRefused

            r = c.next
            t0 = self._tick()
            try:  # the enclave decides: it releases only what the contract allows, and signs the record
                data = self.enclave.contract_release(c.cid, chunk_index(c.rec.schedule, r), 1 - c.me)
            except EnclaveRefused as exc:
                if exc.code == "unsigned":
                    break  # the peer's signature over the contract id is on its way (cosign): wait
                why = f"round {r}: our enclave refused the release: {exc.code}: {exc.reason}"
                return cmds + self._stop(c, "local-refusal", why, now)
            c.add("enclave", self._tick() - t0)
            c.next = r + 1
            self._progress(c, now)
            cmds.append(self._request(c, "release", r, data))
            cmds.append(Notify("release.released", {"contract": c.key, "round": r, "peer": c.rec.peer}))
        return cmds + self._timers(c, now)

    def _stop(self, c: Contract, event: str, reason: str, now: float) -> list[Command]:
        """Move to a terminal state by the table, persist, and report the outcome."""
        state = TRANSITIONS[(c.rec.state, event)]
        c.rec.state, c.rec.reason = state, reason
        self._persist(c)
        for rid in [rid for rid, p in self._pending.items() if p[0] == c.key]:
            del self._pending[rid]
        c.outcome = self._make_outcome(c)
        cmds: list[Command] = self._answer_held(c)
        if state == WITHHELD:
            cmds.append(Notify("release.withheld", {"contract": c.key, "peer": c.rec.peer, "round": c.next,
                                                    "lost": c.outcome.lost, "reason": reason}))
        cmds.append(Notify("release.outcome", c.outcome.to_json()))
        return cmds

    def _make_outcome(self, c: Contract) -> Outcome:
        chunks: list[ChunkOutcome] = []
        released = received = 0
        for r, rd in enumerate(c.rounds):
            if rd.giver == c.me:
                if r < c.next:
                    released += 1
                continue
            ch = rd.chunk
            cl = c.claim_of(r)
            if r < c.next:
                received += 1
                if cl is None:
                    chunks.append(ChunkOutcome(r, ch.pubkey, ch.asset, ch.address, "received"))
                else:
                    chunks.append(ChunkOutcome(r, ch.pubkey, ch.asset, ch.address, cl.status, cl.txid, cl.detail))
            elif c.rec.state in (WITHHELD, FAILED):
                status = "withheld" if c.rec.state == WITHHELD else "not-received"
                chunks.append(ChunkOutcome(r, ch.pubkey, ch.asset, ch.address, status, "", c.rec.reason))
        statuses = {x.status for x in chunks}
        if "double-spent" in statuses:
            status = "double-spent"
        elif c.rec.state == WITHHELD:
            status = "withheld"
        elif c.rec.state == FAILED:
            status = "failed"
        else:
            status = "claimed"
        device = hashlib.sha256(self._peer_binding(c).sign_pub).digest() if len(c.rec.bindings) == 2 else b""
        return Outcome(c.cid, c.rec.peer, status, c.rec.reason, released, received, max(0, released - received),
                       chunks, device)

    def signed_outcome(self, cid: bytes) -> bytes | None:
        """The contract's outcome as a ``wire.Signed`` record (kind "outcome") signed by our enclave
        (``Enclave.sign("outcome", ...)``), for the outcomes topic; None while the contract runs."""
        c = self.contracts.get(cid.hex())
        if c is None or c.outcome is None:
            return None
        raw = wire.encode(c.outcome)
        sig = self.enclave.sign("outcome", wire.signing_digest(VERSION, self.net, "outcome", raw))
        return wire.encode(wire.Signed(VERSION, self.net, "outcome", raw, self.binding.sign_pub, sig))

    # -- requests ----------------------------------------------------------------
    def _on_request(self, ev: RequestReceived, now: float) -> list[Command]:
        try:
            env, body = parse(ev.data, net=self.net, kinds={"hello", "release", "cosign"}, bodies=BODIES)
        except MessageError as exc:
            return self._refuse(ev.request_id, b"", -1, exc.code, exc.reason)
        if env.kind == "hello":
            return self._on_hello(ev, env, body, now)
        if env.kind == "cosign":
            return self._on_cosign(ev, env, body, now)
        return self._on_release(ev, env, body, now)

    def _on_cosign(self, ev: RequestReceived, env: wire.Signed, b: CosignBody, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        c = self.contracts.get(b.contract_id.hex())
        if c is None or not c.cid:
            return self._refuse(ev.request_id, b.contract_id, -1, "unknown-contract", "no agreed contract with this id")
        if ev.peer != c.rec.peer or env.signer != self._peer_binding(c).sign_pub or c.me != 1:
            return self._refuse(ev.request_id, c.cid, -1, "wrong-peer", "not the initiator of this contract")
        if "cosign" not in ACCEPTS_REQUEST[c.rec.state]:
            return self._refuse(ev.request_id, c.cid, -1, "stopped", f"contract is {c.rec.state}: {c.rec.reason}")
        try:
            self.enclave.contract_open(c.spec(), [(0, b.terms_sig)])
        except EnclaveRefused as exc:
            return self._refuse(ev.request_id, c.cid, -1, "signature", f"our enclave refused it: {exc.reason}")
        ack = Respond(ev.request_id, self._seal("ack", AckBody(c.cid, -1)))
        return [ack] + (self._advance(c, now) if c.rec.state == RUNNING else [])

    def _on_hello(self, ev: RequestReceived, env: wire.Signed, h: HelloBody, now: float,
                  funds_checked: bool = False) -> list[Command]:
        def no(code: str, reason: str) -> list[Command]:
            return self._refuse(ev.request_id, b"", -1, code, reason)

        def never(code: str, reason: str) -> list[Command]:
            """An agreed contract refused for good before it opened (the proposer stops on ``code``): no longer
            expected, so the host releases its reservation at once (``SwapDesk.sync_holds``, on the notice)."""
            self.forget(ev.peer, schedule_hash(h.schedule))
            return no(code, reason)

        if env.signer != h.binding.sign_pub:
            return no("signature", "hello is not signed by the enclave its binding names")
        bad = h.binding.validate()
        if bad:
            return no("attestation", f"malformed binding: {bad}")
        if h.binding.net != self.net or h.binding.peer_id != ev.peer:
            return no("wrong-peer", "the binding names another peer or network than the sender")
        bad = validate_schedule(h.schedule)
        if bad:
            return no("schedule", bad)
        cid = contract_id(h.schedule, [h.binding, self.binding])
        known = self.contracts.get(cid.hex())
        opened = False  # this hello opens the contract here (not a retry of one already agreed)
        if known is None:
            if (ev.peer, schedule_hash(h.schedule)) not in self._expected:
                return no("not-expected", "no such contract was agreed with this peer")
            if not funds_checked:  # (taken up again once the funds are seen: its quote was verified by then;
                # the keys are checked again by the enclave when it opens the contract)
                why = self.attestations.check(h.quote, h.binding, now) or self._enclave_attests(h.binding, h.quote,
                                                                                                  now)
                if why:
                    return never("attestation", f"untrusted quote: {why}")
                keys = self._key_states()
                for r, rd in enumerate(h.schedule.rounds):
                    if rd.giver == 1:
                        k = keys.get(rd.chunk.pubkey)
                        if k is None or k.state not in ("held", "received"):  # received: kept from a contract
                            return never("not-held", f"round {r}: our enclave does not hold that deposit key")

                def then(why: str | None, t: float) -> list[Command]:
                    if why and cid.hex() not in self.contracts:
                        # refused for good: a copy of this hello whose check ends later (resent after a
                        # timeout; the checks run in worker threads) finds it no longer expected, and refuses too
                        return never("funds", why)
                    # (agreed meanwhile on an earlier copy of this hello, resent after a timeout: the same
                    # contract gets the same answer, never a refusal the proposer would stop on while we run)
                    return self._on_hello(ev, env, h, t, funds_checked=True)

                return self._offered_funds(f"release.hello:{ev.request_id}", h.schedule, 0, then)
            rec = ContractRecord(self.net, 1, ev.peer, h.schedule, [h.binding, self.binding], [h.quote, self.quote],
                                 TRANSITIONS[(None, "hello")],
                                 usd=self._declared.pop((ev.peer, schedule_hash(h.schedule)), []))
            known = Contract(cid.hex(), rec, cid, progress_at=now)
            from node.tee.client import EnclaveRefused

            try:  # our enclave takes the contract and signs its id (it holds our chunks for it from now on)
                known.terms_sig = self.enclave.contract_open(known.spec(), []).sig
            except EnclaveRefused as exc:  # e.g. a chunk of ours another agreed contract took first
                return never("not-held", f"our enclave refused the contract: {exc.code}: {exc.reason}")
            self.contracts[known.key] = known
            self._persist(known)
            opened = True
            self._expected.discard((ev.peer, schedule_hash(h.schedule)))
            why = self._sync(known)
            if why:
                return no("not-held", why) + self._stop(known, "local-refusal", why, now)
        if known.rec.state not in (RUNNING, DONE):  # never re-agree to a contract that stopped
            return no("stopped", f"contract is {known.rec.state}: {known.rec.reason}")
        from node.tee.client import EnclaveRefused

        try:
            sig = self._terms_sig(known)
        except EnclaveRefused as exc:
            return no("not-held", f"our enclave refused the contract: {exc.code}: {exc.reason}")
        agree = AgreeBody(cid, self.binding, self.quote, sig)
        cmds: list[Command] = [Respond(ev.request_id, self._seal("agree", agree))]
        if opened:  # our chunks are committed to it now (the host takes them off its sheet)
            cmds.append(Notify("release.agreed", {"contract": known.key, "peer": known.rec.peer}))
        if known.rec.state == RUNNING:
            cmds += self._advance(known, now)
        return cmds

    def _on_release(self, ev: RequestReceived, env: wire.Signed, b: ReleaseBody, now: float) -> list[Command]:
        c = self.contracts.get(b.contract_id.hex())

        def no(code: str, reason: str) -> list[Command]:
            return self._refuse(ev.request_id, b.contract_id, b.round, code, reason)

        if c is None or not c.cid:
            return no("unknown-contract", "no agreed contract with this id")
        if ev.peer != c.rec.peer:
            return no("wrong-peer", "this contract is with another peer")
        if env.signer != self._peer_binding(c).sign_pub:
            return no("signature", "not signed by the peer's attested enclave")
        if "release" not in ACCEPTS_REQUEST[c.rec.state]:
            return no("stopped", f"contract is {c.rec.state}: {c.rec.reason}")
        if not 0 <= b.round < len(c.rounds):
            return no("wrong-round", f"no round {b.round} (the schedule has {len(c.rounds)})")
        rd = c.rounds[b.round]
        if rd.giver == c.me:
            return no("wrong-round", f"round {b.round} is ours to release, not the peer's")
        if b.deposit_pub != rd.chunk.pubkey:
            return no("wrong-key", f"round {b.round} releases deposit key {rd.chunk.pubkey.hex()[:16]}..., "
                                   f"not {b.deposit_pub.hex()[:16]}...")
        if b.recipient != self.binding.enc_pub:
            return no("wrong-recipient", "the release is addressed to another enclave")
        if b.round > c.next:
            return no("out-of-order", f"round {b.round} before round {c.next}")
        if b.round < c.next:  # a resend of a round we already hold: acknowledge again, nothing else
            return [Respond(ev.request_id, self._seal("ack", AckBody(c.cid, b.round)))]
        if self._steps(c, b.round):  # our release follows at once: the funds first, then one enclave call
            record, rids = c.waiting.get(b.round, (ev.data, []))
            c.waiting[b.round] = (record, rids + [ev.request_id])  # (a resend's request is answered too)
            c.rec.acked = max(c.rec.acked, b.round - 1)  # the peer answered: our rounds before are acknowledged
            self._progress(c, now)
            if ("funds", b.round) in c.busy:
                return []
            return [self._task(c, "funds", b.round)] + self._timers(c, now)
        from node.tee.client import EnclaveRefused

        t0 = self._tick()
        raw, digest = self._ack(c, b.round)
        try:  # the enclave checks the signed record itself (giver's attested key, contract, round, recipient)
            out = self.enclave.contract_step(c.cid, ev.data, -1, -1, digest, self.claim_policy == "sweep")
            took = self._tick() - t0
            c.add("enclave", took)  # (and signs our ack; with "sweep" the key is handed to the owner's sweep)
            self._keys_in(c, b.round, now, took)
        except EnclaveRefused as exc:
            reason = f"round {b.round}: our enclave refused the key ({exc.code}: {exc.reason})"
            return no("wrong-key", reason) + self._stop(c, "cheat", reason, now)
        ack = Respond(ev.request_id, self._signed_ack(raw, out.ack_sig))
        # progress: the peer answered, so everything of ours before this round is acknowledged
        c.rec.acked = max(c.rec.acked, b.round - 1)
        c.next = b.round + 1
        self._progress(c, now)
        # no record write here: the enclave's journal holds the key (progress is derived from it on resume)
        # and ``acked`` is written when the contract ends; a crash before that costs at most a resend of our
        # last release, which the peer acknowledges again
        cmds = self._advance(c, now)
        if c.rec.state == FAILED:  # the key arrived but we stop here: say why
            code = "double-spent" if any(x.status == "double-spent" for x in c.rec.claims) else "stopped"
            return [Respond(ev.request_id, error_message(self.net, c.cid, b.round, code, c.rec.reason))] + cmds
        if not self._settled(c, b.round) and self._gates(c, b.round):  # acknowledged once the funds are seen
            c.held[b.round] = ack  # (or refused if gone); after the last such round, at once: the peer
            return cmds  # has nothing left to release, and our sweep's outcome is reported either way
        return [ack] + cmds

    # -- responses -----------------------------------------------------------------
    def _on_response(self, ev: ResponseReceived, now: float) -> list[Command]:
        pend = self._pending.pop(ev.request_id, None)
        if pend is None:
            return []
        key, kind, rnd = pend
        c = self.contracts.get(key)
        if c is None:
            return []
        if ev.error:  # transport failure: the retry timer resends, soon (it waited for this answer)
            return [] if c.rec.state in TERMINAL else [SetTimer(f"release.retry:{key}", now + self.retry_interval)]
        want = {"hello": frozenset({"agree", "error"}), "release": frozenset({"ack", "error"}),
                "cosign": frozenset({"ack", "error"})}[kind]
        try:
            env, body = parse(ev.data, net=self.net, kinds=want & ACCEPTS_RESPONSE[c.rec.state], bodies=BODIES)
        except MessageError as exc:
            self.refusals.append((exc.code, exc.reason))
            return [Notify("release.refused", {"code": exc.code, "reason": exc.reason})]
        if env.kind == "error":
            return self._on_error(c, kind, rnd, body, now)
        if env.kind == "agree":
            return self._on_agree(c, ev, env, body, now)
        if kind == "cosign":
            if env.signer == self._peer_binding(c).sign_pub and body.contract_id == c.cid:
                c.cosigned = True
            return []
        # ack
        if env.signer != self._peer_binding(c).sign_pub or body.contract_id != c.cid or body.round != rnd:
            reason = "ack does not match the release it answers (signer, contract or round)"
            self.refusals.append(("wrong-round", reason))
            return [Notify("release.refused", {"code": "wrong-round", "reason": reason})]
        if rnd > c.rec.acked:  # written at the end (a crash before costs a resend, acknowledged again)
            c.rec.acked = rnd
            self._progress(c, now)
        return self._advance(c, now) if c.rec.state == RUNNING else []

    def _on_error(self, c: Contract, kind: str, rnd: int, e: ErrorBody, now: float) -> list[Command]:
        self.refusals.append(("peer-error", f"{e.code}: {e.reason}"))
        note = Notify("release.peer-error", {"contract": c.key, "round": rnd, "code": e.code, "reason": e.reason})
        if c.rec.state in TERMINAL:
            return [note]
        if e.code in ("double-spent", "wrong-key", "stopped", "not-expected", "attestation", "not-held", "funds",
                      "schedule", "wrong-peer"):
            event = "refused" if c.rec.state == PROPOSED else "peer-stopped"
            return [note] + self._stop(c, event, f"peer stopped: {e.code}: {e.reason}", now)
        return [note]  # anything else: keep retrying until the deadline

    def _on_agree(self, c: Contract, ev: ResponseReceived, env: wire.Signed, a: AgreeBody, now: float,
                  funds_checked: bool = False):
        def bad(code: str, reason: str) -> list[Command]:
            self.refusals.append((code, reason))
            return ([Notify("release.refused", {"code": code, "reason": reason})]
                    + self._stop(c, "bad-agree", f"{code}: {reason}", now))

        if c.rec.state != PROPOSED:
            return []
        if env.signer != a.binding.sign_pub:
            return bad("signature", "agree is not signed by the enclave its binding names")
        if a.binding.validate() or a.binding.net != self.net or a.binding.peer_id != c.rec.peer:
            return bad("wrong-peer", "the binding names another peer or network")
        mine, my_quote = self._proposed_as(c)
        cid = contract_id(c.rec.schedule, [mine, a.binding])
        if a.contract_id != cid:
            return bad("contract-id", "the agreed contract id is not the hash of the schedule and bindings")
        if not funds_checked:  # (taken up again once the funds are seen: its quote was verified, by the enclave
            # too, and the enclave keeps the peer: I3 is its check at each release, not this one's)
            why = self.attestations.check(a.quote, a.binding, now) or self._enclave_attests(a.binding, a.quote, now)
            if why:
                return bad("attestation", f"untrusted quote: {why}")

            def then(why: str | None, t: float) -> list[Command]:
                if c.rec.state != PROPOSED or self.contracts.get(c.key) is not c:
                    return []  # another agree got there first
                return bad("funds", why) if why else self._on_agree(c, ev, env, a, t, funds_checked=True)

            if c.offered is None or c.offered != "pending" and now - c.offered_at > self.retry_interval:
                c.offered = None  # not checked (a resumed proposal), or too long ago: again, now
                cmds = self._check_offered(c)
            else:
                cmds = []
            if c.offered == "pending":
                c.offered_then = then  # (the check started with the hello is still running)
                return cmds
            return then(None if c.offered == "ok" else c.offered, now)
        from node.tee.client import EnclaveRefused

        spec = schedule_spec(c.rec.schedule, [mine, a.binding]).encode()
        try:  # our enclave takes the contract with the responder's signature over its id, and signs it too
            terms_sig = self.enclave.contract_open(spec, [(1, a.terms_sig)]).sig
        except EnclaveRefused as exc:
            return bad("signature" if exc.code == "bad-signature" else "not-held",
                       f"our enclave refused the contract: {exc.code}: {exc.reason}")
        old = c.key
        if cid.hex() in self.contracts:  # a resumed proposal whose contract already runs
            self.contracts.pop(old, None)
            self.store.delete(old)
            return []
        c.rec.bindings = [mine, a.binding]
        c.rec.quotes = [my_quote, a.quote]
        c.rec.state = TRANSITIONS[(PROPOSED, "agree")]
        c.cid, c.key, c.terms_sig, c._spec = cid, cid.hex(), terms_sig, spec
        self.contracts.pop(old, None)
        self.contracts[c.key] = c
        self._persist(c)
        self.store.delete(old)
        self._progress(c, now)
        why = self._sync(c)
        if why:
            return self._stop(c, "local-refusal", why, now)
        return ([Notify("release.agreed", {"contract": c.key, "peer": c.rec.peer})] + self._send_cosign(c)
                + self._advance(c, now))

    # -- timers ----------------------------------------------------------------------
    def _on_timer(self, name: str, now: float) -> list[Command]:
        what, _, key = name.partition(":")
        c = self.contracts.get(key)
        if c is None or c.rec.state in TERMINAL:
            return []
        if what == "release.deadline":
            if c.busy:  # waiting on our own ledger, not on the peer
                return [SetTimer(name, now + self.round_timeout)]
            if now + 1e-9 < c.progress_at + self.round_timeout:
                return [SetTimer(name, c.progress_at + self.round_timeout)]
            if c.rec.state == RUNNING and c.next >= len(c.rounds):
                why = "all rounds done; the peer never acknowledged our last release"
                return self._stop(c, "unacked-end", why, now)
            return self._stop(c, "deadline", f"peer silent for {self.round_timeout:.0f} s at round {c.next}", now)
        if what == "release.retry":
            if self._in_flight(c):  # its answer, or the transport's failure (which brings the retry on), is to come
                return [SetTimer(name, now + self.request_timeout)]
            if c.rec.state == PROPOSED:
                return self._send_hello(c, now) + [SetTimer(name, now + self.retry_interval)]
            return self._resend_last(c) + self._advance(c, now)  # _advance re-arms the timers
        return []


def verify_signed_outcome(data: bytes, *, net: str) -> tuple[Outcome, bytes] | str:
    """(outcome, reporter's enclave signing key) from a signed outcome record, or the reason it is refused.
    The reporter's trust, and the ledger evidence behind a "double-spent" (the winning txid in the
    chunk's detail), are for the reader to weigh."""
    from node.tee.client import verify_domain_sig

    try:
        env = wire.decode(data, wire.Signed, max_size=MAX_MESSAGE)
        if env.version != VERSION or env.kind != "outcome" or env.net != net:
            return "not an outcome record of this version and network"
        out = wire.decode(env.body, Outcome, max_size=MAX_MESSAGE)
    except wire.WireError as exc:
        return f"malformed: {exc.reason}"
    if not verify_domain_sig(env.signer, "outcome", env.digest(), env.sig):
        return "bad enclave signature"
    return out, env.signer


