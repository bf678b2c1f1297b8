"""From a request to contracts, on the requester's side: a small sans-IO state machine.

``keyswitch request --asset A --usd X --give B`` (``POST /v1/requests`` with ``give``) asks the network for
chunks of A worth X USD (``node.protocols.rfp``), lets the local rules allocate them, then swaps each chosen
provider's chunks of A against as many of our chunks of B, one swap per provider, all at once. This machine
decides; the daemon (``node.app.requestdesk``) does what it says and feeds back what happened:

* events: ``Allocated`` (the allocation of an ask: the RFP's ``Chosen``), ``SwapAgreed`` / ``SwapRefused``
  (the provider's answer to the contract offer, or why it was never offered), ``SwapEnded`` (the swap's end:
  what we received, released and lost);
* commands: ``Ask`` (collect proposals and allocate, leaving out some providers), ``StartSwap`` (one swap
  with one provider over the chunks allocated from it), ``Finished`` (the final report).

A provider that refuses, is unreachable or withholds does not stop the others. Once every swap of the first
ask has ended, what is still missing (the shortfall) is asked for once more, from providers other than those
that refused or withheld; the run then ends with what it has. Tit-for-tat bounds what a withholder takes to
one chunk (``SwapEnded.lost``). ``report()`` says what was obtained, from whom, and what was lost; its
``exit_code`` is the CLI's: ``EXIT_COMPLETE`` (0) all obtained, ``EXIT_NO_ALLOCATION`` (4) no contract could
even start (nothing allocated), ``EXIT_SHORT`` (5) contracts ran but less than asked for was obtained.

**Options** (``kind`` "option", ``request --contract option``): the same allocation, then one stdlib option per
chosen provider, the provider the writer: we buy the right to take its allocated chunks of A, each for one
chunk of B (the strike), until ``expiry_blocks`` blocks of A from the contract's planning, and pay
``premium_chunks`` chunks of B per contract (the premium, a stated number of chunks: the writer's price for
locking its chunks). A row ends ``done`` once the option is written: the writer opened the contract (its
chunks committed in its enclave) and our premium was released to it; ``received`` then lists the chunks under
option (``obtained`` = options written). Exercising (``keyswitch approve --contract ID --message exercise``)
or letting the option expire happens after the run, on each contract (its id in the row). A writer that
refuses is covered once, as a swap's refuser is; ``lost`` stays 0 (nothing of ours moves before the writer's
chunks are committed, and the strike moves tit-for-tat on exercise).

A run outlives its daemon: ``to_state()`` is what the daemon stores after every change, ``RequestRun.from_state``
reads it back, and ``resume(now)`` says what to do after a restart: ask again (an ask in flight was lost with the
process), and for every swap not ended, ``ResumeSwap`` (find its contract, which persisted and resumed on its
own, and wait for its end; a swap never proposed is refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.risk.types import Candidate

EXIT_COMPLETE, EXIT_NO_ALLOCATION, EXIT_SHORT = 0, 4, 5
MAX_ASKS = 2  # the first ask, then the shortfall once more
KINDS = ("swap", "option")  # what a request runs per provider
MAX_PREMIUM_CHUNKS = 4  # option: premium chunks of ours per contract, 1 ..
MAX_EXPIRY_BLOCKS = 10_000  # option: exercisable for 1 .. this many blocks of the asked asset
PREMIUM_BLOCKS = 100  # option: the premium is due within this many blocks (at most the expiry)
#: a provider row's states; the last three end it
PROPOSING, RUNNING, DONE, WITHHELD, FAILED, REFUSED = "proposing", "running", "done", "withheld", "failed", "refused"
ENDED = (DONE, WITHHELD, FAILED, REFUSED)


def option_terms_refusal(give: str, premium_chunks: int, expiry_blocks: int) -> str:
    """Why an option request's terms are out of their bounds ("" when they are within)."""
    if not 1 <= premium_chunks <= MAX_PREMIUM_CHUNKS:
        return f"premium_chunks must be 1..{MAX_PREMIUM_CHUNKS} chunks of {give} per option, got {premium_chunks}"
    if not 1 <= expiry_blocks <= MAX_EXPIRY_BLOCKS:
        return f"expiry_blocks must be 1..{MAX_EXPIRY_BLOCKS}, got {expiry_blocks}"
    return ""


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class Allocated:
    """The allocation answering the last ``Ask``: the chosen offers (or why there are none)."""

    ok: bool
    offers: tuple[Candidate, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()
    proposals: int = 0


@dataclass(frozen=True)
class SwapAgreed:
    """The provider agreed; ``give_cents``: what one of our chunks in the swap is worth (a lost chunk's value)."""

    peer: str
    give_cents: int = 0
    contract: str = ""  # an option's contract id (hex), for exercising it


@dataclass(frozen=True)
class SwapRefused:
    """The swap with ``peer`` never started: it refused, did not answer, or could not be planned."""

    peer: str
    reason: str


@dataclass(frozen=True)
class SwapEnded:
    """The swap with ``peer`` ended (``state`` done, withheld or failed): the addresses of its chunks we
    received, how many of ours we released, how many of those were not matched (``lost``) and their value."""

    peer: str
    state: str
    received: tuple[str, ...] = ()
    released: int = 0
    lost: int = 0
    lost_cents: int = 0
    reason: str = ""


Event = Allocated | SwapAgreed | SwapRefused | SwapEnded


# ------------------------------------------------------------------ commands
@dataclass(frozen=True)
class Ask:
    """Collect proposals and allocate ``usd_cents`` of the asset, without offers of ``exclude`` (peer ids)."""

    usd_cents: int
    exclude: frozenset[str]


@dataclass(frozen=True)
class StartSwap:
    """Swap ``offers`` (all of one provider, ``peer``) against as many of our chunks of the give asset."""

    peer: str
    offers: tuple[Candidate, ...]


@dataclass(frozen=True)
class ResumeSwap:
    """After a restart: the swap with ``peer`` over ``offers`` had not ended (``agreed``: the provider had agreed);
    find its contract and wait for its end (``SwapEnded``), or say it never started (``SwapRefused``)."""

    peer: str
    offers: tuple[Candidate, ...]
    agreed: bool
    give_cents: int
    contract: str = ""  # an option's contract id, once agreed


@dataclass(frozen=True)
class Finished:
    report: dict


Command = Ask | StartSwap | ResumeSwap | Finished


@dataclass
class Provider:
    """One swap of the run: a provider asked in one ask."""

    peer: str
    ask: int
    offers: tuple[Candidate, ...]
    state: str = PROPOSING
    received: tuple[str, ...] = ()
    released: int = 0
    lost: int = 0
    lost_cents: int = 0
    reason: str = ""
    started_at: float = 0.0
    ended_at: float | None = None
    give_cents: int = 0  # one of our chunks in this swap, as the desk valued it at agreement
    contract: str = ""  # an option's contract id (hex)

    @property
    def received_cents(self) -> int:
        got = set(self.received)
        return sum(c.usd_cents for c in self.offers if c.address in got)

    def to_json(self) -> dict:
        return {"peer": self.peer, "ask": self.ask, "state": self.state, "chunks": len(self.offers),
                "usd_cents": sum(c.usd_cents for c in self.offers), "received": len(self.received),
                "received_cents": self.received_cents, "released": self.released, "lost": self.lost,
                "lost_cents": self.lost_cents, "reason": self.reason,
                "addresses": [c.address for c in self.offers], "received_addresses": list(self.received),
                "contract": self.contract,
                "seconds": round(self.ended_at - self.started_at, 3) if self.ended_at is not None else None}


@dataclass
class RequestRun:
    """The requester's run of one request: ``start(now)``, then ``handle(event, now)`` until ``Finished``."""

    request_id: str
    asset: str
    give: str
    target_cents: int
    local_peer: str
    max_asks: int = MAX_ASKS
    providers: list[Provider] = field(default_factory=list)
    asks: int = 0
    state: str = "collecting"  # collecting | running | complete | short | no-allocation
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    proposals: int = 0
    started_at: float = 0.0
    ended_at: float | None = None
    version: int = 0  # bumped by every change (a reader waiting for news compares it)
    restarts: int = 0  # daemon restarts this run was resumed from
    kind: str = "swap"  # swap | option: the contract run per provider
    premium_chunks: int = 0  # option: our chunks of ``give`` paid as the premium, per contract
    expiry_blocks: int = 0  # option: blocks of ``asset`` the option can be exercised for

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a request runs {' or '.join(KINDS)} contracts, not {self.kind!r}")
        why = option_terms_refusal(self.give, self.premium_chunks, self.expiry_blocks) if self.kind == "option" else ""
        if why:
            raise ValueError(why)
        if self.target_cents <= 0:
            raise ValueError(f"a request asks for a positive value, got {self.target_cents} cents")
        if self.asset == self.give:
            raise ValueError(f"give another asset than the one asked for ({self.asset})")

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    @property
    def obtained_cents(self) -> int:
        return sum(p.received_cents for p in self.providers)

    def start(self, now: float) -> list[Command]:
        self.started_at = now
        return self._ask(self.target_cents, now)

    def _ask(self, cents: int, now: float) -> list[Command]:
        self.asks += 1
        self.state = "collecting"
        self.version += 1
        failed = {p.peer for p in self.providers if p.state in (WITHHELD, FAILED, REFUSED)}
        return [Ask(cents, frozenset({self.local_peer} | failed))]

    def handle(self, event: Event, now: float) -> list[Command]:
        if self.done:
            return []
        if isinstance(event, Allocated):
            return self._allocated(event, now)
        row = self._row(event.peer)
        if row is None:
            return []  # not a swap of this run's current ask (a late or foreign event): ignored
        if isinstance(event, SwapAgreed):
            if row.state == PROPOSING:
                row.state = RUNNING
            row.give_cents = event.give_cents or row.give_cents
            row.contract = event.contract or row.contract
        elif isinstance(event, SwapRefused):
            row.state, row.reason, row.ended_at = REFUSED, event.reason, now
        elif isinstance(event, SwapEnded):
            if event.state not in (DONE, WITHHELD, FAILED):
                raise ValueError(f"a swap ends done, withheld or failed, not {event.state!r}")
            mine = {c.address for c in row.offers}
            row.state, row.reason, row.ended_at = event.state, event.reason, now
            row.received = tuple(a for a in event.received if a in mine)  # only what it was asked for counts
            row.released, row.lost, row.lost_cents = event.released, event.lost, event.lost_cents
        self.version += 1
        return self._next(now)

    def _row(self, peer: str) -> Provider | None:
        """The current ask's row of ``peer`` while it has not ended."""
        for p in self.providers:
            if p.peer == peer and p.ask == self.asks and p.state not in ENDED:
                return p
        return None

    def _allocated(self, a: Allocated, now: float) -> list[Command]:
        if self.state != "collecting":
            return []
        self.version += 1
        if self.asks == 1:
            self.proposals = a.proposals
        self.notes += [n for n in a.notes if n not in self.notes]
        by_peer: dict[str, list[Candidate]] = {}
        failed = {p.peer for p in self.providers if p.state in (WITHHELD, FAILED, REFUSED)}
        for c in a.offers if a.ok else ():
            if c.owner_id != self.local_peer and c.owner_id not in failed and c.asset == self.asset:
                by_peer.setdefault(c.owner_id, []).append(c)
        if not by_peer:
            why = a.reason or "no offer of another peer was allocated"
            self.reason = why if self.asks == 1 else f"the shortfall was asked for again: {why}"
            return self._finish(now)
        self.state = "running"
        cmds: list[Command] = []
        for peer in sorted(by_peer):
            offers = tuple(sorted(by_peer[peer], key=lambda c: c.address))
            self.providers.append(Provider(peer, self.asks, offers, started_at=now))
            cmds.append(StartSwap(peer, offers))
        return cmds

    def _next(self, now: float) -> list[Command]:
        if any(p.state not in ENDED for p in self.providers):
            return []
        short = self.target_cents - self.obtained_cents
        if short <= 0:
            return self._finish(now)
        if self.asks < self.max_asks:
            return self._ask(short, now)
        self.reason = f"{short / 100:.2f} USD short after {self.asks} asks"
        return self._finish(now)

    def _finish(self, now: float) -> list[Command]:
        self.ended_at = now
        got = self.obtained_cents
        if got >= self.target_cents:
            self.state = "complete"
        elif not self.providers:
            self.state = "no-allocation"
        else:
            self.state = "short"
        self.version += 1
        return [Finished(self.report())]

    def resume(self, now: float) -> list[Command]:
        """After a daemon restart: what the run does again (nothing once it ended). An ask in flight was lost
        with the process: asked again (the same ask, for what is still missing); each swap not ended is found
        again (``ResumeSwap``)."""
        if self.done:
            return []
        self.restarts += 1
        self.version += 1
        if self.state == "collecting":
            failed = {p.peer for p in self.providers if p.state in (WITHHELD, FAILED, REFUSED)}
            return [Ask(max(1, self.target_cents - self.obtained_cents), frozenset({self.local_peer} | failed))]
        return [ResumeSwap(p.peer, p.offers, p.state == RUNNING, p.give_cents, p.contract)
                for p in self.providers if p.ask == self.asks and p.state not in ENDED] or self._next(now)

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> dict:
        """Everything the run is, as JSON-able values (``from_state`` reads it back)."""
        plain = {k: getattr(self, k) for k in _FIELDS}
        plain["providers"] = [{**{k: getattr(p, k) for k in _ROW_FIELDS}, "received": list(p.received),
                               "offers": [_candidate_state(c) for c in p.offers]} for p in self.providers]
        plain["notes"] = list(self.notes)
        return plain

    @classmethod
    def from_state(cls, d: dict) -> "RequestRun":
        """The run ``to_state`` gave (ValueError when it does not read as one)."""
        try:
            run = cls(**{k: d[k] for k in _FIELDS if k in d})
            run.notes = [str(n) for n in d.get("notes", [])]
            run.providers = [Provider(**{k: p[k] for k in _ROW_FIELDS if k in p}, received=tuple(p["received"]),
                                      offers=tuple(_candidate(c) for c in p["offers"])) for p in d["providers"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stored request run: {exc!r}") from None
        return run

    @property
    def exit_code(self) -> int | None:
        """The CLI's exit code once the run ended (None while it runs)."""
        if not self.done:
            return None
        return {"complete": EXIT_COMPLETE, "no-allocation": EXIT_NO_ALLOCATION}.get(self.state, EXIT_SHORT)

    def report(self) -> dict:
        got = self.obtained_cents
        return {"request_id": self.request_id, "asset": self.asset, "give": self.give, "state": self.state,
                "done": self.done, "exit_code": self.exit_code, "ok": self.state == "complete",
                "target_cents": self.target_cents, "obtained_cents": got,
                "shortfall_cents": max(0, self.target_cents - got), "asks": self.asks,
                "lost": sum(p.lost for p in self.providers), "lost_cents": sum(p.lost_cents for p in self.providers),
                "proposals": self.proposals, "reason": self.reason, "notes": list(self.notes),
                "providers": [p.to_json() for p in self.providers], "version": self.version,
                "restarts": self.restarts, "contract": self.kind,
                **({"premium_chunks": self.premium_chunks, "expiry_blocks": self.expiry_blocks}
                   if self.kind == "option" else {}),
                "seconds": round(self.ended_at - self.started_at, 3) if self.ended_at is not None else None}


_FIELDS = ("request_id", "asset", "give", "target_cents", "local_peer", "max_asks", "asks", "state", "reason",
           "proposals", "started_at", "ended_at", "version", "restarts", "kind", "premium_chunks", "expiry_blocks")
_ROW_FIELDS = ("peer", "ask", "state", "released", "lost", "lost_cents", "reason", "started_at", "ended_at",
               "give_cents", "contract")


def _candidate_state(c: Candidate) -> dict:
    return {"offer_id": c.offer_id.hex(), "device_id": c.device_id.hex(), "owner_id": c.owner_id,
            "device_class": c.device_class, "asset": c.asset, "address": c.address, "amount": c.amount,
            "usd_cents": c.usd_cents, "expiry": c.expiry}


def _candidate(d: dict) -> Candidate:
    return Candidate(bytes.fromhex(d["offer_id"]), bytes.fromhex(d["device_id"]), d["owner_id"], d["device_class"],
                     d["asset"], d["address"], int(d["amount"]), int(d["usd_cents"]), float(d["expiry"]))
