"""Contracts in the contract language run between enclaves (stream protocol ``/keyswitch/contract-run/1``), sans-IO.

The one contract protocol (issue #19): it runs any ``ContractSpec`` (``node.contracts.spec``: stdlib
``escrow``, ``option``, ``swap``, ``ring``, and ``turns``, the two-party swap ``node.contracts.desk.swaps`` proposes, compiled
from its schedule by ``node.contracts.protocol.schedule``) between its *runners*,
each of which holds the spec (agreed beforehand: ``start`` on every runner, or ``expect`` then the
peer's ``open``). **The enclave decides**: each runner's host asks its enclave what the contract allows
(``contract_status``) and asks it to release (``contract_release``) or refund (``contract_refund``);
the enclave refuses anything else. A release goes straight from giver to receiver, so a ring runs as
pairwise channels pred -> p -> succ.

Wire (``node.wire``: canonical MessagePack, size-bounded, version 1): ``wire.Signed`` envelopes, the
``release`` kind signed inside the giver's enclave (domain "release": the ``ReleaseBody`` record, so
``cheating.CheatingProof`` covers it), every other kind by the sender's enclave (domain "release-msg";
``node.contracts.protocol.envelope``). Kinds::

    open     OpenBody(spec, quote, sigs, binding)   runner -> runner (request): the spec, our quote, the
                                                    signatures over the contract id we know, and the
                                                    binding the quote is for (our current one: its keys
                                                    root moves with our deposits; the enclave keys, peer
                                                    id and network must be the spec's)
    opened   OpenedBody(contract_id, quote, sigs, binding)   response to open
    release  ReleaseBody(contract_id, round, deposit_pub, recipient, ciphertext)   giver -> receiver
    ack      AckBody(contract_id, round)            response to release / approve (round -1)
    approve  ApproveBody(contract_id, party, message, sig)   a party's signature over (contract id,
                                                    message), e.g. the escrow arbiter's "release"
    decline  DeclineBody(contract_id, reason)       runner -> runners (request): we agreed to it but cannot
                                                    run it (our start failed); answered ack (round -1)
    who      WhoBody(binding, quote)                any -> any (request): our attested identity
    whois    WhoBody(binding, quote)                response to who: the peer's (for building a spec)
    error    ErrorBody(contract_id, round, code, reason)      response; unsigned

Before it releases to a party, a runner has verified that party's quote against its binding and (at
open) that every other party's committed chunks are funded on the ledger (for a peer's open of a new
contract in a ledger task, ``LedgerCall``: the open is answered when it is done). Heights come from the ledger
via the host (``observe_height``, an event): the enclave trusts its host for heights (a TEE has no
trusted clock). Approvals are verified here and again inside the enclave.

States (``TRANSITIONS``), the message bodies and the records are in ``node.contracts.protocol.state``
(re-exported here): RUNNING, then DONE, or WITHHELD (no progress by the deadline) then DONE, or FAILED.

WITHHELD is reported (``contract.withheld``) but not terminal: late keys are still taken, and the
contract's time-lock path (``refund`` at a height) sends the unmoved chunks home: the enclave hands each
key back to its owner and the host sweeps it to the owner's claim address (the ``claim`` callable).

Key escrow (an ``EscrowedSpec``, with ``escrow=KeyEscrow(...)``): once our enclave opened the contract,
and again each time more runners' signatures are in, our escrowed chunks' shares go to their holders
(``node.protocols.keyescrow``); a key we receive is shown to the holders of that chunk (its signed
release record), so they never hand its shares to the giver's recovery enclave. Neither waits for the
other: the contract runs as without escrow. The time-lock path without the giver's enclave (its recovery
node rebuilding the key from k shares and sweeping it home) is ``KeyEscrow.recover``.

Keys received: each is checked (funds still there, declared value within ``price_tolerance`` at our price: a
``funds_state`` task) before anything more of ours goes out, then swept in the background while the contract
goes on (release/1's fast path); a key whose check fails is settled first (double spend: ``cheat``; mispriced:
``local-refusal``).

Notices for the host (``Notify``): ``contract.opened`` (our enclave took the contract: our chunks in it are
committed; again on every start), ``released`` / ``refund`` / ``received`` / ``claim`` / ``approval``,
``withheld`` and ``outcome``; for a two-party contract (a swap) these two carry ``outcome``, the swap-shaped
``claims.Outcome`` (``contract_swap.swap_outcome``: released / received / lost, each of the peer's chunks).

Crash safety: the enclave's sealed state is the truth about what moved; the host record (``RunRecord``)
keeps claims, refunds and acks, and ``AgreedRecord`` (store ``agreed``) a contract agreed and not yet opened
with us; ``Started`` resumes every contract (re-open, resend, continue) and agreement. A swap record of the
retired ``/keyswitch/release/1`` becomes a ``RunRecord`` of the same contract id when the node starts
(``swap.migrate_release_records``, ``node.app.stack.open_run_stores``); its resume asks our enclave for our
signature over the id, which release/1 never kept.

The runner is one class, ``ContractRun``, written in parts: here its fields, the application calls, ``handle`` and
the helpers every part uses; ``run_open`` the open phase (our open, a peer's open and decline, ``who``), ``run_rounds``
the rounds (the driver, the requests taken and the answers to ours, the retry and deadline timers), ``run_settle``
the claims and the outcome (checks, claims, stop, drop), ``run_resume`` the restore from the records on ``Started``.
Each part is a mixin with no state of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from node.contracts.spec import ContractSpec, approval_digest, decode_spec, spec_id
from node.protocols.base import (
    Command, Event, Listeners, Notify, RequestReceived, Respond, ResponseReceived, SendRequest, SetTimer, Started,
    TaskDone, TimerFired, Validation,
)
from node.contracts.protocol.state import (  # noqa: F401 (re-exported: the protocol's public names)
    ACCEPTS_REQUEST, BODIES, CHEAT_CODES, DONE, FAILED, MAX_WAITING_OPENS, OPEN_REFUSALS, PROTOCOL_ID, RUNNING,
    TERMINAL, TRANSITIONS, WHO_ATTEMPTS, WITHHELD, AgreedRecord, ApproveBody, DeclineBody, OpenBody, OpenedBody, Run,
    RunRecord,
    WhoBody, _funds_missing, _quote_check,
)
from node.contracts.protocol.claims import MemoryContractStore, RecordStore
from node.contracts.protocol.envelope import AckBody, error_message, seal  # noqa: F401 (AckBody: re-exported)
from node.contracts.protocol.schedule import Chunk
from node.contracts.protocol.run_open import OpenPhase
from node.contracts.protocol.run_resume import Restore
from node.contracts.protocol.run_rounds import ReleaseRounds
from node.contracts.protocol.run_settle import Settlement
from node.contracts.protocol.run_approvals import ApprovalDelivery, Outgoing
from node.attest.binding import Binding


@dataclass
class ContractRun(OpenPhase, ReleaseRounds, Settlement, Restore, ApprovalDelivery):
    """One node's side of every language contract it runs. ``claim(chunk) -> txid`` sweeps a key the
    enclave holds (received, or refunded to us) to a fresh address of our owner; ``check_funds(asset,
    address) -> node.ledger.base.Balance`` asks the ledger; ``claim_policy``: "sweep" or "keep" (received keys).

    Declared amounts are never believed: at agreement (``start`` / a peer's ``open``) every other party's
    chunk must hold, confirmed, at least its committed amount, and its declared USD value must be within
    ``price_tolerance`` of that amount at OUR price (``price_of(asset) -> Price``, the node's feed); each
    key received is checked the same way before it is claimed and before the contract goes on, so a chunk
    drained between steps stops the contract (``cheat``) before anything more of ours is released, and a
    chunk whose value at our price NOW strays beyond ``price_tolerance`` from the value fixed at agreement
    stops it too (``local-refusal``, the reason naming risk.price_tolerance; the key received is claimed)."""

    #: its handle calls the enclave (a blocking IPC): the runtime runs it off the event loop (node.runtime.driver)
    handle_blocks = True

    net: str
    enclave: object
    quote: bytes
    attestations: object  # AttestationCache: check(quote, binding, now) -> None | reason
    check_funds: Callable[[str, str], bool]
    claim: Callable[[Chunk], str] | None = None
    store: RecordStore = field(default_factory=lambda: MemoryContractStore(record_type=RunRecord))
    claim_policy: str = "sweep"
    round_timeout: float = 30.0
    #: s a contract we opened may wait, with no progress, for a runner that never signs it (a swap's proposer that
    #: agreed and never opens; ``turns`` has no time-lock): then our enclave drops it and our chunks are ours again.
    #: Far past every agreement's life (``node.contracts.desk.swaps.RESERVE_TTL``): an honest peer signs within seconds or never;
    #: our opens stop ``2 x request_timeout`` before, so none is in flight when we drop (``_drop``)
    drop_after: float = 600.0
    retry_interval: float = 2.0
    #: s a request waits for its answer (the runtime's ``respond_timeout`` is 10 s). Not ``retry_interval``: on a
    #: loaded machine every answer later than 2 s was thrown away and a copy sent every 2 s while the first was
    #: still being answered, each copy costing both enclaves work (release/1 had the same: its ``request_timeout``).
    #: The retry timer sends no copy of a request still waiting for its answer (``_in_flight``).
    request_timeout: float = 10.0
    #: s an approval of ours is sent again, every ``retry_interval``, to a runner that has not acknowledged it
    #: (``run_approvals``); then given up and said (``contract.approval-undelivered``)
    approve_for: float = 600.0
    #: contracts agreed and not yet opened with us (``AgreedRecord`` by contract id hex): kept across restarts
    agreed: RecordStore = field(default_factory=lambda: MemoryContractStore(record_type=AgreedRecord))
    #: s an agreement waits for its first open; older ones are dropped on restart
    agreement_ttl: float = 86_400.0
    binding: Binding | None = None  # ours, for ``who`` (building specs with peers)
    #: ``identity() -> (binding, quote)``: our current ones (they change with our deposits); else the fields
    identity: Callable[[], tuple[Binding, bytes]] | None = None
    #: ``node.protocols.keyescrow.KeyEscrow``: sends our escrowed chunks' shares to their holders once our enclave
    #: opened the contract (again as signatures come in), and shows the holders the records of keys we receive
    escrow: object | None = None
    #: ``price_of(asset) -> node.assets.prices.Price``: OUR price (the node's feed); None: the embedded table
    price_of: Callable[[str], object] | None = None
    price_tolerance: float = 0.10  # config ``risk.price_tolerance``
    #: ended contracts kept in memory (``runs``: listed, asked about), the most recently ended; older ones, idle
    #: and forgotten by our enclave (``forget_after``), leave memory (their records stay in ``store``) and a
    #: restart reads back only these. Without it a node kept every contract it ever ran in memory and re-opened
    #: each at every start (docs/testing.md, the soak)
    keep_ended: int = 256
    #: s after a contract ended before our enclave forgets it (``_forget_ended``): past every late message a peer
    #: may still send it (a release resent until acknowledged, an open, an approval for ``approve_for``), each
    #: answered by our enclave meanwhile
    forget_after: float = 900.0

    def __post_init__(self) -> None:
        if self.claim_policy not in ("sweep", "keep"):
            raise ValueError("claim_policy is 'sweep' or 'keep'")
        if self.claim_policy == "sweep" and self.claim is None:
            raise ValueError("claim_policy 'sweep' needs a claim callable")
        if not 0 <= self.price_tolerance < 1:
            raise ValueError(f"price_tolerance must be a fraction in [0, 1), got {self.price_tolerance!r}")
        if self.price_of is None:
            from node.assets.prices import StaticPrices

            table = StaticPrices()
            self.price_of = lambda asset: table.price(asset, 0.0)
        self.topics: list[str] = []
        self.stream_protocols = [PROTOCOL_ID]
        self.local_peer = ""
        self.runs: dict[str, Run] = {}
        self._ended: dict[str, None] = {}  # keys of the ended runs in ``runs``, the earliest ended first
        self._now = 0.0  # the time of the event being handled (``_stop`` stamps an ended run with it)
        #: contracts agreed with us and not yet running here: id -> (spec, when we agreed), for ``agreements``
        self._expected: dict[bytes, tuple[ContractSpec, float]] = {}
        #: contracts a peer opened whose funds check is in flight: the opens waiting for it
        self._opening: dict[bytes, list[tuple[int, ContractSpec, int, OpenBody]]] = {}
        self._heights: dict[str, int] = {}
        #: request id -> (contract, kind, step, party, sent at)
        self._pending: dict[int, tuple[str, str, int, int, float]] = {}
        self._approvals: dict[tuple[str, int], Outgoing] = {}  # (contract id hex, party) -> on its way
        self._req = 0
        self.refusals: deque[tuple[str, str]] = deque(maxlen=1000)
        self.known: dict[str, Binding] = {}  # peer id -> its binding, quote verified (from who / whois)
        self.known_quotes: dict[str, bytes] = {}  # peer id -> the quote of ``known[peer]`` (for ``attest_known``)
        self.who_listeners = Listeners()  # woken by peer id once ``known[peer]`` is set
        self._who_tries: dict[str, int] = {}  # peer id -> tries of the ``who`` in progress (``WHO_ATTEMPTS``)

    # -- application calls ------------------------------------------------------------
    def expect(self, spec: ContractSpec, now: float = 0.0) -> bytes:
        """Run ``spec`` when a party opens it with us (agreed elsewhere); returns its id. The agreement is kept
        (``agreed``) until the contract runs here, or ``agreement_ttl`` after ``now``."""
        cid = spec_id(spec)
        if cid not in self._expected:
            if cid.hex() not in self.runs:
                self.agreed.put(cid.hex(), AgreedRecord(spec.encode(), now))
            self._expected[cid] = (spec, now)
        return cid

    def expects(self, cid: bytes) -> bool:
        """Is contract ``cid`` agreed with us and not yet running here?"""
        return cid in self._expected

    def agreements(self) -> list[tuple[bytes, ContractSpec, float]]:
        """(id, spec, agreed at) of every contract agreed with us and not yet running here: made in this process or
        resumed from ``agreed`` after a restart (the host holds their exposure: ``node.contracts.desk.swaps.SwapDesk.sync_holds``)."""
        return [(cid, spec, at) for cid, (spec, at) in list(self._expected.items())]

    def forget(self, cid: bytes) -> None:
        """No longer run contract ``cid`` unless it runs already: a peer's open of it is refused ("not-expected")
        from now on (the host's reservation lapsed, or its open was refused for good)."""
        if cid in self._expected and cid.hex() not in self.runs:
            self._expected.pop(cid, None)
            self.agreed.delete(cid.hex())

    def decline(self, spec: ContractSpec, reason: str, now: float) -> list[Command]:
        """We agreed to ``spec`` but cannot run it (our start failed): every other runner is told at once (a
        ``decline`` signed by our enclave), so it stops expecting the contract and its host's hold on us goes
        now, not when its reservation lapses. Sent once: a lost one leaves the lapse as the backstop."""
        cid = spec_id(spec)
        self.forget(cid)
        try:
            me, body = self._my_party(spec), self._seal("decline", DeclineBody(cid, reason[:300]))
        except Exception:  # (our enclave is away: the peers' reservations lapse instead)
            return []
        return [self._request(cid.hex(), "decline", -1, k, p.binding.peer_id, body, now)
                for k, p in enumerate(spec.parties) if p.runner and k != me]

    def unexpect(self, cid: bytes) -> list[Command]:
        """An agreement that came to nothing (the peer refused the offer, or never answered): no longer expected."""
        self._agreed_done(cid)
        return []

    def _agreed_done(self, cid: bytes) -> None:
        """The contract runs here now (its record is in ``store``): the agreement is no longer needed."""
        if cid in self._expected:
            self._expected.pop(cid, None)
            self.agreed.delete(cid.hex())

    def start(self, spec: ContractSpec, now: float) -> list[Command]:
        """Run ``spec`` (we must be one of its runners): open it in our enclave and with every other runner."""
        bad = decode_spec(spec.encode())
        if isinstance(bad, str):
            raise ValueError(bad)
        cid = spec_id(spec)
        if cid.hex() in self.runs:
            return []
        r = self._new_run(spec, cid, now)
        if isinstance(r, str):
            raise ValueError(r)
        self._agreed_done(cid)
        return [self._opened_note(r)] + self._open_all(r, now) + self._drive(r, now)

    def observe_height(self, asset: str, height: int, now: float) -> list[Command]:
        """A ledger height (from the host's ledger client): handed to every running contract's enclave."""
        if height <= self._heights.get(asset, -1):
            return []
        self._heights[asset] = height
        cmds: list[Command] = []
        for r in list(self.runs.values()):
            if r.rec.state not in TERMINAL:
                self._feed_heights(r)
                cmds += self._drive(r, now)
        return cmds

    def approve(self, spec: ContractSpec, message: str, now: float) -> list[Command]:
        """Sign ``message`` for the contract as our party (e.g. the arbiter's "release", the buyer's
        "exercise") and deliver it to every runner (and our own enclave, if we run the contract)."""
        cid = spec_id(spec)
        me = self._my_party(spec)
        if me is None:
            raise ValueError("we are not a party of this contract")
        sig = self.enclave.sign("approval", approval_digest(cid, message))
        body = self._seal("approve", ApproveBody(cid, me, message, sig))
        cmds: list[Command] = []
        r = self.runs.get(cid.hex())
        if r is not None:
            self.enclave.contract_approve(cid, me, message, sig)
            r.approvals.append((me, message))
            cmds += self._drive(r, now)
        for k, p in enumerate(spec.parties):
            if p.runner and k != me:  # sent again until that runner acknowledges it (``run_approvals``)
                cmds += self._send_approval(cid.hex(), k, Outgoing(body, p.binding.peer_id, p.binding.sign_pub,
                                                                   message, now), now)
        return cmds

    def spec_for(self, spec: ContractSpec) -> ContractSpec | None:
        """A spec we hold (running, or as a non-runner who may approve), by id."""
        r = self.runs.get(spec_id(spec).hex())
        return r.spec if r else None

    def state(self, cid: bytes) -> str | None:
        r = self.runs.get(cid.hex())
        return r.rec.state if r else None

    def outcome(self, cid: bytes):
        """A two-party contract's swap-shaped outcome (``claims.Outcome``) once it was withheld or ended, else None."""
        r = self.runs.get(cid.hex())
        return r.outcome if r else None

    def summary(self, cid: bytes) -> dict | None:
        """What moved so far, from our enclave's view: released / received / refunded steps and the claims."""
        r = self.runs.get(cid.hex())
        if r is None:
            return None
        from node.tee.client import EnclaveRefused

        if r.rec.moved:  # forgotten by our enclave: what moved under it was written to the record first
            status, settled, moved = "forgotten", True, r.rec.moved
        else:
            try:
                st = self.enclave.contract_status(cid)
                status, settled, moved = st.status, st.settled, st.moved
            except EnclaveRefused as exc:
                if exc.code != "unknown-contract" or r.rec.state != FAILED:
                    raise
                status, settled, moved = "dropped", True, []  # (``_drop``): nothing moved under it
        out = {"state": r.rec.state, "reason": r.rec.reason, "status": status, "settled": settled,
               "released": sorted((m.index, m.receiver) for m in moved if m.giver == r.me != m.receiver),
               "received": sorted((m.giver, m.index) for m in moved if m.receiver == r.me != m.giver),
               "refunded": sorted(m.index for m in moved if m.giver == r.me == m.receiver),
               "claims": [(c.round, c.status, c.txid) for c in r.rec.claims]}
        return out

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        return Validation.ignore("the contract-run protocol has no gossip topic")

    # -- events -----------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Command]:
        self._now = now
        if isinstance(event, Started):
            self.local_peer = event.local_peer
            return self._resume(now)
        if isinstance(event, RequestReceived) and event.protocol == PROTOCOL_ID:
            return self._on_request(event, now)
        if isinstance(event, ResponseReceived) and event.protocol == PROTOCOL_ID:
            return self._on_response(event, now)
        if isinstance(event, TimerFired) and event.name.startswith("contract-run."):
            return self._on_timer(event.name, now)
        if isinstance(event, TaskDone) and event.name.startswith("contract-run.claim:"):
            return self._on_claimed(event, now)
        if isinstance(event, TaskDone) and event.name.startswith("contract-run.funds:"):
            return self._on_funds(event, now)
        if isinstance(event, TaskDone) and event.name.startswith("contract-run.check:"):
            return self._on_checked(event, now)
        return []

    # -- helpers ----------------------------------------------------------------------
    def _my_party(self, spec: ContractSpec) -> int | None:
        info = self.enclave.info()
        return next((k for k, p in enumerate(spec.parties)
                     if p.binding.sign_pub == info.sign_pub and p.binding.enc_pub == info.enc_pub), None)

    def _ident(self) -> tuple[Binding | None, bytes]:
        return self.identity() if self.identity is not None else (self.binding, self.quote)

    def _seal(self, kind: str, body) -> bytes:
        return seal(self.enclave, self.enclave.sign_pub(), self.net, kind, body)

    def _request(self, key: str, kind: str, step: int, party: int, peer: str, data: bytes, now: float
                 ) -> SendRequest:
        self._req += 1
        self._pending[self._req] = (key, kind, step, party, now)
        return SendRequest(PROTOCOL_ID, peer, self._req, data, timeout=max(self.retry_interval, self.request_timeout))

    def _in_flight(self, r: Run | str, now: float) -> set[tuple[str, int, int]]:
        """(kind, step, party) of the requests of ``r`` (a run, or a contract id hex: an approval of a contract we
        do not run) still waiting for their answer: no copy of them goes out. One unanswered after
        ``request_timeout`` is taken as lost (a driver that never reports it): forgotten."""
        want = r if isinstance(r, str) else r.key
        out = set()
        for rid, (key, kind, step, party, at) in list(self._pending.items()):
            if key == want:
                if now < at + max(self.retry_interval, self.request_timeout):
                    out.add((kind, step, party))
                else:
                    del self._pending[rid]
        return out

    def _refuse(self, request_id: int, cid: bytes, step: int, code: str, reason: str) -> list[Command]:
        self.refusals.append((code, reason))
        return [Respond(request_id, error_message(self.net, cid, step, code, reason)),
                Notify("contract.refused", {"code": code, "reason": reason, **({"contract": cid.hex()} if cid else {})})]

    def _persist(self, r: Run) -> None:
        self.store.put(r.key, r.rec)

    def _progress(self, r: Run, now: float) -> None:
        r.progress_at = now

    def _timers(self, r: Run, now: float) -> list[Command]:
        if r.rec.state in TERMINAL:
            return []
        cmds: list[Command] = []
        if not r.retry_armed:  # armed once until it fires: every drive (a new height each second on a fast
            r.retry_armed = True  # ledger) set it 2 s ahead again, and a lost release was never resent
            cmds.append(SetTimer(f"contract-run.retry:{r.key}", now + self.retry_interval))
        return cmds + [SetTimer(f"contract-run.deadline:{r.key}", r.progress_at + self.round_timeout)]
