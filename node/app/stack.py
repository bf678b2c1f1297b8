"""The offer stack a node runs: its enclave, offer book and offers protocol (``make_offer_stack``), then the
risk engine, requests for proposals, revocations and outcome reports over them (``add_switchboard``).

``node.app.daemon`` assembles a node from it; the simulator, the tests and ``node.dev.factory`` build the same
stack. ``ledger_check`` is what a node's ledger says about a double-spent report.
"""

from __future__ import annotations

import random
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from node import config as cfgmod

if TYPE_CHECKING:  # (types only: the application layer imports what it composes when it composes it)
    from node.app.deposits import DepositStore
    from node.assets.prices import PriceFeed
    from node.attest.tcb_policy import TcbPolicy
    from node.contracts.desk.escrow import EscrowDesk
    from node.ledger.base import Ledger
    from node.protocols.offers import Offer, OffersProtocol
    from node.protocols.outcomes import OutcomesProtocol, ReleaseRecords
    from node.protocols.revocation import RevocationProtocol
    from node.protocols.rfp import RfpProtocol
    from node.risk.engine import RiskEngine
    from node.risk.reputation import Reputation
    from node.stores.offerbook import OfferBook
    from node.contracts.desk.swaps import SwapDesk
    from node.tee.client import Enclave


def open_run_stores(datadir, *, durable: bool = True):
    """The contract-run protocol's stores in ``datadir`` (``runs/``, ``runs-agreed/``), opened after the release/1
    records an older node kept in ``contracts/`` are migrated into ``runs/`` (``migrate_release_records``: same
    contract id, so a swap in flight when the node upgraded resumes over contract-run/1). Returns (runs, agreed,
    legacy, migrated): ``legacy`` the store of what was left in ``contracts/`` (its claims still count in the
    balance), ``migrated`` (old key, what happened) per release/1 record, for the log."""
    import logging

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
    log = logging.getLogger("keyswitch.swaps")
    for key, what in migrated:
        log.log(logging.INFO if what == "migrated" else logging.WARNING, "release/1 record %s: %s", key, what)
    return runs, agreed, legacy, migrated


@dataclass
class OfferStack:
    """The enclave, book and protocol a node runs for offer gossip."""

    enclave: Enclave
    book: OfferBook
    protocol: OffersProtocol
    peer_id: str
    net: str
    #: this node's current offers (None until first derived from its deposits: ``refresh_offers``)
    offers: list[Offer] | None = None
    #: the ledger, the deposits and the data directory a daemon attaches (None in protocol-only stacks)
    ledger: Ledger | None = None
    deposits: DepositStore | None = None
    datadir: Path | None = None
    chunk_usd_cents: int = 0
    #: the node's one price feed (None: the embedded static table)
    prices: PriceFeed | None = None
    tcb_policy: TcbPolicy | None = None
    # add_switchboard:
    engine: RiskEngine | None = None
    rfp: RfpProtocol | None = None
    revocations: RevocationProtocol | None = None
    outcomes: OutcomesProtocol | None = None
    release_records: ReleaseRecords | None = None
    reputation: Reputation | None = None
    request_deadline: float = 3.0
    # the desks (node.app.daemon):
    desk: SwapDesk | None = None
    escrow: EscrowDesk | None = None
    #: deposit keys a contract took off our sheet (``withdraw``) -> the withdrawal's number (``withdrawals``
    #: then): a refresh whose enclave read began before a key's withdrawal never offers that key (see
    #: ``refresh_offers``); kept until a refresh that began after it ends
    withdrawn: dict[bytes, int] = field(default_factory=dict)
    withdrawals: int = 0
    _refreshing: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one refresh at a time
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)  # a withdrawal vs a refresh's result

    # -- the desks' stores: ``node.contracts.desk`` imports no store, it asks the composition root for them
    def run_stores(self, *, durable: bool = True):
        """The contract-run stores in the data directory, release/1 records migrated first (``open_run_stores``)."""
        return open_run_stores(self.datadir, durable=durable)

    def claim_seed(self) -> bytes:
        """The owner's claim seed (``<datadir>/claim.seed``, made on first use: ``node.identity``)."""
        from node.identity import load_or_create_claim_seed

        return load_or_create_claim_seed(self.datadir)

    def arbitration_store(self):
        """The escrows this node arbitrates (``<datadir>/arbiter.sqlite``)."""
        from node.stores.arbitrations import ArbitrationStore

        return ArbitrationStore(self.datadir / "arbiter.sqlite")

    def own_sheet(self):
        """This node's sheet: the attested enclave and its funded deposits (none until funded)."""
        from node.protocols.offers import OwnSheet

        committed = self.enclave.held_pubkeys()  # what the binding's keys_root commits to (the sheet carries it)
        binding = self.enclave.binding_for(self.net, self.peer_id)
        quote = self.enclave.quote(binding)
        return OwnSheet(offers=list(self.offers or []), retracted=[], quote=quote, binding=binding,
                        sign=self.enclave.sign_offer_sheet, committed=committed)

    def refresh_offers(self, now: float) -> None:
        """Offers from confirmed deposits (when a ledger is attached), then a fresh own sheet, quoted
        again only when the offers changed (the daemon re-derives them every few seconds, in a worker thread).

        Contracts run meanwhile on the event loop: a key one of them commits or releases is withdrawn from our
        sheet at once (``withdraw``, its retraction published). This refresh read the enclave's offerable keys
        (and the ledger) before it ends, perhaps before that withdrawal: such a key is left out of its result,
        else the sheet would offer it to our own planner again while every peer's book had its retraction
        (the next refresh reads the enclave afresh: a key whose contract ended without moving it comes back)."""
        from node.app.deposits import adopt_kept, offers_from

        with self._refreshing:  # (the refresher and a deposit's refresh run in worker threads)
            since = self.withdrawals
            before = self.offers
            if self.ledger is not None:
                if self.desk is not None:  # keys our contracts kept (claims.policy keep) become deposits, once;
                    # from the records on disk, so after a restart too (even if the policy changed since)
                    adopt_kept(self.deposits, self.desk.kept(), self.ledger, self.enclave, now=now,
                               prices=self.prices)  # the node's feed
                fresh = offers_from(self.deposits.all(), self.ledger, self.enclave, now=now)
                # an offer keeps its identity (its id hashes its expiry) until half its lifetime is gone,
                # so peers' books and proposals keep naming the same offer
                old = {o.pubkey: o for o in self.offers or []}
                keep = [old[o.pubkey] if o.pubkey in old and old[o.pubkey].expiry - now > (o.expiry - now) / 2
                        else o for o in fresh]
                with self._guard:
                    self.offers = self._unwithdrawn(keep, since)
                if self.protocol.own is not None and before is not None and self.offers == before:
                    return  # nothing changed: no new quote, no new sheet
            own = self.own_sheet()
            with self._guard:  # (a withdrawal while the enclave quoted: still left out)
                own.offers = self._unwithdrawn(own.offers, since)
                self.offers = self._unwithdrawn(self.offers or [], since)
                if self.protocol.own is not None:  # retractions not yet published ride on the new sheet
                    own.retracted = [*self.protocol.own.retracted, *own.retracted]
                self.protocol.own = own
                for k in [k for k, n in self.withdrawn.items() if n <= since]:
                    del self.withdrawn[k]  # this refresh read the enclave after these: the next one will too

    def _unwithdrawn(self, offers: list, since: int) -> list:
        return [o for o in offers if self.withdrawn.get(o.pubkey, 0) <= since]

    def withdraw(self, pub: bytes) -> bool:
        """Our deposit key ``pub`` is committed or released (a contract event, on the event loop): off our
        sheet now and listed as retracted; no refresh that began before puts it back. True when it was on
        the sheet (the caller publishes)."""
        with self._guard:
            self.withdrawals += 1
            self.withdrawn[pub] = self.withdrawals
            if self.offers is not None:
                self.offers = [o for o in self.offers if o.pubkey != pub]
            own = self.protocol.own
            if own is None or not any(o.pubkey == pub for o in own.offers):
                return False
            own.offers = [o for o in own.offers if o.pubkey != pub]
            own.retracted.append(pub)
            return True

    def offered(self) -> set[bytes]:
        """The deposit keys of this node's current offers."""
        return {o.pubkey for o in (self.protocol.own.offers if self.protocol.own else [])}

    def retract_gone(self, before: set[bytes]) -> bool:
        """After ``refresh_offers``: the offers that left since ``before`` (``offered()`` then) ride as
        retractions on the next sheet: their funds unconfirmed again (a reorganisation), spent, or their key
        committed or released. A sheet that offers nothing is published only when it retracts something, so
        without this the last offer would stay in every book until it expired. True when the offers changed
        (the caller publishes: ``set_own_sheet``)."""
        after = self.offered()
        if after == before:
            return False
        listed = set(self.protocol.own.retracted)
        self.protocol.own.retracted.extend(sorted(before - after - listed))
        return True

    def close(self) -> None:
        self.book.close()
        self.enclave.close()
        for part in (self.deposits, self.ledger, self.reputation, self.release_records):
            if part is not None and hasattr(part, "close"):
                part.close()


def check_backend_ready(backend: str) -> None:
    """ConfigError naming what this machine lacks for ``tee.backend`` (nothing for the simulated one)."""
    from node.tee.backends import check_backend, missing_hardware

    missing = missing_hardware(check_backend(backend))
    if missing:
        raise cfgmod.ConfigError("tee.backend", backend, f"this machine cannot run it: {missing}", "")


def check_prices(cfg) -> None:
    """ConfigError naming the prices.* setting the node's feed cannot be built from (e.g. an unreadable
    prices.file); nothing is fetched."""
    from node.assets.feeds import build_feed

    build_feed(cfg, datadir=Path(cfg.datadir))


def open_enclave(datadir: Path, backend: str = "simulated", *, gramine_enclave: str = "build/gramine/keyswitch-enclave"):
    """The enclave process for ``tee.backend``: simulated here; on hardware, refused at once with
    what the machine lacks, else started (under ``gramine-sgx`` for Gramine)."""
    from node.tee.backends import check_backend
    from node.tee.client import SubprocessEnclave

    backend = check_backend(backend)
    if backend == "simulated":
        return SubprocessEnclave(datadir)
    check_backend_ready(backend)
    command = ["gramine-sgx", gramine_enclave] if backend == "gramine" else None
    return SubprocessEnclave(datadir, backend=backend, command=command)


def make_offer_stack(datadir: Path, net: str, peer_id: str, *, republish: float = 60.0, in_process: bool = False,
                     backend: str = "simulated", broken: str = "", republish_max: float | None = None,
                     offers: dict | None = None):
    """The enclave, book and ``OffersProtocol`` of a node. ``republish`` is the first re-announcement of an
    unchanged sheet, ``republish_max`` (default ``node.protocols.offers.REPUBLISH_MAX``; never below
    ``republish``) the cap its doubling stops at."""
    from node.stores.offerbook import OfferBook
    from node.protocols.offers import AttestationCache, OffersProtocol, default_attestation_verifier
    from node.tee.client import InProcessEnclave, SubprocessEnclave
    from node.attest.policy import AttestationPolicy

    datadir.mkdir(parents=True, exist_ok=True)
    if broken:  # tee.broken: a loud, explicit choice; the enclave logs its banner
        from node.tee.broken import BrokenEnclave

        if backend != "simulated":
            raise cfgmod.ConfigError("tee.broken", broken, "a broken TEE is a simulation: tee.backend must be "
                                     "simulated", "")
        enclave = BrokenEnclave(datadir, mode=broken)
        print(enclave.banner(), file=sys.stderr, flush=True)
    else:
        enclave = InProcessEnclave(datadir) if in_process else open_enclave(datadir, backend)
    if hasattr(enclave, "start"):
        enclave.start()
    from node.attest.tcb_policy import default_tcb_policy

    cache = AttestationCache(default_attestation_verifier(AttestationPolicy.dev()))
    tcb = default_tcb_policy()
    book = OfferBook(datadir / "offers.sqlite", device_class=lambda body: device_class_of(cache, tcb, body))
    cap = None if republish_max is None else max(republish, republish_max)  # (None: the protocol's default)
    proto = OffersProtocol(net=net, book=book, attestations=cache, republish_interval=republish, republish_max=cap,
                           **(offers or {}))  # offers.* settings, the price feed and risk.price_tolerance
    stack = OfferStack(enclave, book, proto, peer_id, net)
    stack.tcb_policy = tcb
    proto.own = stack.own_sheet()  # published when the protocol starts (if it offers anything) and on change
    return stack


def offer_settings(cfg, prices=None) -> dict:
    """``OffersProtocol`` keywords from the configuration: the offers.* limits, and the node's price feed with
    risk.price_tolerance (offers whose declared USD value disagrees with our price are not booked).
    ``prices``: the node's one feed (``node.assets.feeds.build_feed``); built from the prices.* settings if None."""
    if prices is None:
        from node.assets.feeds import build_feed

        prices = build_feed(cfg, datadir=cfg.datadir)
    return {"max_origins_per_device": cfg["offers.max_origins_per_device"],
            "validation_budget": cfg["offers.validation_budget"],
            "max_offer_lifetime": cfg["offers.max_offer_lifetime"],
            "prices": prices, "price_tolerance": cfg["risk.price_tolerance"]}


def device_class_of(cache, tcb, body) -> str:
    """The risk engine's class for the device behind a validated sheet (from its verdict and the TCB policy)."""
    from node.attest.tcb_policy import classify

    verdict = cache.verdict_of(body.binding.sign_pub)
    return classify(verdict, tcb).class_name if verdict is not None else "unknown"


def ledger_check(ledger, report):
    """What the ledger says about a double-spent report. CONFIRMED only when the named transaction is in a
    block *and* spends from the report's deposit address (one of that address's spends on the ledger's own
    record, not the reporter's word; coins sent to the address since do not undo it). REFUTED when the ledger
    contradicts the report: the named transaction is in a block but spends nothing from that address, or the
    address still holds its funds (even counting the transactions waiting for a block). UNCHECKED when this
    ledger cannot tell (another chain, unreachable, or the spend is not mined yet: a report often outruns the
    next block). CONFIRMED shows that
    the deposit was spent, not by whom: ``node.protocols.outcomes`` decides whether it proves anything."""
    from node.ledger.base import LedgerError
    from node.risk.reputation import LedgerCheck

    if ledger is None:
        return LedgerCheck.UNCHECKED
    try:
        mined = ledger.confirmations(report.asset, report.txid) > 0
        if mined:
            txid = report.txid.lower()
            events, _ = ledger.watch([report.address], 0)
            if any(e.kind == "spend" and e.asset == report.asset and e.txid.lower() == txid for e in events):
                return LedgerCheck.CONFIRMED  # whatever was sent to the address since (dust cannot refute it)
        bal = ledger.balance(report.asset, report.address)
        if bal.confirmed > 0 and bal.unconfirmed > 0:
            return LedgerCheck.REFUTED
        # a mined transaction that is not a spend of that deposit contradicts the report
        return LedgerCheck.REFUTED if mined else LedgerCheck.UNCHECKED
    except (LedgerError, ValueError, KeyError, OSError):
        return LedgerCheck.UNCHECKED


def make_revocations(stack: OfferStack, signers, accept_signed: bool, sign=None):
    """Revocation gossip over the stack's risk engine; sheets of revoked devices/classes are then ignored."""
    from node.stores.offerbook import device_id_of
    from node.protocols.revocation import RevocationProtocol, TrustConfig

    engine = stack.engine
    own_dev = device_id_of(stack.enclave.info().sign_pub).hex()

    def own_devices() -> dict[str, int]:
        deposits = stack.deposits
        return {own_dev: len(deposits.all()) if deposits is not None else 0}

    def refuse(body) -> str | None:
        dev = device_id_of(body.binding.sign_pub)
        if engine.reputation.is_cheater(dev):
            return f"device {dev.hex()[:16]} is revoked"
        why = engine.caps.classes.is_revoked(stack.book.device_class(body))
        return f"its class is revoked: {why}" if why else None

    stack.protocol.refuse = refuse
    from node.protocols.revocation import cheating_proof_checker

    trust = TrustConfig(frozenset(signers), bool(accept_signed),
                        checkers={"cheating-proof": cheating_proof_checker(stack.net)})
    return RevocationProtocol(net=stack.net, engine=engine, trust=trust, sign=sign,
                              own_devices=own_devices, own_class=lambda: "sim" if stack.enclave.info().simulated else "")


def add_switchboard(stack: OfferStack, datadir: Path, cfg=None, *, seed: int = 0) -> None:
    """The risk engine over the stack's offer book, and the request-for-proposals protocol."""
    from node.identity import load_or_create_seed
    from node.peerkey import PeerSigner
    from node.protocols.rfp import RfpProtocol
    from node.risk.allocate import Limits
    from node.risk.engine import RiskEngine
    from node.risk.reputation import Reputation
    from node.stores.reputation import ReputationDB

    get = (lambda k, d: cfg[k]) if cfg is not None else (lambda k, d: d)
    rep = Reputation(ReputationDB(datadir / "reputation.sqlite"), half_life=get("risk.half_life_days", 7.0) * 86_400)
    limits = Limits(get("risk.max_per_device", 4), get("risk.max_share_device", 0.25),
                    get("risk.max_share_owner", 0.5))
    from node.attest.tcb_policy import class_registry, default_tcb_policy

    classes = class_registry(stack.tcb_policy or default_tcb_policy())
    stack.engine = RiskEngine(stack.book, rep, classes=classes, limits=limits, seed=seed)
    signer = PeerSigner(load_or_create_seed(datadir))
    if signer.peer_id != stack.peer_id:
        raise RuntimeError("identity key and peer id disagree")
    stack.rfp = RfpProtocol(net=stack.net, engine=stack.engine, sign=signer.sign, prices=stack.prices,
                            price_tolerance=get("risk.price_tolerance", 0.10),  # the node's feed (None: static)
                            rng=random.SystemRandom())  # request ids nobody can guess from earlier ones
    stack.revocations = make_revocations(stack, get("risk.revocation_signers", []),
                                         get("risk.accept_signed_revocations", False), sign=signer.sign)
    from node.stores.offerbook import device_id_of
    from node.protocols.outcomes import OutcomesProtocol, ReleaseRecords
    from node.stores.release_records import ReleaseRecordsDB

    records = stack.release_records = ReleaseRecords(
        stack.net, store=ReleaseRecordsDB(datadir / "release-records.sqlite"))
    # the attested encryption key of every device whose quote this node verifies (a release record names
    # its recipient by it): lets an outcome report with a release record to its reporter be a proof by the ledger
    enc_keys: dict[bytes, bytes] = {}
    cache = stack.protocol.attestations
    inner_verify = cache.verify

    def verify_and_learn(quote, binding, now):
        verdict = inner_verify(quote, binding, now)
        if getattr(verdict, "ok", False):
            enc_keys[binding.sign_pub] = binding.enc_pub
        return verdict

    cache.verify = verify_and_learn

    # a proof of cheating assembled from outcome reports is applied and gossiped as a revocation notice
    stack.outcomes = OutcomesProtocol(net=stack.net, engine=stack.engine,
                                      ledger_check=lambda r: ledger_check(stack.ledger, r),
                                      on_proof=stack.revocations.publish_proof,
                                      on_proof_timer=stack.revocations.handle, records=records,
                                      enc_key_of=enc_keys.get,
                                      attested=lambda dev: any(
                                          device_id_of(k) == dev for k in list(stack.protocol.attestations.latest)))
    stack.request_deadline = float(get("risk.request_deadline", 3.0))
    stack.reputation = rep
