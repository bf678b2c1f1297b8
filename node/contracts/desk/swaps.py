"""The host side of contracts in a running node: plan a swap, agree to one, claim, report.

* **Planning** (initiator): ``plan_swap`` picks this node's own offered
  chunks of one asset and a peer's offered chunks of another from the offer
  book, and builds the release schedule (``swap_schedule``: one chunk at a
  time, so neither side is ever exposed to more than one chunk).
* **Agreement** (``/keyswitch/contract/1``, ``RfpProtocol.offer_contract``):
  the responder's ``accept`` policy checks that the chunks asked of it are
  its own current offers, that the chunks it gets are the proposer's offers
  in its book, that it gets at least 98% of the USD value it gives, and that
  its risk engine lets it hold one chunk of the proposer's device. The offer
  carries the stdlib ``turns`` spec of the schedule, built from the peer's
  attested binding (``who``), run over ``/keyswitch/contract-run/1``: the
  responder opens it first once it agreed, the proposer's enclave then takes it
  already signed (``node.contracts.desk.swaprun``). Quotes checked, keys exchanged encrypted
  enclave to enclave. (``/keyswitch/release/1``, the swap's own protocol before
  issue #19, is retired: ``open_run_stores`` migrates its records at start.)
* **Escrow and option** (``plan_escrow`` / ``plan_option``): a ``ContractSpec`` of the stdlib
  contract, agreed over ``/keyswitch/contract/1`` (kind "escrow" / "option"; an escrow's arbiter gets
  kind "arbiter" and keeps the spec to sign its approval, on disk: ``node.contracts.desk.arbiter``) and run over
  ``/keyswitch/contract-run/1``
  (``self.run``), where each enclave decides every release; ledger heights are handed in every second.
* **Claims**: a received key's funds are checked (``_funds``) before the
  next key is released; then it is swept, in the background, to a fresh
  address of the owner, derived from the owner's claim seed (``claim.seed``,
  its own secret, not the libp2p identity key: ``node.identity``) and the
  deposit key (``claim_key``: the owner can always re-derive it).
* **Outcomes** (``OutcomeReporter``): when a swap ends, and in a language contract for every received
  key once its claim settles (``contract.claim``) and for every party that withheld a key the contract let
  it give us (``contract.withheld``), the node applies it to its own reputation view (claimed +,
  withheld -, double-spent: its own sweep found the funds gone) and gossips a report signed by its
  enclave, carrying the signed release record its enclave accepted (``contract.received``). The subject
  is the giver's device, sha256(its enclave signing key). Once per swap / per (contract, step) / per
  (contract, withholding party), across restarts too: the reported keys are kept in SQLite beside the
  release records, and the runner announces every settled claim again when it starts (a crash may have
  lost the notice). A claim whose record a crash lost waits ``RECORD_GRACE`` for the giver's resend.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable

from node.protocols.base import Notify
from node.contracts.protocol.state import OPEN_REFUSALS

log = logging.getLogger("keyswitch.swaps")
VALUE_TOLERANCE = 0.98
#: s an agreed contract's exposure stays reserved at most before its contract exists (the initiator proposes as soon
#: as the offer is answered, within the API's 35 s; a responder hears the hello right after). Only the backstop for a
#: peer that vanished: a contract refused before it opened releases its reservation at once (``sync_holds``), and a
#: responder whose reservation lapses no longer agrees to the contract (its late open is refused: no hold uncapped)
RESERVE_TTL = 60.0
#: the stdlib contracts' height parameters: how long a contract can keep chunks committed
HEIGHT_PARAMS = ("premium_by", "expiry", "refund_height", "deadline")
#: default of ``contracts.max_lock_blocks`` (as a request's options: request_run.MAX_EXPIRY_BLOCKS)
MAX_LOCK_BLOCKS = 10_000
#: blocks our ledger may be behind the proposer's when it planned at the limit (not counted against it)
HEIGHT_LAG = 6
#: s a noted ledger height stays good for the lock horizon (the daemon notes our offers' heights every
#: ``HEIGHTS_EVERY`` s off the event loop: ``refresh_heights``); older, the check reads the ledger itself
HEIGHT_FRESH = 30.0
HEIGHTS_EVERY = 5.0
RECORD_GRACE = 120.0  # s a settled claim waits for its release record to be resent (a crash lost it)
KEEP_KEYS_IN = 4096  # swaps whose "all keys in" time ``contracts()`` shows (``keys_in_at``)


def claim_key(seed: bytes, deposit_pub: bytes) -> bytes:
    """The owner's private key for the claim address of one received deposit (re-derivable from the seed).

    ``seed``: the owner's claim seed (``node.identity.load_or_create_claim_seed``). Claims made before that
    seed existed used the identity seed here; ``claim_key(identity seed, deposit pub)`` still re-derives them."""
    import coincurve

    n = 0
    while True:
        k = hashlib.sha256(b"keyswitch/claim-key/1" + seed + deposit_pub + n.to_bytes(4, "big")).digest()
        try:
            coincurve.PrivateKey(k)
            return k
        except Exception:
            n += 1


class OutcomeReporter:
    """Our own view of a counterparty's outcome -> our reputation and a report our enclave signs, gossiped.

    ``report(key, d, peer, now)`` takes a ``claims.Outcome.to_json()``-shaped dict (contract_id, device,
    status, chunks) and acts once per ``key`` (kept in ``outcomes().records``: in SQLite in a daemon, so
    across restarts too). ``outcomes() -> OutcomesProtocol``, ``enclave() -> enclave``, ``devices() ->
    [(device, class)]`` (the offer book's), ``publish(bytes)`` hands the signed report to the driver."""

    def __init__(self, *, net: str, engine, outcomes: Callable[[], Any], enclave: Callable[[], Any],
                 devices: Callable[[], Any], publish: Callable[[bytes], None]) -> None:
        self.net, self.engine, self.outcomes, self.enclave = net, engine, outcomes, enclave
        self.devices, self.publish = devices, publish
        #: (contract, step) -> (since, claim detail): a settled claim whose release record is not here yet (a
        #: crash between our enclave accepting the key and its ack: the giver resends it, even after our side
        #: ended); reported without it after ``RECORD_GRACE`` seconds (``flush``)
        self.waiting: dict[tuple[str, int], tuple[float, dict]] = {}

    def observe(self, device: bytes, peer: str, now: float) -> None:
        """Give a counterparty's device a reputation record (its attestation was verified by the contract)."""
        rep = self.engine.reputation
        if rep.record(device) is None:
            rep.observe(device, peer, dict(self.devices()).get(device, "unknown"), now)

    def report(self, key: str, d: dict[str, Any], peer: str, now: float) -> bytes | None:
        """Apply and gossip the outcome ``d`` (once per ``key``); the signed report, or None."""
        from node.protocols.outcomes import make_report, report_for_outcome
        from node.risk.reputation import Action

        records = self.outcomes().records
        if not d.get("device") or not records.first_report(key):
            return None
        device = bytes.fromhex(d["device"])
        self.observe(device, peer, now)
        outcome = {"claimed": "claimed", "withheld": "withheld", "double-spent": "double-spent"}.get(d["status"])
        if outcome is None:
            return None
        rep = self.engine.reputation
        if outcome == "double-spent":
            rep.mark_cheater(device, now)  # our own sweep failed: checked on our own ledger
        else:
            rep.apply(device, Action.CLAIMED if outcome == "claimed" else Action.WITHHELD, now)
        enclave = self.enclave()
        report = report_for_outcome(d, net=self.net, reporter=enclave.info().sign_pub, now=now,
                                    records=records)  # carries the release record we received
        data = make_report(report, enclave.sign)
        self.publish(data)
        return data

    def on_contract_notify(self, n, now: float) -> list[bytes]:
        """A language contract's (``contract_run``) notifications: keep the release record our enclave
        accepted; report a settled claim of a received key (once its record is here, or ``RECORD_GRACE``
        later without it), and each party that withheld a key the contract let it give us. The reports made."""
        d = n.detail
        records = self.outcomes().records
        out = self.flush(now)
        if n.kind == "contract.received":
            records.observe(bytes.fromhex(d["record"]))
            held = self.waiting.pop((d["contract"], d["step"]), None)
            return out + (self._claimed(held[1], now) if held is not None else [])
        if n.kind == "contract.claim":
            key = (d["contract"], d["step"])
            if not (records.reported(f"{key[0]}:{key[1]}")
                    or records.get(bytes.fromhex(d["contract"]), bytes.fromhex(d["deposit_pub"]))):
                self.waiting.setdefault(key, (now, d))  # the giver resends the record our enclave took
                return out
            return out + self._claimed(d, now)
        if n.kind == "contract.withheld":
            for o in d.get("owed", []):
                chunk = {"asset": o["asset"], "address": o["address"], "status": "withheld"}
                data = self.report(f"{d['contract']}:withheld:{o['giver']}",
                                   self._outcome({**o, "contract": d["contract"]}, "withheld", [chunk]), o["peer"], now)
                out += [data] if data else []
        return out

    def flush(self, now: float) -> list[bytes]:
        """Report the claims whose release record did not come back within ``RECORD_GRACE`` seconds."""
        late = [k for k, (since, _) in self.waiting.items() if now >= since + RECORD_GRACE]
        return [x for k in late for x in self._claimed(self.waiting.pop(k)[1], now)]

    def _claimed(self, d: dict, now: float) -> list[bytes]:
        status = "claimed" if d["status"] == "kept" else d["status"]
        chunk = {k: d[k] for k in ("asset", "address", "txid", "detail", "deposit_pub")}
        data = self.report(f"{d['contract']}:{d['step']}", self._outcome(d, status, [{**chunk, "status": status}]),
                           d["peer"], now)
        return [data] if data else []

    @staticmethod
    def _outcome(d: dict, status: str, chunks: list[dict]) -> dict:
        device = hashlib.sha256(bytes.fromhex(d["sign_pub"])).hexdigest()  # the giver's device
        return {"contract_id": d["contract"], "device": device, "status": status, "chunks": chunks}


def kept_chunks(release_store, run_store) -> list[tuple[str, Any]]:
    """``[(contract key, Chunk)]``: every received key a contract recorded as kept (claim policy "keep"),
    read from the contract records on disk (a swap's are written when it ends, a language contract's
    when the claim settles), so a restart finds them all again. Records that do not decode are skipped
    (the protocols report them)."""
    from node.app.balance import received_claims

    return [(key, chunk) for key, chunk, cl in received_claims(release_store, run_store) if cl.status == "kept"]


def open_run_stores(datadir, *, durable: bool = True):
    """The contract-run protocol's stores in ``datadir`` (``runs/``, ``runs-agreed/``), opened after the release/1
    records an older node kept in ``contracts/`` are migrated into ``runs/`` (``migrate_release_records``: same
    contract id, so a swap in flight when the node upgraded resumes over contract-run/1). Returns (runs, agreed,
    legacy, migrated): ``legacy`` the store of what was left in ``contracts/`` (its claims still count in the
    balance), ``migrated`` (old key, what happened) per release/1 record, for the log."""
    from pathlib import Path

    from node.contracts.protocol.run import AgreedRecord, RunRecord
    from node.contracts.protocol.swap import migrate_release_records
    from node.stores.contracts import ContractStore

    datadir = Path(datadir)
    runs = ContractStore(datadir / "runs", durable=durable, record_type=RunRecord)
    agreed = ContractStore(datadir / "runs-agreed", durable=durable, record_type=AgreedRecord)
    if not (datadir / "contracts").is_dir():
        return runs, agreed, ContractStore(None), []
    legacy = ContractStore(datadir / "contracts", durable=durable)
    migrated = migrate_release_records(legacy, runs, RunRecord)
    for key, what in migrated:
        log.log(logging.INFO if what == "migrated" else logging.WARNING, "release/1 record %s: %s", key, what)
    return runs, agreed, legacy, migrated


class SwapDesk:
    """The node's contracts over /keyswitch/contract-run/1: swaps (the stdlib ``turns`` contract) and language
    contracts, with one claim policy for the keys it receives, ``claim_policy`` (config ``claims.policy``):
    "sweep" or "keep"."""

    def __init__(self, stack, *, clock, claim_policy: str = "sweep", prices=None, price_tolerance: float = 0.10,
                 allowed_hashes: list[str] | tuple[str, ...] = (), max_lock_blocks: int = MAX_LOCK_BLOCKS) -> None:
        """``prices``: this node's own price feed (``node.assets.prices.PriceFeed``; default the stack's
        ``stack.prices``, else the embedded table deposits are made with); ``price_tolerance``: config
        ``risk.price_tolerance``; ``allowed_hashes``: config ``contracts.allowed_hashes`` (contract sources,
        other than the stdlib's, this node agrees to run); ``max_lock_blocks``: config ``contracts.max_lock_blocks``
        (how many blocks from now a peer's contract may keep our chunks committed)."""
        from node.assets.prices import StaticPrices
        from node.identity import load_or_create_claim_seed
        from node.contracts.protocol.claims import sweep_claimer

        self.stack, self.clock, self.claim_policy = stack, clock, claim_policy
        # the owner's claim seed (``claim.seed``), never the libp2p identity seed: see ``node.identity``
        self._seed = load_or_create_claim_seed(stack.datadir)
        self.prices = prices or stack.prices or StaticPrices()
        self.price_tolerance = price_tolerance
        self.allowed_hashes = frozenset(h.lower() for h in allowed_hashes)
        self.max_lock_blocks = max_lock_blocks
        #: asset -> (height, when): the heights the lock horizon reads (``refresh_heights``, ``feed_heights``)
        self.heights: dict[str, tuple[int, float]] = {}
        self._kept: tuple[tuple[int, int], list] | None = None  # (store versions, kept_chunks) of ``kept``
        ledger = stack.ledger
        own = stack.protocol.own
        from node.contracts.protocol.run import ContractRun

        # the stores, release/1 records of an older node migrated first (its swaps in flight resume over contract-run/1)
        runs, agreed, self.legacy, self.migrated = open_run_stores(stack.datadir)

        self.run = ContractRun(
            net=stack.net, enclave=stack.enclave, quote=own.quote, binding=own.binding,
            identity=lambda: (stack.protocol.own.binding, stack.protocol.own.quote),
            attestations=stack.protocol.attestations, check_funds=self._funds,
            claim=sweep_claimer(lambda: stack.enclave, ledger, self.claim_address),
            store=runs, claim_policy=claim_policy, agreed=agreed,
            price_of=self._price, price_tolerance=price_tolerance)
        from node.contracts.desk.arbiter import Arbitrations
        from node.stores.arbitrations import ArbitrationStore

        #: contract id hex -> spec, for escrows we arbitrate: on disk (``arbiter.sqlite``), so a restart keeps them
        self.arbitrated = Arbitrations(ArbitrationStore(stack.datadir / "arbiter.sqlite"))
        from node.contracts.desk.swaprun import SwapRuns

        self.swaps = SwapRuns(self)  # swaps over contract-run/1: proposals, the responder's start, their ends
        self.swaps.load()
        self._publishing = False  # a publish of our sheet (retractions) is queued on the driver
        self._ticked = False  # ``tick`` has brought the holds up to date once
        self._resumed = 0  # agreements resumed after a restart that hold (``_resumed_holds``): ``tick`` lapses them
        from node.contracts.desk.lapse import Lapses

        self.lapses = Lapses(clock)  # when reservations, resumed agreements and proposals lapse (monotonic clock)
        #: called with every swap outcome (``Outcome.to_json()``) once it is reported, on the trio thread
        self.watchers: list[Callable[[dict], None]] = []
        #: called with (kind, detail) of every ``contract.released`` / ``contract.outcome`` (a request's options)
        self.run_watchers: list[Callable[[str, dict], None]] = []
        #: exposure reserved for contracts agreed but not yet in a contract store (the peer's hello, our
        #: proposal, the run's open are still to come): key -> (expires at, what matches it in the stores,
        #: responder: the protocol expects the peer's hello / open, and the reservation lives only while it does)
        self._reserved: dict[str, tuple[float, tuple, bool]] = {}
        stack.rfp.on_contract = self.accept
        self.reporter = OutcomeReporter(
            net=stack.net, engine=stack.engine, outcomes=lambda: self.stack.outcomes,
            enclave=lambda: self.stack.enclave, devices=lambda: self.stack.book.devices(),
            publish=lambda data: self.node.driver.submit(
                self.stack.outcomes, lambda t: self.stack.outcomes.publish(data, t)))

    # -------------------------------------------------------------- helpers
    def claim_address(self, chunk) -> str:
        import coincurve

        from node.assets import address_for

        pub = coincurve.PrivateKey(claim_key(self._seed, chunk.pubkey)).public_key.format()
        return address_for(chunk.asset, pub)

    def _funds(self, asset: str, address: str):
        """The address's ``Balance`` on our ledger: the protocols count a chunk as funded only when its
        confirmed balance, net of pending spends (a double spend waiting in the mempool counts as gone), is
        at least the committed amount (``node.contracts.protocol.claims.funds_state``), never merely "above zero".
        One ledger call; the protocols run it as a task, off the event loop."""
        return self.stack.ledger.balance(asset, address)

    def _price(self, asset: str):
        """OUR price of ``asset`` now (the node's feed), never a peer's."""
        return self.prices.price(asset, self.clock.now())

    def _worth(self, asset: str, amount: int, fallback: int) -> int:
        """What our own chunk is worth at our price now (what we give is valued as what we get)."""
        from node.assets.prices import PriceError, usd_value_cents

        try:
            return usd_value_cents(asset, amount, self._price(asset))
        except PriceError:
            return fallback

    def _our_value(self, what: str, asset: str, amount: int, declared_cents: int) -> int | str:
        """The USD cents ``amount`` of ``asset`` is worth at our price, or the refusal (which check, which
        values) when a peer's ``declared_cents`` for it strays beyond ``risk.price_tolerance``."""
        from node.assets.prices import PriceError, declared_usd_mismatch, usd_value_cents

        try:
            price = self._price(asset)
        except PriceError as exc:
            return f"price: {what}: {exc}"
        bad = declared_usd_mismatch(asset, amount, declared_cents, price, self.price_tolerance)
        if bad:
            return f"price: {what}: {bad}"
        return usd_value_cents(asset, amount, price)

    def _book_offer(self, address: str, origin: str) -> dict | None:
        """``origin``'s offer of ``address`` in our book (a kept chunk is offered by its new holder; the
        giver's retraction may not have reached us yet)."""
        row = self.stack.book.db.execute(
            "SELECT origin, device_id, device_class, asset, amount, usd_cents, pubkey FROM offers "
            "WHERE address = ? AND origin = ?", (address, origin)).fetchone()
        if row is None:
            return None
        return dict(zip(("origin", "device_id", "device_class", "asset", "amount", "usd_cents", "pubkey"), row))

    def kept(self) -> list[tuple[str, Any]]:
        """The keys our contracts kept (``kept_chunks`` over their stores): read from disk again only after
        this process wrote a record (the offers refresher asks every few seconds); blocking file reads."""
        at = (self.legacy.version, self.run.store.version)
        if self._kept is None or self._kept[0] != at:
            self._kept = (at, kept_chunks(self.legacy, self.run.store))
        return self._kept[1]

    # -------------------------------------------------------------- exposure holds
    def _chunk_worth(self, asset: str, amount: int, address: str, origin: str) -> int:
        row = self._book_offer(address, origin)
        return self._worth(asset, amount, int(row["usd_cents"]) if row else 0)

    def _device_of(self, peer: str, sign_pub: bytes | None, addresses: list[str]) -> tuple[bytes, str] | None:
        """(device id, class) of ``peer``'s enclave: from its binding when the contract has it (a device id is
        the SHA-256 of the enclave signing key), else from its offers in our book."""
        device = hashlib.sha256(sign_pub).digest() if sign_pub else None
        dclass = None
        for a in addresses:
            row = self._book_offer(a, peer)
            if row is not None and (device is None or bytes(row["device_id"]) == device):
                device, dclass = bytes(row["device_id"]), row["device_class"]
                break
        if device is None:
            return None
        if dclass is None:
            rec = self.stack.engine.reputation.record(device)
            dclass = rec.device_class if rec is not None else "unknown"
        return device, dclass

    def _spec_holds(self, spec, me: int) -> tuple:
        """What a language contract puts at risk: per other party whose enclave gives chunks to us (in a ring,
        our predecessor), its biggest such chunk at our price, on its device (the steps run in order, each
        enclave releasing only what the contract allows then: what we have given and not got back is at most
        one step, as in a swap); an option we buy adds our premium (paid first) to its writer's hold."""
        from node.risk.caps import Hold

        n = len(spec.parties)
        kind = spec.source.split("contract ", 1)[-1].split()[:1]
        ring = kind == ["ring"]
        # an option's buyer (party 0) pays its premium before anything comes back: the writer's device holds it too
        params = {p.name: p.value for p in spec.params}
        premium = sum(self._worth(c.asset, c.amount, c.usd_cents) for c in spec.parties[0].chunks[
            :int(params.get("premium_chunks", 0))]) if kind == ["option"] and me == 0 else 0
        out = []
        for i, p in enumerate(spec.parties):
            if i == me or not p.chunks or (ring and i != (me - 1) % n):
                continue
            peer = p.binding.peer_id
            dev = self._device_of(peer, p.binding.sign_pub, [c.address for c in p.chunks])
            if dev is None:
                continue
            out.append(Hold(dev[0], peer, dev[1], premium + max(self._chunk_worth(c.asset, c.amount, c.address, peer)
                                                                for c in p.chunks)))
        return tuple(out)

    def sync_holds(self, now: float) -> None:
        """Rebuild the risk engine's holds from the contract stores (one source of truth, so holds survive a
        restart with contracts in flight): every contract not ended holds its exposure; a reservation holds
        until its contract appears in a store (then the contract holds), its agreement is refused before it
        opened (the protocol no longer expects it: the enclave refused the open, the funds are gone...) or it
        expires (then the agreement is withdrawn too: a late open cannot hold beyond the caps)."""
        from node.contracts.protocol.run import TERMINAL as RUN_TERMINAL

        engine = self.stack.engine
        # read before the stores: a protocol stops expecting a contract only once it is in its store
        awaited = {key: self._awaited(match) for key, (_, match, responder) in list(self._reserved.items())
                   if responder}
        wanted: dict[str, tuple] = {}
        present: set[tuple] = set()
        for key, r in list(self.run.runs.items()):
            present.add(("run", key))
            if r.rec.state not in RUN_TERMINAL and not self.swaps.withheld(r):
                wanted["r-" + key] = self._spec_holds(r.spec, r.me)
        self.swaps.holds(now, RESERVE_TTL, present, wanted)  # (swaps we proposed, not opened yet)
        self._resumed_holds(now, wanted)
        for key, (until, match, responder) in list(self._reserved.items()):
            lapsed = self.lapses.due(key, until - RESERVE_TTL, RESERVE_TTL, now)  # (monotonic: ``desk.lapse``)
            if match in present or lapsed or not awaited.get(key, True):
                del self._reserved[key]
                if responder and lapsed and match not in present:
                    self._withdraw(match)  # the peer vanished: agreed no more
            elif key in engine.holds:
                wanted[key] = engine.holds[key]
        self.lapses.keep(wanted)  # (the deadlines of what no longer holds: forgotten)
        engine.sync_holds(wanted)

    def _resumed_holds(self, now: float, wanted: dict[str, tuple]) -> None:
        """``sync_holds``'s part: contracts we agreed to before a restart and the runner expects again (its
        ``agreed`` store) hold their exposure as the reservation this process no longer has would, until
        ``RESERVE_TTL`` after their agreement (counted on the monotonic clock from the restart: ``desk.lapse``);
        then the agreement is withdrawn (a late open is refused), as a lapsed reservation's is. Before, they held
        nothing: a restarted node agreed to new contracts against a device as if those in flight held nothing, and
        all of them could open beyond its cap."""
        reserved = {match for _, match, _ in self._reserved.values()}
        me = self._identity().binding.peer_id
        self._resumed = 0
        for cid, spec, at in self.run.agreements():
            key = cid.hex()
            if key in self.run.runs or ("run", key) in reserved or me not in spec.ids or (
                    self.is_swap(spec) and spec.ids[0] == me):  # (running: held as a run; agreed in this process:
                continue  # reserved; a swap we proposed: held by ``swaps`` while it is a proposal)
            if self.lapses.due("a-" + key, at, RESERVE_TTL, now):  # (monotonic: no wall-clock step moves it)
                self.run.forget(cid)  # the peer did not open it in time: agreed no more
                continue
            wanted["a-" + key] = self._spec_holds(spec, spec.ids.index(me))
            self._resumed += 1

    def _awaited(self, match: tuple) -> bool:
        """Does our protocol still expect the peer to start the contract ``match`` names (we agreed to it)?"""
        from node.contracts.spec import spec_id

        cid = bytes.fromhex(match[1])  # (a swap we agreed to as its responder waits in ``swaps.starts`` until we
        return self.run.expects(cid) or any(spec_id(s) == cid for s in self.swaps.starts)  # open it ourselves)

    def _withdraw(self, match: tuple) -> None:
        """Agree no more to the contract ``match`` names (its reservation lapsed before it started): the runner
        expects it no more, and a swap we agreed to as the responder and have not opened yet is not opened (its
        hold is gone: opened late, it would run beyond the caps)."""
        from node.contracts.spec import spec_id

        self.run.forget(bytes.fromhex(match[1]))
        self.swaps.starts = [s for s in self.swaps.starts if spec_id(s).hex() != match[1]]

    def _reserve(self, match: tuple, holds: tuple, now: float, responder: bool, ttl: float = RESERVE_TTL
                 ) -> str | None:
        """Check ``holds`` against every cap and hold them until the contract ``match`` names is in a store, or
        (``responder``: the protocol expects it from now on) until the protocol no longer expects it (refused
        before it opened), or ``ttl`` seconds (a peer that vanished); None, or the refusal (which cap, which
        device, which figures, which setting)."""
        self.sync_holds(now)
        key = "v-" + hashlib.sha256(repr(match).encode()).hexdigest()[:32]
        if key in self._reserved:
            return None  # the same contract offered again
        refusal = self.stack.engine.try_hold(key, holds, now)
        if refusal is not None:
            return f"risk: {refusal.reason}"
        self._reserved[key] = (now + ttl, match, responder)
        self.lapses.due(key, now, ttl, now)  # (its lapse fixed now, on the monotonic clock)
        return None

    def _unreserve(self, match: tuple) -> None:
        key = "v-" + hashlib.sha256(repr(match).encode()).hexdigest()[:32]
        self._reserved.pop(key, None)
        self.stack.engine.release_hold(key)

    def unreserve_spec(self, spec) -> None:
        from node.contracts.spec import spec_id

        self._unreserve(("run", spec_id(spec).hex()))

    def reserve_spec(self, spec, now: float, responder: bool = False) -> str | None:
        """Either side of a language contract: every counterparty device's caps, checked and held (``responder``:
        we agree to a peer's offer, and expect its open from now on)."""
        from node.contracts.spec import spec_id

        ids = spec.ids
        me = ids.index(self._identity().binding.peer_id)
        return self._reserve(("run", spec_id(spec).hex()), self._spec_holds(spec, me), now, responder)

    # -------------------------------------------------------------- planning
    def plan_swap(self, peer: str, give_asset: str, take_asset: str, chunks: int, *,
                  busy: frozenset[bytes] = frozenset(), addresses: frozenset[str] | None = None):
        """(plan, summary) for swapping ``chunks`` of our ``give_asset`` for the peer's ``take_asset``: the plan is
        the ``turns`` spec of the schedule (``SwapRuns.spec``: the peer's attested binding must be known,
        ``NodeServices._who``).
        ``busy``: deposit keys of ours not to use (promised to another swap being agreed); ``addresses``: take
        only these offers of the peer (a request's allocation), else any."""
        schedule, summary, usd = self._swap_schedule(peer, give_asset, take_asset, chunks, busy, addresses)
        return self.swaps.spec(peer, schedule, usd), summary

    def _swap_schedule(self, peer: str, give_asset: str, take_asset: str, chunks: int,
                       busy: frozenset[bytes], addresses: frozenset[str] | None):
        """(schedule, summary, declared USD cents per round) of ``plan_swap``."""
        from node.contracts.protocol.schedule import Chunk, swap_schedule

        now = self.clock.now()
        mine = [o for o in (self.stack.protocol.own.offers if self.stack.protocol.own else [])
                if o.asset == give_asset and o.expiry > now and o.pubkey not in busy][:chunks]
        if len(mine) < chunks:
            raise ValueError(f"this node offers {len(mine)} unexpired {give_asset} chunk(s) not promised to another "
                             f"swap, {chunks} needed (fund more with: keyswitch deposit --asset {give_asset})")
        theirs = [c for c in self.stack.book.candidates(take_asset, now=now) if c.owner_id == peer
                  and (addresses is None or c.address in addresses)]
        taken = self.keys_in_our_contracts()
        theirs = [c for c in theirs if bytes(self._book_offer(c.address, peer)["pubkey"]) not in taken]
        if len(theirs) < chunks:  # (a key already in one of our contracts is never bought again: a device that
            # offers it once more would be selling it twice, and our own enclave would refuse the second copy)
            raise ValueError(f"the book holds {len(theirs)} {take_asset} offer(s) from {peer} that are in none of "
                             f"our contracts, {chunks} needed")
        want = sum(o.usd_cents for o in mine)
        theirs = [c for c in theirs if isinstance(self._our_value("", c.asset, c.amount, c.usd_cents), int)]
        if len(theirs) < chunks:  # (a chunk whose declared value our price does not bear out is skipped)
            raise ValueError(f"the book holds {len(theirs)} {take_asset} offer(s) from {peer} whose declared "
                             f"value matches our price (risk.price_tolerance), {chunks} needed")
        theirs.sort(key=lambda c: (abs(c.usd_cents - want / chunks), c.offer_id))
        theirs = theirs[:chunks]
        a = [Chunk(o.asset, o.address, o.pubkey, o.amount) for o in mine]
        b = [Chunk(c.asset, c.address, bytes(self._book_offer(c.address, peer)["pubkey"]), c.amount) for c in theirs]
        summary = {"peer": peer, "give": {"asset": give_asset, "chunks": chunks, "usd_cents": want},
                   "take": {"asset": take_asset, "chunks": chunks, "usd_cents": sum(c.usd_cents for c in theirs)}}
        schedule = swap_schedule(a, b)
        declared = {o.pubkey: o.usd_cents for o in mine} | {ch.pubkey: c.usd_cents for ch, c in zip(b, theirs)}
        return schedule, summary, [declared[rd.chunk.pubkey] for rd in schedule.rounds]

    # -------------------------------------------------------------- a swap's plan: its turns spec
    def reserve_plan(self, peer: str, plan, now: float) -> str | None:
        """The initiator's caps on ``peer``'s device for a swap ``plan`` (``plan_swap``), checked and held."""
        return self.reserve_spec(plan, now)

    def unreserve_plan(self, peer: str, plan) -> None:
        self.unreserve_spec(plan)

    @staticmethod
    def plan_keys(plan) -> list[bytes]:
        """Our deposit keys (party 0's) in a swap ``plan``."""
        return [c.pubkey for c in plan.parties[0].chunks]

    @staticmethod
    def plan_rounds(plan) -> int:
        return sum(len(p.chunks) for p in plan.parties)

    @staticmethod
    def is_swap(spec) -> bool:
        """Is ``spec`` a two-party swap (the stdlib ``turns`` contract ``plan_swap`` builds)? By the exact hash."""
        from node.contracts.desk.swaprun import is_swap

        return is_swap(spec)

    def keys_in_our_contracts(self) -> set[bytes]:
        """Every deposit key named in one of our contracts, any state (swaps and language contracts), or in a swap
        we proposed that the peer has not opened yet (a second swap must not buy the same key: our enclave would
        refuse the second contract after our chunk of it was paid)."""
        specs = [r.spec for r in list(self.run.runs.values())] + [s for _, s in list(self.swaps.proposed.values())]
        return {ch.pubkey for spec in specs for p in spec.parties for ch in p.chunks}

    def _identity(self):
        """Our current offer sheet identity (binding and quote change when our deposits do)."""
        return self.stack.protocol.own

    def _commits(self, offers) -> list:
        from node.contracts.spec import Commit

        return [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in offers]

    def _my_offers(self, asset: str, n: int, now: float, promised: frozenset[bytes] = frozenset()) -> list:
        busy = {c.pubkey for r in self.run.runs.values() if r.rec.state not in ("done", "failed")
                for c in r.spec.parties[r.me].chunks} | promised  # committed to a running contract, or promised
        mine = [o for o in (self.stack.protocol.own.offers if self.stack.protocol.own else [])
                if o.asset == asset and o.expiry > now and o.pubkey not in busy][:n]
        if len(mine) < n:
            raise ValueError(f"this node offers {len(mine)} unexpired {asset} chunk(s), {n} needed "
                             f"(fund more with: keyswitch deposit --asset {asset})")
        return mine

    def _known(self, peer: str):
        b = self.run.known.get(peer)
        if b is None:
            raise ValueError(f"no attested binding of {peer} (it did not answer who)")
        return b

    def plan_escrow(self, payee: str, arbiter: str, asset: str, chunks: int, refund_blocks: int):
        """(spec, summary): our ``chunks`` of ``asset`` held for ``payee`` until ``arbiter`` signs "release";
        back to us at the current height + ``refund_blocks`` without it."""
        from node.contracts import stdlib
        from node.contracts.spec import PartySpec, make_spec

        now = self.clock.now()
        own = self._identity()
        mine = self._my_offers(asset, chunks, now)
        height = self.stack.ledger.height(asset)
        spec = make_spec(self.stack.net, stdlib.source("escrow"),
                         {"height_asset": asset, "refund_height": height + refund_blocks},
                         [PartySpec(own.binding, self._commits(mine)), PartySpec(self._known(payee)),
                          PartySpec(self._known(arbiter), [], False)])
        return spec, {"kind": "escrow", "payee": payee, "arbiter": arbiter, "asset": asset, "chunks": chunks,
                      "usd_cents": sum(o.usd_cents for o in mine), "refund_height": height + refund_blocks}

    def plan_option(self, writer: str, give: str, take: str, chunks: int, premium_chunks: int,
                    premium_blocks: int, expiry_blocks: int, *, busy: frozenset[bytes] = frozenset(),
                    addresses: frozenset[str] | None = None):
        """(spec, summary): a call option on ``chunks`` of the writer's ``take``; we pay ``premium_chunks`` of
        ``give`` now (before + ``premium_blocks``) and ``chunks`` more of ``give`` as the strike on exercise
        (before + ``expiry_blocks``). Heights count on the ledger of ``take``. ``busy`` and ``addresses``: as
        for ``plan_swap`` (a request's allocation)."""
        from node.contracts import stdlib
        from node.contracts.spec import Commit, PartySpec, make_spec

        now = self.clock.now()
        own = self._identity()
        mine = self._my_offers(give, premium_chunks + chunks, now, busy)
        theirs = [c for c in self.stack.book.candidates(take, now=now) if c.owner_id == writer
                  and (addresses is None or c.address in addresses)][:chunks]
        if len(theirs) < chunks:
            raise ValueError(f"the book holds {len(theirs)} {take} offer(s) from {writer}, {chunks} needed")
        wc = [Commit(bytes(self._book_offer(c.address, writer)["pubkey"]), c.asset, c.address, c.amount, c.usd_cents)
              for c in theirs]
        height = self.stack.ledger.height(take)
        params = {"height_asset": take, "premium_chunks": premium_chunks, "premium_by": height + premium_blocks,
                  "expiry": height + expiry_blocks}
        spec = make_spec(self.stack.net, stdlib.source("option"), params,
                         [PartySpec(own.binding, self._commits(mine)), PartySpec(self._known(writer), wc)])
        return spec, {"kind": "option", "writer": writer, "give": give, "take": take, "chunks": chunks,
                      **params}

    def plan_ring(self, give: str, legs: list[tuple[str, str]], chunks: int, deadline_blocks: int):
        """(spec, summary): the stdlib ring: we give ``chunks`` of ``give`` to the first peer of ``legs``,
        each peer ``(peer, asset)`` gives ``chunks`` of its ``asset`` offers (from our book) to the next, the
        last to us. Each party must bring ``usd`` (the smallest total): unmoved chunks go home at the current
        height of ``give`` + ``deadline_blocks``."""
        from node.contracts import stdlib
        from node.contracts.spec import Commit, PartySpec, make_spec

        now = self.clock.now()
        own = self._identity()
        peers = [p for p, _ in legs]
        if len(legs) < 2 or len(set(peers)) != len(peers) or own.binding.peer_id in peers:
            raise ValueError("a ring needs at least two other, distinct peers")
        parties = [PartySpec(own.binding, self._commits(self._my_offers(give, chunks, now)))]
        for peer, asset in legs:
            theirs = sorted(self.stack.book.candidates(asset, now=now), key=lambda c: c.offer_id)
            theirs = [c for c in theirs if c.owner_id == peer][:chunks]
            if len(theirs) < chunks:
                raise ValueError(f"the book holds {len(theirs)} {asset} offer(s) from {peer}, {chunks} needed")
            parties.append(PartySpec(self._known(peer), [
                Commit(bytes(self._book_offer(c.address, peer)["pubkey"]), c.asset, c.address, c.amount,
                       c.usd_cents) for c in theirs]))
        usd = min(sum(c.usd_cents for c in p.chunks) for p in parties)
        height = self.stack.ledger.height(give)
        params = {"usd": usd, "height_asset": give, "deadline": height + deadline_blocks}
        spec = make_spec(self.stack.net, stdlib.source("ring"), params, parties)
        return spec, {"kind": "ring", "parties": [own.binding.peer_id, *peers], "give": give,
                      "legs": [{"peer": p, "asset": a} for p, a in legs], "chunks": chunks, **params}

    def approve(self, contract: str, message: str, now: float):
        """Sign ``message`` for a contract we run or arbitrate (by id hex)."""
        r = self.run.runs.get(contract)
        spec = r.spec if r is not None else self.arbitrated.get(contract)
        if spec is None:
            raise ValueError(f"no contract {contract} here")
        return self.run.approve(spec, message, now)

    # -------------------------------------------------------------- agreement
    def _accept_spec(self, peer: str, offer, now: float) -> str | None:
        """Escrow / option / arbiter offers: the spec must name us and the proposer, with current offers."""
        from node.contracts.spec import decode_spec

        spec = decode_spec(offer.schedule)
        if isinstance(spec, str):
            return spec
        bad = self._contract_policy(offer.kind, spec) or self._lock_horizon(spec, now)
        if bad:
            return bad
        own = self._identity()
        ids = spec.ids
        if peer not in ids or own.binding.peer_id not in ids:
            return "the spec does not name both of us"
        me = spec.parties[ids.index(own.binding.peer_id)]
        if me.binding.sign_pub != own.binding.sign_pub or me.binding.enc_pub != own.binding.enc_pub:
            return "the spec names another enclave for us"
        if offer.kind == "arbiter":  # (kept on disk before we answer yes)
            return self.arbitrated.agree(peer, spec, now)
        if offer.kind == "swap" and me is not spec.parties[1]:  # (turns: party 0 gives first, the proposer)
            return "a swap's proposer is party 0 of its turns contract, this node party 1"
        mine = {o.pubkey: o for o in (own.offers or [])}
        k = ids.index(own.binding.peer_id)
        pred = spec.parties[(k - 1) % len(spec.parties)]  # in a ring, only our predecessor gives to us
        give = got = 0
        for p in spec.parties:
            for c in p.chunks:
                if p is me:
                    o = mine.get(c.pubkey)
                    if o is None or o.address != c.address or o.amount != c.amount or o.expiry <= now:
                        return f"chunk {c.address} is not one of this node's current offers"
                    give += self._worth(o.asset, o.amount, o.usd_cents)
                else:
                    row = self._book_offer(c.address, p.binding.peer_id)
                    if row is None or row["origin"] != p.binding.peer_id or bytes(row["pubkey"]) != c.pubkey \
                            or row["amount"] != c.amount or row["asset"] != c.asset:
                        return f"chunk {c.address} is not an offer of {p.binding.peer_id} in this node's book"
                    worth = self._our_value(f"chunk {c.address} in the spec", c.asset, c.amount, c.usd_cents) \
                        if c.usd_cents else 0  # (0: no USD declared in the spec; the book's value is checked)
                    if isinstance(worth, str):
                        return worth
                    worth = self._our_value(f"offer {c.address} in our book", c.asset, c.amount, row["usd_cents"])
                    if isinstance(worth, str):
                        return worth
                    if offer.kind != "ring" or p is pred:
                        got += worth  # at OUR price, never the declared figure
        if got < VALUE_TOLERANCE * give:
            return f"value: would give {give / 100:.2f} USD for {got / 100:.2f} USD"
        why = self.reserve_spec(spec, now, responder=True)  # every counterparty device's caps, checked and held
        if why:
            return why
        if offer.kind == "swap":  # we open it first, once our answer is out (``contract.accepted``): as in
            self.swaps.starts.append(spec)  # release/1, the proposer commits its chunks only to a contract we signed
        else:
            self.run.expect(spec, now)
        return None

    def _lock_horizon(self, spec, now: float) -> str | None:
        """A peer's contract may keep our chunks committed (or our arbitration owed) until its last height
        parameter: refused past ``contracts.max_lock_blocks`` blocks from the height OUR ledger reads now.
        Before, a buyer could lock a writer's chunks for 100,000 blocks (~2 years of Bitcoin) for one premium."""
        params = {p.name: p.value for p in spec.params}
        heights = {k: v for k, v in params.items() if k in HEIGHT_PARAMS and isinstance(v, int)}
        asset = params.get("height_asset") or params.get("asset_a")
        if not heights or not isinstance(asset, str):
            return None
        try:
            now_height = self._height(asset, now)
        except Exception as exc:  # no ledger for it: nothing of ours can be committed on its clock
            return f"no height for {asset} on this node's ledger: {type(exc).__name__}"
        name, last = max(heights.items(), key=lambda kv: kv[1])
        if last - now_height > self.max_lock_blocks + HEIGHT_LAG:
            return (f"lock horizon: {name} = {last} is {last - now_height} blocks of {asset} from now (height "
                    f"{now_height}); this node commits chunks for at most {self.max_lock_blocks} blocks "
                    f"(setting contracts.max_lock_blocks)")
        return None

    def _height(self, asset: str, now: float) -> int:
        """Our ledger's height of ``asset``: the one noted within ``HEIGHT_FRESH`` s (no ledger call: the check
        runs in the agreement, on the event loop), else read now (a blocking call, then noted)."""
        noted = self.heights.get(asset)
        if noted is not None and 0 <= now - noted[1] <= HEIGHT_FRESH:
            return noted[0]
        h = self.stack.ledger.height(asset)
        self.heights[asset] = (h, now)
        return h

    def refresh_heights(self, now: float) -> None:
        """Note our ledger's height of every asset we offer (what a peer's contract on our chunks is timed in) and
        of every asset an escrow we arbitrate ends on (its spec is dropped once that height passed). Blocking ledger
        calls: the daemon runs it on a worker thread every ``HEIGHTS_EVERY`` s; an asset whose
        ledger does not answer keeps its last note (which goes stale, and the check then reads for itself)."""
        own = self.stack.protocol.own
        for asset in sorted({o.asset for o in (own.offers if own is not None else [])} | self.arbitrated.assets()):
            try:
                self.heights[asset] = (self.stack.ledger.height(asset), now)
            except Exception:
                continue
        self.arbitrated.end(self.heights)  # escrows we arbitrate whose last height passed: dropped

    def _contract_policy(self, kind: str, spec) -> str | None:
        """Which contracts this node runs for a peer: a ``kind`` offer must carry the stdlib contract of that
        kind, known by the EXACT hash of its source and its parameter schema (never by words in its text), or
        a contract whose source hash the operator allowed (``contracts.allowed_hashes``)."""
        from node.contracts import stdlib

        want = {"escrow": "escrow", "option": "option", "arbiter": "escrow", "ring": "ring", "swap": "turns"}[kind]
        name, why = stdlib.identify(spec.source, {p.name: p.value for p in spec.params})
        if name == want:
            return None
        h = stdlib.source_hash(spec.source)
        if h in self.allowed_hashes:
            return None
        return (f"contract policy: a {kind} offer must carry the stdlib {want} contract (source hash "
                f"{stdlib.SOURCE_HASHES[want]}) or a contract in contracts.allowed_hashes; this one's source hash "
                f"is {h}: {why or f'it is the stdlib {name}'}")

    def accept(self, peer: str, offer, now: float) -> str | None:
        """The responder's policy; None to agree (and expect the contract), else the reason."""
        from node.contracts.spec import decode_spec

        if offer.kind in ("escrow", "option", "arbiter", "ring"):
            return self._accept_spec(peer, offer, now)
        if offer.kind != "swap":
            return f"unsupported contract kind {offer.kind!r}"
        if isinstance(decode_spec(offer.schedule), str):  # (release/1's bare schedule: that protocol is retired)
            return ("a swap offer must carry the turns spec of its schedule, run over /keyswitch/contract-run/1 "
                    "(/keyswitch/release/1 is retired)")
        return self._accept_spec(peer, offer, now)

    def _retract_pub(self, pub: bytes) -> None:
        """Our deposit key ``pub`` is committed or released: off our sheet, and the retraction published at
        once (not at the next re-announcement, which backs off up to ``offers.REPUBLISH_MAX``: peers' books
        would offer it meanwhile, and their contracts over it be refused)."""
        if self.stack.withdraw(pub):  # (and no refresh of our offers running meanwhile puts it back)
            node = getattr(self, "node", None)
            if node is not None and not self._publishing:  # (node: set by the daemon once its host runs)
                self._publishing = True  # the retractions of one contract event go out on one sheet
                proto = self.stack.protocol

                def publish(now: float):
                    self._publishing = False
                    return proto.set_own_sheet(proto.own, now)

                node.driver.submit(proto, publish)

    # -------------------------------------------------------------- outcomes
    def on_notify(self, n) -> None:
        """Driver notifications: a released key leaves our own sheet; an agreed contract makes the peer's
        device known here (its outcome report may arrive before our own side ends); a finished contract
        feeds reputation and is reported to the network. Any contract event brings the exposure holds up to
        date (a contract agreed holds, one ended releases)."""
        if n.kind.startswith("contract."):
            self.sync_holds(self.clock.now())
        if n.kind in ("contract.released", "contract.outcome"):
            for rw in list(self.run_watchers):
                rw(n.kind, n.detail)
        if n.kind in ("contract.released", "contract.refund"):
            self._retract_pub(bytes.fromhex(n.detail["pubkey"]))
            return
        if n.kind == "contract.refused" and n.detail.get("code") in OPEN_REFUSALS:
            self.swaps.refused_open(n.detail.get("contract", ""), n.detail.get("reason", ""))
        if n.kind == "contract.declined":
            self.swaps.declined(n.detail["contract"], n.detail["reason"])
        self.swaps.end_proposals()
        if n.kind == "contract.accepted" and n.detail.get("kind") == "swap":
            node = getattr(self, "node", None)
            if node is not None:  # (a swap spec we agreed to as the responder: we open it now)
                node.driver.submit(self.run, self.swaps.start_agreed)
            return
        swap = self.swaps.run_of(n.detail.get("contract", "")) if n.kind.startswith("contract.") else None
        if n.kind == "contract.opened":  # our chunks are committed now: off our sheet (as at a swap's agreement)
            for pub in n.detail["committed"]:  # (no reputation record yet: the peers' quotes are verified later)
                self._retract_pub(bytes.fromhex(pub))
            if swap is not None:  # (a swap's peer was attested before agreement, as release/1's at its hello)
                for p in n.detail["parties"]:
                    self.reporter.observe(bytes.fromhex(p["device"]), p["peer"], self.clock.now())
            return
        if swap is not None and n.kind == "contract.received":
            steps, at = self.swaps.keys_in.get(swap.key, (frozenset(), 0.0))
            self.swaps.keys_in[swap.key] = (steps | {n.detail["step"]}, max(at, n.detail.get("at", 0.0)))
            while len(self.swaps.keys_in) > KEEP_KEYS_IN:  # (bounded: the oldest swaps' stamps go first)
                del self.swaps.keys_in[next(iter(self.swaps.keys_in))]
        if swap is not None and n.kind in ("contract.claim", "contract.withheld", "contract.outcome"):
            self.swaps.ended(n)  # a swap reports once, its outcome, as release/1 did: not per claim
            return
        if n.kind in ("contract.received", "contract.claim", "contract.withheld"):
            self.reporter.on_contract_notify(n, self.clock.now())
            return

    def heights_wanted(self) -> bool:
        """Does a language contract run (its enclave reads ledger heights: ``feed_heights``)? From the event loop.
        (A swap's ``turns`` contract reads none.)"""
        return any(r.rec.state not in ("done", "failed") and not self.is_swap(r.spec)
                   for r in list(self.run.runs.values()))

    def tick(self, now: float) -> None:
        """Once a second on the event loop while no language contract runs (``feed_heights`` does this then, on
        the contract worker): claims whose release record never came back; the holds brought up to date once
        after the start (contracts resumed) and while a reservation waits to lapse (each contract event brings
        them up to date anyway). Not on the worker: it held up every swap's events once a second (under load
        ~0.2-1 s each time, the driver's lock held, the event loop's gossip validation waiting for it)."""
        self.reporter.flush(now)
        if self._reserved or self.swaps.proposed or self._resumed or not self._ticked:
            self._ticked = True
            self.sync_holds(now)
        self.swaps.end_proposals()

    def feed_heights(self, now: float):
        """Hand the ledger heights every running language contract may read to the contract runner."""
        assets = set()
        for r in self.run.runs.values():
            if r.rec.state not in ("done", "failed") and not self.is_swap(r.spec):
                assets |= {c.asset for p in r.spec.parties for c in p.chunks}
                assets |= {p.value for p in r.spec.params if isinstance(p.value, str)}
        self.reporter.flush(now)  # every second: claims whose release record never came back
        self.sync_holds(now)  # (resumed contracts after a restart; reservations that expired)
        cmds: list = [Notify("swap.unopened", {"proposals": len(self.swaps.unopened)})] if self.swaps.unopened else []
        ledger = self.stack.ledger
        for a in sorted(assets):
            try:
                h = ledger.height(a)
            except Exception:
                continue  # not an asset (a message), or the ledger is away: next second
            self.heights[a] = (h, now)
            cmds += self.run.observe_height(a, h, now)
        return cmds

    def balance(self) -> dict[str, Any]:
        """Where the keys received in contracts went (``node.app.balance``): claims and totals per destination."""
        from node.app.balance import claim_rows, received_claims, totals

        rows = claim_rows(received_claims(self.legacy, self.run.store), self.claim_address)
        return {"claims": rows, "totals": totals(rows)}

    def contracts(self) -> list[dict[str, Any]]:
        out = []
        for key, r in sorted(self.run.runs.items()):
            row = {"contract": key, "kind": r.spec.source.split("contract ", 1)[-1].split()[0],
                   "parties": list(r.spec.ids), "role": r.me, "state": r.rec.state, "reason": r.rec.reason}
            try:
                row.update(self.run.summary(r.cid))
            except Exception as exc:  # the enclave is away: the host record still answers
                row["summary_error"] = str(exc)
            if self.is_swap(r.spec):  # (shaped as release/1's rows: the CLI, the demo and the tests read them)
                row.update(kind="swap", peer=r.spec.ids[1 - r.me], role="initiator" if r.me == 0 else "responder",
                           rounds=len(r.spec.steps()))
                outcome = self.swaps.outcome(r)
                if outcome is not None:
                    row["outcome"] = outcome.to_json()
                steps, at = self.swaps.keys_in.get(key, (frozenset(), 0.0))
                if len(steps) >= len(r.spec.parties[1 - r.me].chunks):  # every key due to us is in
                    row["keys_in_at"] = at  # when our enclave took the last of them
            out.append(row)
        out += self.swaps.rows()
        return out
