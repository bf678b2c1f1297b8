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
(``contract_swap.migrate_release_records``, ``swaps.open_run_stores``); its resume asks our enclave for our
signature over the id, which release/1 never kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from node import wire
import hashlib

from node.contracts.spec import ContractSpec, ReleaseBody, approval_digest, decode_spec, spec_id
from node.protocols.base import (
    Command, Event, LedgerCall, Listeners, Notify, RequestReceived, Respond, ResponseReceived, SendRequest, SetTimer,
    Started, TaskDone, TimerFired, Validation,
)
from node.contracts.protocol.state import (  # noqa: F401 (re-exported: the protocol's public names)
    ACCEPTS_REQUEST, BODIES, CHEAT_CODES, DONE, FAILED, MAX_WAITING_OPENS, OPEN_REFUSALS, PROTOCOL_ID, RUNNING,
    TERMINAL, TRANSITIONS, WHO_ATTEMPTS, WITHHELD, AgreedRecord, ApproveBody, DeclineBody, OpenBody, OpenedBody, Run,
    RunRecord,
    WhoBody, _funds_missing, _quote_check,
)
from node.contracts.protocol.swap import swap_outcome
from node.contracts.protocol.claims import FUNDS_OK, FUNDS_UNKNOWN, ClaimRecord, MemoryContractStore, RecordStore
from node.contracts.protocol.envelope import AckBody, MessageError, error_message, parse, seal
from node.contracts.protocol.schedule import Chunk
from node.attest.binding import Binding
from node.enclave.contracts import PartySig


@dataclass
class ContractRun:
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
        #: contracts agreed with us and not yet running here: id -> (spec, when we agreed), for ``agreements``
        self._expected: dict[bytes, tuple[ContractSpec, float]] = {}
        #: contracts a peer opened whose funds check is in flight: the opens waiting for it
        self._opening: dict[bytes, list[tuple[int, ContractSpec, int, OpenBody]]] = {}
        self._heights: dict[str, int] = {}
        #: request id -> (contract, kind, step, party, sent at)
        self._pending: dict[int, tuple[str, str, int, int, float]] = {}
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

    def _on_decline(self, ev: RequestReceived, env: wire.Signed, d: DeclineBody) -> list[Command]:
        """A runner of a contract we expect declines it: only that runner's enclave can (never a third peer)."""
        cid = d.contract_id
        spec = self._expected.get(cid, (None,))[0]
        if spec is None or cid.hex() in self.runs:
            return self._refuse(ev.request_id, cid, -1, "not-expected", "no agreement with us waits for it")
        if not any(p.runner and p.binding.peer_id == ev.peer and p.binding.sign_pub == env.signer
                   for p in spec.parties):
            return self._refuse(ev.request_id, cid, -1, "wrong-peer", "the sender is not a runner of that contract")
        self.forget(cid)
        return [Respond(ev.request_id, self._seal("ack", AckBody(cid, -1))),
                Notify("contract.declined", {"contract": cid.hex(), "peer": ev.peer, "reason": d.reason[:300]})]

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
            if p.runner and k != me:
                cmds.append(self._request(cid.hex(), "approve", -1, k, p.binding.peer_id, body, now))
        return cmds

    def who(self, peer: str, now: float) -> list[Command]:
        """Ask ``peer`` for its attested binding; once verified it is in ``known[peer]``. A request that fails in
        transport is tried again, ``WHO_ATTEMPTS`` in all."""
        binding, quote = self._ident()
        if binding is None:
            raise ValueError("this node has no binding to introduce itself with")
        self._who_tries[peer] = 1
        return [self._request("", "who", -1, -1, peer, self._seal("who", WhoBody(binding, quote)), now)]

    def _who_failed(self, peer: str, error: str, now: float) -> list[Command]:
        tries = self._who_tries.get(peer)
        if tries is None:
            return []
        if tries < WHO_ATTEMPTS:
            return [SetTimer(f"contract-run.who:{peer}", now + self.retry_interval)]
        del self._who_tries[peer]
        return [Notify("contract.who", {"peer": peer, "ok": False,
                                        "reason": f"no answer after {tries} tries: {error}"})]

    def _who_again(self, peer: str, now: float) -> list[Command]:
        tries = self._who_tries.get(peer)
        if tries is None or peer in self.known:
            return []
        cmds = self.who(peer, now)
        self._who_tries[peer] = tries + 1
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

        try:
            st = self.enclave.contract_status(cid)
        except EnclaveRefused as exc:
            if exc.code != "unknown-contract" or r.rec.state != FAILED:
                raise
            st = None  # dropped (``_drop``): nothing moved under it
        if st is None:
            return {"state": r.rec.state, "reason": r.rec.reason, "status": "dropped", "settled": True, "released": [],
                    "received": [], "refunded": [], "claims": []}
        out = {"state": r.rec.state, "reason": r.rec.reason, "status": st.status, "settled": st.settled,
               "released": sorted((m.index, m.receiver) for m in st.moved if m.giver == r.me != m.receiver),
               "received": sorted((m.giver, m.index) for m in st.moved if m.receiver == r.me != m.giver),
               "refunded": sorted(m.index for m in st.moved if m.giver == r.me == m.receiver),
               "claims": [(c.round, c.status, c.txid) for c in r.rec.claims]}
        return out

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        return Validation.ignore("the contract-run protocol has no gossip topic")

    # -- events -----------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Command]:
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
        return seal(self.enclave, self.enclave.info().sign_pub, self.net, kind, body)

    def _request(self, key: str, kind: str, step: int, party: int, peer: str, data: bytes, now: float
                 ) -> SendRequest:
        self._req += 1
        self._pending[self._req] = (key, kind, step, party, now)
        return SendRequest(PROTOCOL_ID, peer, self._req, data, timeout=max(self.retry_interval, self.request_timeout))

    def _in_flight(self, r: Run, now: float) -> set[tuple[str, int, int]]:
        """(kind, step, party) of ``r``'s requests still waiting for their answer: no copy of them goes out. One
        unanswered after ``request_timeout`` is taken as lost (a driver that never reports it): forgotten."""
        out = set()
        for rid, (key, kind, step, party, at) in list(self._pending.items()):
            if key == r.key:
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

    def _new_run(self, spec: ContractSpec, cid: bytes, now: float, funds_checked: bool = False) -> Run | str:
        """Record the contract, open it in our enclave (it signs the id) and feed it the heights we know.
        The other parties' funds are checked here (an application call: ``start``) unless ``funds_checked``
        (a peer's open: checked in a ledger task first)."""
        from node.tee.client import EnclaveRefused

        me = self._my_party(spec)
        if me is None or not spec.parties[me].runner:
            return "we are not a runner of this contract"
        missing = None if funds_checked else _funds_missing(self.check_funds, spec, me, self.price_of,
                                                            self.price_tolerance)
        if missing:
            return missing
        rec = RunRecord(spec.encode(), TRANSITIONS[(None, "start")])
        r = Run(rec, spec, cid, me, progress_at=now, verified={me})
        self.store.put(r.key, rec)  # first the record: a crash before the enclave opens it re-opens on resume
        try:
            res = self.enclave.contract_open(rec.spec, [])
        except EnclaveRefused as exc:
            self.store.delete(r.key)
            return f"our enclave refused the contract: {exc.code}: {exc.reason}"
        rec.sigs = [PartySig(me, res.sig)]
        self._persist(r)
        self.runs[r.key] = r
        self._feed_heights(r)
        return r

    def _feed_heights(self, r: Run) -> None:
        for asset, h in sorted(self._heights.items()):
            self.enclave.contract_height(r.cid, asset, h)

    def _add_sigs(self, r: Run, sigs: list[PartySig]) -> str | None:
        """Hand signatures over the contract id to our enclave (it verifies them); keep the good ones."""
        from node.tee.client import EnclaveRefused

        have = {s.party for s in r.rec.sigs}
        new = [s for s in sigs if s.party not in have and 0 <= s.party < len(r.spec.parties)]
        if not new:
            return None
        try:
            self.enclave.contract_open(r.rec.spec, [(s.party, s.sig) for s in new])
        except EnclaveRefused as exc:
            return f"{exc.code}: {exc.reason}"
        r.rec.sigs = sorted([*r.rec.sigs, *new], key=lambda s: s.party)
        self._persist(r)
        return None

    def _open_all(self, r: Run, now: float, skip: int = -1) -> list[Command]:
        """Open the contract with every runner that has not yet shown us its quote and all signatures (but
        ``skip``: the party whose open we are answering; our answer carries our quote and signatures; and a
        runner whose answer to our last open is still to come)."""
        if r.rec.state in TERMINAL or (r.rec.state == WITHHELD and not r.undroppable
                                        and now >= r.progress_at + self.drop_after - 2 * self.request_timeout):
            return []  # (withheld, and a runner that never signed is about to be dropped: no open in flight then)
        busy = self._in_flight(r, now)
        to = [k for k in r.runners() if k not in (r.me, skip) and (k not in r.verified or k not in r.complete)
              and ("open", -1, k) not in busy]
        if not to:
            return []
        binding, quote = self._ident()
        body = self._seal("open", OpenBody(r.rec.spec, quote, list(r.rec.sigs), binding))
        return [self._request(r.key, "open", -1, k, r.spec.parties[k].binding.peer_id, body, now) for k in to]

    def _check_party(self, r: Run, k: int, quote: bytes, binding: Binding | None, now: float) -> str | None:
        if k in r.verified:
            return None
        why = _quote_check(self.attestations, r.spec, k, quote, binding, now)
        if why:
            return why
        from node.tee.client import EnclaveRefused

        try:  # our enclave verifies it too, itself (I3): it releases only to enclaves it verified
            self.enclave.attest_peer(binding or r.spec.parties[k].binding, quote, now=now)
        except EnclaveRefused as exc:
            return f"our enclave refused party {k}'s quote: {exc.code}: {exc.reason}"
        r.verified.add(k)
        return None

    # -- the driver: ask the enclave, release / refund / claim what it allows ---------------
    def _drive(self, r: Run, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        cmds: list[Command] = []
        if r.rec.state in TERMINAL:
            return cmds
        if self.escrow is not None and r.escrow_sigs != len(r.rec.sigs) and any(
                t.party == r.me for t in r.spec.escrows):
            r.escrow_sigs = len(r.rec.sigs)  # escrow beside the contract: it never holds the releases up
            cmds += self.escrow.distribute(r.spec, r.rec.sigs, now)
        try:
            st = self.enclave.contract_status(r.cid)
        except EnclaveRefused as exc:  # e.g. no height yet for a time-lock: wait for the host's ledger
            return [Notify("contract.waiting", {"contract": r.key, "reason": f"{exc.code}: {exc.reason}"})] + \
                self._timers(r, now)
        for m in st.moved:  # every key that came to us (received, or refunded to us) is settled
            if m.receiver != r.me:
                continue
            step = r.spec.step_of(m.giver, m.index)
            if r.claim_of(step) is not None:
                continue
            if m.giver != r.me and step in r.checked:  # its funds are there: swept in the background
                cmds += self._settle(r, m.giver, m.index, step)
                continue
            if m.giver != r.me:  # a peer's key: nothing more of ours goes out before its funds are checked
                return cmds + self._check(r, m.giver, m.index, step) + self._timers(r, now)
            return cmds + self._settle(r, m.giver, m.index, step) + self._timers(r, now)  # a refund: swept first
        if r.rec.state in TERMINAL:
            return cmds
        for g, i, recv in st.allowed:
            if st.missing and recv != r.me:
                continue  # not every runner has signed the contract id yet (a refund needs no signature, I1: a
                # party that never opened the contract used to keep every other party's chunk from going home)
            if recv != r.me and any(k not in r.verified for k in {*r.runners(), recv}):
                continue  # our enclave releases only when it verified the receiver's and every runner's quote (I3):
                # wait for their opens (asking it early failed the contract: a ring's third party stopped for good
                # before the second's quote came, and refused the key the second had released to it)
            try:
                if recv == r.me:
                    self.enclave.contract_refund(r.cid, i)  # the key goes back to its owner
                    self._progress(r, now)
                    cmds.append(Notify("contract.refund", {"contract": r.key, "index": i, "pubkey": r.spec.parties[
                        r.me].chunks[i].pubkey.hex()}))
                    cmds += self._settle(r, r.me, i, r.spec.step_of(r.me, i))
                    continue
                data = self.enclave.contract_release(r.cid, i, recv)
            except EnclaveRefused as exc:
                if exc.code in ("not-allowed", "unattested"):
                    continue  # the view moved under us, or a quote is still on its way: ask again next time
                return cmds + self._stop(r, "local-refusal", f"our enclave refused: {exc.code}: {exc.reason}")
            step = r.spec.step_of(r.me, i)
            r.pending[step] = data
            self._progress(r, now)
            cmds.append(self._request(r.key, "release", step, recv, r.spec.parties[recv].binding.peer_id, data, now))
            cmds.append(Notify("contract.released", {"contract": r.key, "index": i, "to": recv,
                                                     "pubkey": r.spec.parties[r.me].chunks[i].pubkey.hex()}))
        if st.finished or st.settled:
            after = self.enclave.contract_status(r.cid)
            if (after.finished or after.settled) and not after.allowed and not r.pending and all(
                    r.claim_of(r.spec.step_of(m.giver, m.index)) for m in after.moved if m.receiver == r.me):
                return cmds + self._stop(r, "settled", f"contract {st.status}")
        return cmds + self._timers(r, now)

    def _settle(self, r: Run, giver: int, index: int, step: int) -> list[Command]:
        """Claim a key that came to us (sweep or keep a received one; sweep a refunded one to our owner) in a
        ledger task (``LedgerCall``: never inside ``handle``); ``_on_claimed`` records the outcome."""
        if step in r.busy:
            return []
        chunk = r.chunk(giver, index)
        # a peer's key: its chunk must still hold what was committed, and its declared USD value be within
        # risk.price_tolerance at our price now, before we go on, then ``claim_policy``; our own key handed back
        # (a refund): swept home when a claim is configured (``interpret.contract_settle``)
        r.busy.add(step)
        usd = r.spec.parties[giver].chunks[index].usd_cents
        return [LedgerCall(f"contract-run.claim:{r.key}:{giver}:{step}", "contract_settle",
                           (self.claim_policy, chunk, step, giver != r.me, usd, self.price_tolerance,
                            step in r.checked))]

    def _check(self, r: Run, giver: int, index: int, step: int) -> list[Command]:
        """A received key's chunk: does it still hold what was committed, and is its declared USD value within
        ``price_tolerance`` at our price now? (``funds_state``, in a ledger task; ``_on_checked``.)"""
        if step in r.checking or step in r.busy:
            return []
        r.checking.add(step)
        usd = r.spec.parties[giver].chunks[index].usd_cents
        return [LedgerCall(f"contract-run.check:{r.key}:{giver}:{step}", "funds_state",
                           (r.chunk(giver, index), usd, self.price_tolerance))]

    def _on_checked(self, ev: TaskDone, now: float) -> list[Command]:
        """Funds there: the contract goes on and the key is swept alongside. Unknown (our ledger or feed):
        asked again on the retry timer, no one blamed. Short, gone or mispriced: settled first, as before
        (the claim finds and records a double spend, or the mispricing stops the contract)."""
        _, key, giver, step = ev.name.split(":")
        r, giver, step = self.runs.get(key), int(giver), int(step)
        if r is None or step not in r.checking:
            return []
        r.checking.discard(step)
        if r.rec.state in TERMINAL:
            return []
        state, why = ev.result if ev.error is None else (FUNDS_UNKNOWN, f"{type(ev.error).__name__}: {ev.error}")
        if state == FUNDS_OK:
            r.checked.add(step)
            return self._drive(r, now)
        if state == FUNDS_UNKNOWN:
            return [Notify("contract.waiting", {"contract": r.key, "reason": f"step {step}: {why}"})]
        return self._settle(r, giver, r.spec.steps()[step][1], step)

    def _on_claimed(self, ev: TaskDone, now: float) -> list[Command]:
        _, key, giver, step = ev.name.split(":")
        r, giver, step = self.runs.get(key), int(giver), int(step)
        if r is None or step not in r.busy:
            return []
        r.busy.discard(step)
        rec, mispriced = ev.result if isinstance(ev.result, tuple) else (ev.result, None)
        if not isinstance(rec, ClaimRecord):
            rec = ClaimRecord(step, "claim-failed", "", f"{type(ev.error).__name__}: {ev.error}")
        if rec.status == "claim-failed":  # our ledger: retry on the timer, blame no one
            if r.rec.state in TERMINAL:
                return []
            return [Notify("contract.claim-retry", {"contract": r.key, "step": step, "detail": rec.detail})]
        r.rec.claims = [*r.rec.claims, rec]  # kept even if the contract stopped meanwhile (the sweep happened)
        note = [self._claim_note(r, giver, step, rec)] if giver != r.me else []
        if mispriced and giver != r.me and r.rec.state not in TERMINAL:  # the key is ours (claimed); nothing
            # more of ours goes out for it (the claim and the stop in one write: a restart never goes on)
            return note + self._stop(r, "local-refusal", f"step {step}: {mispriced}")
        self._persist(r)  # (the record is written before its notice leaves)
        if r.rec.state in TERMINAL:
            return note
        if rec.status == "double-spent" and giver != r.me:
            return note + self._stop(r, "cheat", f"step {step}: double-spent: {rec.detail}")
        return note + self._drive(r, now)

    def _party_detail(self, r: Run, k: int) -> dict:
        b = r.spec.parties[k].binding
        return {"giver": k, "peer": b.peer_id, "sign_pub": b.sign_pub.hex()}

    def _claim_note(self, r: Run, giver: int, step: int, rec: ClaimRecord) -> Notify:
        """``contract.claim``: a key received from ``giver`` settled (claimed / kept / double-spent), with
        what an outcome report names: the giver's enclave key, the chunk and the transaction. Sent when the
        claim record is written and again on every start (a crash may have lost it): the reporter dedupes."""
        c = r.chunk(*r.spec.steps()[step])
        return Notify("contract.claim", {"contract": r.key, "step": step, **self._party_detail(r, giver),
                                         "status": rec.status, "txid": rec.txid, "detail": rec.detail,
                                         "asset": c.asset, "address": c.address, "deposit_pub": c.pubkey.hex()})

    def _owed(self, r: Run, st) -> list[dict]:
        """The chunks other parties may release to us now by the contract, over our enclave's view (what
        moved, the heights it holds, the approvals delivered since we started): whom a stall is blamed on."""
        from node.contracts import Transfer, View, evaluate
        from node.contracts.errors import ContractRuntimeError
        from node.contracts.model import ViewError
        from node.contracts.spec import compile_spec

        ids = r.spec.ids
        view = View(r.spec.view_chunks(), [Transfer(ids[m.giver], m.index, ids[m.receiver]) for m in st.moved],
                    {h.asset: h.height for h in st.heights}, {}, [(ids[k], msg) for k, msg in r.approvals])
        try:
            out = evaluate(compile_spec(r.spec), view)
        except (ContractRuntimeError, ViewError):  # our enclave cannot evaluate it either: blame no one
            return []
        owed = []
        for x in out.releases:
            if x.receiver == ids[r.me] != x.giver:
                g = ids.index(x.giver)
                c = r.chunk(g, x.index)
                owed.append({**self._party_detail(r, g), "index": x.index, "asset": c.asset, "address": c.address})
        return owed

    def _stop(self, r: Run, event: str, reason: str) -> list[Command]:
        from node.tee.client import EnclaveRefused

        r.rec.state, r.rec.reason = TRANSITIONS[(r.rec.state, event)], reason
        self._persist(r)
        for rid in [rid for rid, p in self._pending.items() if p[0] == r.key]:
            del self._pending[rid]
        try:
            moved = self.enclave.contract_status(r.cid).moved if len(r.spec.parties) == 2 else []
        except EnclaveRefused:
            moved = []
        return [Notify("contract.outcome", {"contract": r.key, "state": r.rec.state, "reason": reason,
                                            **self._outcome_detail(r, moved)})]

    def _drop(self, r: Run, missing: list[int]) -> list[Command]:
        """A runner never signed the contract within ``drop_after`` and nothing moved: our enclave drops it (it
        refuses if every runner signed meanwhile, or a key moved) and our chunks in it are ours again."""
        from node.tee.client import EnclaveRefused

        try:
            self.enclave.contract_drop(r.cid)
        except EnclaveRefused as exc:  # (our keys escrowed under it: it runs until its time-lock)
            r.undroppable = True
            return [Notify("contract.waiting", {"contract": r.key, "reason": f"not dropped: {exc.code}: {exc.reason}"})]
        return self._stop(r, "unsigned", f"party {', '.join(map(str, missing))} never signed the contract in "
                                         f"{self.drop_after:.0f} s: dropped, our chunks in it are ours again")

    def _outcome_detail(self, r: Run, moved) -> dict:
        """A two-party contract: ``{"outcome": swap-shaped outcome}`` (what the request desk and the outcome
        reporter read of a swap: released / received / lost and each of the peer's chunks), kept in ``r.outcome``."""
        r.outcome = swap_outcome(r.spec, r.cid, r.me, r.rec.state, r.rec.reason, moved, r.rec.claims)
        return {"outcome": r.outcome.to_json()} if r.outcome is not None else {}

    def _opened_note(self, r: Run) -> Notify:
        """``contract.opened``: our enclave took the contract, so our chunks in it are committed (the desk takes
        them off our sheet at once: release/1's retraction at agreement) and the counterparties' devices are
        known. Sent at open and again on every start for a contract still running (idempotent for the reader)."""
        return Notify("contract.opened", {
            "contract": r.key, "party": r.me, "committed": [c.pubkey.hex() for c in r.spec.parties[r.me].chunks],
            "parties": [{"party": k, "peer": p.binding.peer_id, "device": hashlib.sha256(p.binding.sign_pub).hexdigest()}
                        for k, p in enumerate(r.spec.parties) if k != r.me]})

    def _resume_agreed(self, now: float) -> list[Command]:
        """Contracts agreed before a restart and not yet opened with us: expected again (or dropped: run here
        already, older than ``agreement_ttl``, or unreadable); an agreement time after ``now`` becomes ``now``."""
        cmds: list[Command] = []
        for key, rec in self.agreed.items():
            spec = rec if isinstance(rec, str) else decode_spec(rec.spec)
            if isinstance(spec, str):
                cmds.append(Notify("contract.store-error", {"contract": key, "reason": f"agreement: {spec}"}))
            elif key == spec_id(spec).hex() and key not in self.runs and now < rec.at + self.agreement_ttl:
                if rec.at > now:  # agreed "in the future": the wall clock was stepped back since. Counted from now,
                    rec = AgreedRecord(rec.spec, now)  # so no restart again later finds a whole TTL left
                    self.agreed.put(key, rec)  # (``node.contracts.desk.lapse``)
                self._expected[spec_id(spec)] = (spec, rec.at)
                continue
            self.agreed.delete(key)
        return cmds

    def _resume(self, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        cmds: list[Command] = []
        for key, rec in self.store.items():
            if isinstance(rec, str):
                cmds.append(Notify("contract.store-error", {"contract": key, "reason": rec}))
                continue
            spec = decode_spec(rec.spec)
            if isinstance(spec, str):
                cmds.append(Notify("contract.store-error", {"contract": key, "reason": spec}))
                continue
            me = self._my_party(spec)
            r = Run(rec, spec, spec_id(spec), me, progress_at=now, verified={me})
            self.runs[r.key] = r
            for c in rec.claims:  # settled claims of received keys, again: a crash may have lost the notice
                giver = spec.steps()[c.round][0]
                if giver != me:
                    cmds.append(self._claim_note(r, giver, c.round, c))
            if rec.state in TERMINAL:
                continue
            try:  # idempotent: re-opens a contract the crash caught before our enclave took it
                res = self.enclave.contract_open(rec.spec, [(s.party, s.sig) for s in rec.sigs if s.party != me])
                if all(s.party != me for s in rec.sigs):  # a record migrated from release/1 keeps no signatures
                    rec.sigs = sorted([*rec.sigs, PartySig(me, res.sig)], key=lambda s: s.party)
                    self._persist(r)
                st = self.enclave.contract_status(r.cid)
            except EnclaveRefused as exc:
                if exc.code != "contract-error":
                    cmds += self._stop(r, "local-refusal", f"on resume: {exc.code}: {exc.reason}")
                    continue
                st = None
            if st is not None:
                for m in st.moved:  # our releases the receiver has not acknowledged: resend them
                    if m.giver == me != m.receiver:
                        step = spec.step_of(me, m.index)
                        if step not in rec.acked:
                            r.pending[step] = self.enclave.contract_resend(r.cid, m.index)
            cmds += [self._opened_note(r)] + self._open_all(r, now) + self._resend(r, now) + self._drive(r, now)
        return cmds + self._resume_agreed(now)

    def _resend(self, r: Run, now: float) -> list[Command]:
        """Our unacknowledged releases again, but those whose answer is still to come (``_in_flight``)."""
        out = []
        busy = self._in_flight(r, now)
        for step, data in sorted(r.pending.items()):
            env = wire.decode(data, wire.Signed)
            recv = r.spec.parties.index(next(p for p in r.spec.parties
                                             if p.binding.enc_pub == wire.decode(env.body, ReleaseBody).recipient))
            if ("release", step, recv) not in busy:
                out.append(self._request(r.key, "release", step, recv, r.spec.parties[recv].binding.peer_id, data,
                                         now))
        return out

    # -- requests -----------------------------------------------------------------------
    def _on_request(self, ev: RequestReceived, now: float) -> list[Command]:
        try:
            env, body = parse(ev.data, net=self.net, kinds={"open", "release", "approve", "who", "decline"},
                              bodies=BODIES)
        except MessageError as exc:
            return self._refuse(ev.request_id, b"", -1, exc.code, exc.reason)
        if env.kind == "who":
            why = self._learn(ev.peer, env, body, now)
            binding, quote = self._ident()
            if why or binding is None:
                return self._refuse(ev.request_id, b"", -1, "attestation", why or "no binding to answer with")
            return [Respond(ev.request_id, self._seal("whois", WhoBody(binding, quote)))]
        if env.kind == "open":
            return self._on_open(ev, env, body, now)
        if env.kind == "decline":
            return self._on_decline(ev, env, body)
        r = self.runs.get(body.contract_id.hex())
        if r is None:
            return self._refuse(ev.request_id, body.contract_id, -1, "unknown-contract", "no such contract here")
        if env.kind not in ACCEPTS_REQUEST[r.rec.state]:
            return self._refuse(ev.request_id, r.cid, -1, "stopped", f"contract is {r.rec.state}: {r.rec.reason}")
        if env.kind == "approve":
            return self._on_approve(ev, env, body, r, now)
        return self._on_release(ev, env, body, r, now)

    def _on_open(self, ev: RequestReceived, env: wire.Signed, o: OpenBody, now: float) -> list[Command]:
        spec = decode_spec(o.spec)
        if isinstance(spec, str):
            return self._refuse(ev.request_id, b"", -1, "spec", spec)
        cid = spec_id(spec)
        k = next((k for k, p in enumerate(spec.parties) if p.binding.peer_id == ev.peer), None)
        if k is None or not spec.parties[k].runner:
            return self._refuse(ev.request_id, cid, -1, "wrong-peer", "the sender is not a runner of this contract")
        if env.signer != spec.parties[k].binding.sign_pub:
            return self._refuse(ev.request_id, cid, -1, "signature", "open is not signed by the sender's enclave")
        r = self.runs.get(cid.hex())
        if r is None:
            if cid not in self._expected:
                return self._refuse(ev.request_id, cid, -1, "not-expected", "no such contract was agreed with us")
            why = _quote_check(self.attestations, spec, k, o.quote, o.binding, now)
            if why:  # checked before our enclave takes the contract
                return self._refuse(ev.request_id, cid, -1, "attestation", why)
            return self._check_funds_first(ev.request_id, spec, cid, k, o)
        return self._opened(ev.request_id, r, k, o, now)

    def _check_funds_first(self, request_id: int, spec: ContractSpec, cid: bytes, k: int, o: OpenBody
                           ) -> list[Command]:
        """A new contract opened by a peer: the other parties' funds are checked on the ledger in a task
        (``LedgerCall``, never inside ``handle``); the open is answered when it is done (``_on_funds``)."""
        waiting = self._opening.setdefault(cid, [])
        if len(waiting) >= MAX_WAITING_OPENS:
            return self._refuse(request_id, cid, -1, "busy", "the funds check of this contract is still running")
        waiting.append((request_id, spec, k, o))
        if len(waiting) > 1:
            return []  # a check of this contract is in flight already
        me = self._my_party(spec)
        return [LedgerCall(f"contract-run.funds:{cid.hex()}", "contract_funds_missing",
                           (spec, me, self.price_tolerance))]  # ``_funds_missing`` with our ledger and price

    def _on_funds(self, ev: TaskDone, now: float) -> list[Command]:
        cid = bytes.fromhex(ev.name.split(":", 1)[1])
        waiting = self._opening.pop(cid, [])
        if not waiting:
            return []
        spec = waiting[0][1]
        missing = ev.result if ev.error is None else f"funds unknown: {type(ev.error).__name__}: {ev.error}"
        r = self.runs.get(cid.hex())
        if r is None and cid not in self._expected:  # the agreement lapsed (its hold went) while the check ran
            why = "the agreement lapsed while its funds were checked"
            return [c for rid, *_ in waiting for c in self._refuse(rid, cid, -1, "not-expected", why)]
        if r is None:
            made = missing or self._new_run(spec, cid, now, funds_checked=True)
            if isinstance(made, str):
                code = made.split(":")[0] if made.startswith("funds") else "not-held"
                if "funds unknown" not in made:  # refused for good (a chunk gone or short, or our enclave
                    self.forget(cid)  # refused it): no longer expected, so the host releases its reservation now
                return [c for rid, *_ in waiting for c in self._refuse(rid, cid, -1, code, made)]
            r = made
            self._agreed_done(cid)
            return [self._opened_note(r)] + [c for rid, _, k, o in waiting for c in self._opened(rid, r, k, o, now)]
        return [c for rid, _, k, o in waiting for c in self._opened(rid, r, k, o, now)]

    def _opened(self, request_id: int, r: Run, k: int, o: OpenBody, now: float) -> list[Command]:
        """Answer party ``k``'s open of a contract we run: its quote and signatures, then ``opened``."""
        cid = r.cid
        why = self._check_party(r, k, o.quote, o.binding, now)
        if why:
            return self._refuse(request_id, cid, -1, "attestation", why)
        why = self._add_sigs(r, o.sigs)
        if why:
            return self._refuse(request_id, cid, -1, "signature", why)
        if {s.party for s in o.sigs} >= set(r.runners()):
            r.complete.add(k)
        self._progress(r, now)
        binding, quote = self._ident()
        resp = Respond(request_id, self._seal("opened", OpenedBody(cid, quote, list(r.rec.sigs), binding)))
        return [resp] + self._open_all(r, now, skip=k) + self._drive(r, now)  # (opening k again at once, while a
        # runner had not signed, made two parties open to each other in a loop with no pause)

    def _on_approve(self, ev, env, a: ApproveBody, r: Run, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused, verify_domain_sig

        if not 0 <= a.party < len(r.spec.parties):
            return self._refuse(ev.request_id, r.cid, -1, "wrong-peer", "no such party")
        if not verify_domain_sig(r.spec.parties[a.party].binding.sign_pub, "approval",
                                 approval_digest(r.cid, a.message), a.sig):
            return self._refuse(ev.request_id, r.cid, -1, "signature",
                                f"not party {a.party}'s signature over (contract id, {a.message!r})")
        try:
            self.enclave.contract_approve(r.cid, a.party, a.message, a.sig)
        except EnclaveRefused as exc:
            return self._refuse(ev.request_id, r.cid, -1, "signature", f"our enclave refused it: {exc.reason}")
        r.approvals.append((a.party, a.message))
        self._progress(r, now)
        cmds = [Respond(ev.request_id, self._seal("ack", AckBody(r.cid, -1))),
                Notify("contract.approval", {"contract": r.key, "party": a.party, "message": a.message})]
        return cmds + self._drive(r, now)

    def _on_release(self, ev, env, b: ReleaseBody, r: Run, now: float) -> list[Command]:
        from node.tee.client import EnclaveRefused

        owner = r.spec.owner_of(b.deposit_pub)
        if owner is None or r.spec.parties[owner[0]].binding.peer_id != ev.peer:
            return self._refuse(ev.request_id, r.cid, b.round, "wrong-peer", "not a chunk of the sender")
        try:  # the enclave checks the record (signer, contract, step, recipient) and the key itself
            self.enclave.contract_accept(r.cid, ev.data)
        except EnclaveRefused as exc:
            cmds = self._refuse(ev.request_id, r.cid, b.round, exc.code, f"our enclave refused the key: {exc.reason}")
            if exc.code in CHEAT_CODES and r.rec.state in (RUNNING, WITHHELD):
                cmds += self._stop(r, "cheat", f"step {b.round}: {exc.code}: {exc.reason}")
            return cmds
        self._progress(r, now)
        ack = Respond(ev.request_id, self._seal("ack", AckBody(r.cid, b.round)))
        got = Notify("contract.received", {"contract": r.key, "step": b.round, "giver": owner[0], "at": now,
                                           "record": ev.data.hex()})  # the signed record our enclave accepted
        shown = self.escrow.show_moved(r.spec, ev.data, now) if self.escrow is not None else []
        return [ack, got, *shown] + self._drive(r, now)

    def _learn(self, peer: str, env: wire.Signed, w: WhoBody, now: float) -> str | None:
        if w.binding.validate() or w.binding.net != self.net or w.binding.peer_id != peer:
            return "the binding names another peer or network"
        if env.signer != w.binding.sign_pub:
            return "not signed by the enclave the binding names"
        why = self.attestations.check(w.quote, w.binding, now)
        if why:
            return f"untrusted quote: {why}"
        self.known[peer] = w.binding
        self.known_quotes[peer] = w.quote
        self.who_listeners.fire(peer)
        return None

    def attest_known(self, peer: str, now: float) -> None:
        """Our enclave verifies ``peer``'s quote (from ``who``) itself (I3: e.g. a key-escrow holder or recovery
        enclave, before our enclave splits a key to it); ValueError with the reason when it refuses."""
        from node.tee.client import EnclaveRefused

        if peer not in self.known:
            raise ValueError(f"no attested binding from {peer}")
        try:
            self.enclave.attest_peer(self.known[peer], self.known_quotes[peer], now=now)
        except EnclaveRefused as exc:
            raise ValueError(f"our enclave refused {peer}'s quote: {exc.code}: {exc.reason}") from None

    # -- responses ------------------------------------------------------------------------
    def _on_response(self, ev: ResponseReceived, now: float) -> list[Command]:
        pend = self._pending.pop(ev.request_id, None)
        if pend is None:
            return []
        key, kind, step, party, _ = pend
        if kind == "who":
            if ev.error:
                return self._who_failed(ev.peer, ev.error, now)
            self._who_tries.pop(ev.peer, None)
            try:
                env, body = parse(ev.data, net=self.net, kinds={"whois", "error"}, bodies=BODIES)
            except MessageError as exc:
                return [Notify("contract.refused", {"code": exc.code, "reason": exc.reason})]
            why = "peer: " + body.reason if env.kind == "error" else self._learn(ev.peer, env, body, now)
            return [Notify("contract.who", {"peer": ev.peer, "ok": why is None, "reason": why or ""})]
        r = self.runs.get(key)
        if r is None or ev.error or kind == "decline":
            return []  # transport failure: the retry timer resends (a decline is sent once)
        want = {"open": {"opened", "error"}, "release": {"ack", "error"}, "approve": {"ack", "error"}}[kind]
        try:
            env, body = parse(ev.data, net=self.net, kinds=want, bodies=BODIES)
        except MessageError as exc:
            self.refusals.append((exc.code, exc.reason))
            return [Notify("contract.refused", {"code": exc.code, "reason": exc.reason})]
        if env.kind == "error":
            self.refusals.append(("peer-error", f"{body.code}: {body.reason}"))
            note = Notify("contract.peer-error", {"contract": key, "step": step, "code": body.code,
                                                  "reason": body.reason})
            if kind == "open" and body.code in OPEN_REFUSALS and r.rec.state == RUNNING and \
                    party not in {s.party for s in r.rec.sigs}:  # nothing of ours can have moved: it never signed
                return [note] + self._stop(r, "peer-refused", f"party {party} refused the contract: {body.code}: "
                                                              f"{body.reason}")
            return [note]
        if env.signer != r.spec.parties[party].binding.sign_pub or body.contract_id != r.cid:
            self.refusals.append(("wrong-peer", f"{env.kind} not from the party asked or for another contract"))
            return [Notify("contract.refused", {"code": "wrong-peer", "reason": "answer from the wrong enclave"})]
        self._progress(r, now)
        if env.kind == "opened":
            why = self._check_party(r, party, body.quote, body.binding, now) or self._add_sigs(r, body.sigs)
            if why:
                self.refusals.append(("attestation", why))
                return [Notify("contract.refused", {"code": "attestation", "reason": why})]
            if {s.party for s in body.sigs} >= set(r.runners()):
                r.complete.add(party)
            return self._drive(r, now)
        if kind == "release" and body.round == step:
            r.pending.pop(step, None)
            if step not in r.rec.acked:
                r.rec.acked = sorted([*r.rec.acked, step])
                self._persist(r)
        return self._drive(r, now)

    # -- timers ---------------------------------------------------------------------------------
    def _on_timer(self, name: str, now: float) -> list[Command]:
        what, _, key = name.partition(":")
        if what == "contract-run.who":
            return self._who_again(key, now)
        r = self.runs.get(key)
        if r is None or r.rec.state in TERMINAL:
            return []
        if what == "contract-run.deadline":
            if r.busy or r.checking:  # waiting on our own ledger (a claim or funds task), not on the peers
                return [SetTimer(name, now + self.round_timeout)]
            if now + 1e-9 < r.progress_at + self.round_timeout:
                return [SetTimer(name, r.progress_at + self.round_timeout)]
            from node.tee.client import EnclaveRefused

            try:
                st = self.enclave.contract_status(r.cid)
            except EnclaveRefused as exc:  # e.g. no height handed in yet
                return [Notify("contract.waiting", {"contract": r.key, "reason": f"{exc.code}: {exc.reason}"})]
            if (st.finished or st.settled) and not st.allowed and r.pending:
                return self._stop(r, "settled", "contract over; the peer never acknowledged our last release")
            if st.missing and not st.moved and not r.pending and not r.undroppable and \
                    now >= r.progress_at + self.drop_after:
                return self._drop(r, st.missing)
            if r.rec.state == RUNNING:
                r.rec.state, r.rec.reason = TRANSITIONS[(RUNNING, "deadline")], \
                    f"no progress for {self.round_timeout:.0f} s"
                self._persist(r)
                released = sum(1 for m in st.moved if m.giver == r.me != m.receiver)
                received = sum(1 for m in st.moved if m.receiver == r.me != m.giver)
                return [Notify("contract.withheld", {"contract": r.key, "released": released, "received": received,
                                                     "reason": r.rec.reason, "owed": self._owed(r, st),
                                                     **self._outcome_detail(r, st.moved)})]
            return []
        if what == "contract-run.retry":
            r.retry_armed = False
            return self._open_all(r, now) + self._resend(r, now) + self._drive(r, now)
        return []
