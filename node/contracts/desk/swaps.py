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
  issue #19, is retired: ``node.app.stack.open_run_stores`` migrates its records at start.)
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

``SwapDesk`` is one class written in parts: here its state, the helpers, the notifications and the contracts' rows;
``swaps_plan`` the planning, ``swaps_accept`` the responder's policy (agreement), ``swaps_holds`` the exposure holds
(mixins with no state of their own); ``OutcomeReporter`` is in ``reporter``. Their constants are importable from here.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable

from node.protocols.base import Notify
from node.contracts.protocol.state import OPEN_REFUSALS
from node.contracts.desk.reporter import RECORD_GRACE, OutcomeReporter  # noqa: F401 (re-exported)
from node.contracts.desk.swaps_accept import (  # noqa: F401 (re-exported)
    HEIGHT_FRESH, HEIGHT_LAG, HEIGHT_PARAMS, HEIGHTS_EVERY, VALUE_TOLERANCE, Acceptance,
)
from node.contracts.desk.swaps_holds import RESERVE_TTL, Holds  # noqa: F401 (re-exported)
from node.contracts.desk.swaps_plan import Planning

log = logging.getLogger("keyswitch.swaps")
#: default of ``contracts.max_lock_blocks`` (as a request's options: request_run.MAX_EXPIRY_BLOCKS)
MAX_LOCK_BLOCKS = 10_000
MAX_UNSENT = 1024  # outcome reports made before the host runs, kept until it does
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


def kept_chunks(release_store, run_store) -> list[tuple[str, Any]]:
    """``[(contract key, Chunk)]``: every received key a contract recorded as kept (claim policy "keep"),
    read from the contract records on disk (a swap's are written when it ends, a language contract's
    when the claim settles), so a restart finds them all again. Records that do not decode are skipped
    (the protocols report them)."""
    from node.app.balance import received_claims

    return [(key, chunk) for key, chunk, cl in received_claims(release_store, run_store) if cl.status == "kept"]


class SwapDesk(Planning, Holds, Acceptance):
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
        self._node = None  # the daemon's host (``node``), handed in once it runs
        self._unsent: list[bytes] = []  # our outcome reports made before that (``_publish_report``)
        from node.assets.prices import StaticPrices
        from node.contracts.protocol.claims import sweep_claimer

        self.stack, self.clock, self.claim_policy = stack, clock, claim_policy
        # the owner's claim seed (``claim.seed``), never the libp2p identity seed: see ``node.identity``
        self._seed = stack.claim_seed()
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
        runs, agreed, self.legacy, self.migrated = stack.run_stores()  # (opened by the composition root)

        self.run = ContractRun(
            net=stack.net, enclave=stack.enclave, quote=own.quote, binding=own.binding,
            identity=lambda: (stack.protocol.own.binding, stack.protocol.own.quote),
            attestations=stack.protocol.attestations, check_funds=self._funds,
            claim=sweep_claimer(lambda: stack.enclave, ledger, self.claim_address),
            store=runs, claim_policy=claim_policy, agreed=agreed,
            price_of=self._price, price_tolerance=price_tolerance)
        from node.contracts.desk.arbiter import Arbitrations

        #: contract id hex -> spec, for escrows we arbitrate: on disk (``arbiter.sqlite``), so a restart keeps them
        self.arbitrated = Arbitrations(stack.arbitration_store())
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
            publish=self._publish_report)

    # -------------------------------------------------------------- the host
    @property
    def node(self):
        """The daemon's host (its ``driver`` runs our protocols' calls), handed in once it runs; None before."""
        return self._node

    @node.setter
    def node(self, node) -> None:
        self._node = node
        unsent, self._unsent = self._unsent, []
        for data in unsent:
            self._publish_report(data)

    def _publish_report(self, data: bytes) -> None:
        """Gossip our signed outcome report. One made before the host runs (at a start the runner sees its ended
        swaps again before the daemon hands us the host) waits for it: it was marked reported when signed, so
        dropping it lost it for good (at most ``MAX_UNSENT`` wait)."""
        node = self.node
        if node is None:
            if len(self._unsent) < MAX_UNSENT:
                self._unsent.append(data)
            return
        node.driver.submit(self.stack.outcomes, lambda t: self.stack.outcomes.publish(data, t))

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
