"""``keyswitch run``: the node daemon.

It composes the parts: the enclave (a separate process, simulated backend),
the offer book (SQLite in the data directory), the offers protocol driven by
the py-libp2p runtime, the local control API and, when asked, Prometheus
metrics. It prints readiness lines a person and a test can wait for::

    API listening on http://127.0.0.1:PORT
    swarm listening on /ip4/127.0.0.1/tcp/PORT/p2p/12D3Koo...
    metrics on http://127.0.0.1:PORT/metrics        (with --metrics-port)
    ready 12D3Koo...

Shutdown: SIGTERM or Ctrl-C stops the node gracefully within
``SHUTDOWN_DEADLINE`` seconds (the API stops, the runtime closes its
connections, the offer book and the enclave close; the enclave's sealed state
is only ever replaced atomically, so no exit leaves it half-written). A second
Ctrl-C forces an immediate exit. ``api.url`` and ``.cookie`` are removed on
the way out.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node import wire

from node import config as cfgmod
from node.api.services import ApiError

log = logging.getLogger("keyswitch.daemon")
SHUTDOWN_DEADLINE = 10.0


# ----------------------------------------------------------------- offers wiring
@dataclass
class OfferStack:
    """The enclave, book and protocol a node runs for offer gossip."""

    enclave: Any
    book: Any
    protocol: Any
    peer_id: str
    net: str
    extra: dict = field(default_factory=dict)
    engine: Any = None  # node.risk.engine.RiskEngine (add_switchboard)
    rfp: Any = None  # node.protocols.rfp.RfpProtocol
    revocations: Any = None  # node.protocols.revocation.RevocationProtocol
    outcomes: Any = None  # node.protocols.outcomes.OutcomesProtocol
    desk: Any = None  # node.swaps.SwapDesk
    escrow: Any = None  # node.escrowdesk.EscrowDesk
    request_deadline: float = 3.0

    def own_sheet(self):
        """This node's sheet: the attested enclave and its funded deposits (none until funded)."""
        from node.protocols.offers import OwnSheet

        committed = self.enclave.held_pubkeys()  # what the binding's keys_root commits to (the sheet carries it)
        binding = self.enclave.binding_for(self.net, self.peer_id)
        quote = self.enclave.quote(binding)
        return OwnSheet(offers=list(self.extra.get("offers", [])), retracted=[], quote=quote, binding=binding,
                        sign=self.enclave.sign_offer_sheet, committed=committed)

    def refresh_offers(self, now: float) -> None:
        """Offers from confirmed deposits (when a ledger is attached), then a fresh own sheet, quoted
        again only when the offers changed (the daemon re-derives them every few seconds)."""
        from node.deposits import adopt_kept, offers_from

        before = self.extra.get("offers")
        if "ledger" in self.extra:
            if self.desk is not None:  # keys our contracts kept (claims.policy keep) become deposits, once;
                # from the records on disk, so after a restart too (even if the policy changed since)
                adopt_kept(self.extra["deposits"], self.desk.kept(), self.extra["ledger"], self.enclave, now=now,
                           prices=self.extra.get("prices"))  # the node's feed
            fresh = offers_from(self.extra["deposits"].all(), self.extra["ledger"], self.enclave, now=now)
            # an offer keeps its identity (its id hashes its expiry) until half its lifetime is gone,
            # so peers' books and proposals keep naming the same offer
            old = {o.pubkey: o for o in self.extra.get("offers", [])}
            keep = [old[o.pubkey] if o.pubkey in old and old[o.pubkey].expiry - now > (o.expiry - now) / 2 else o
                    for o in fresh]
            self.extra["offers"] = keep
            if self.protocol.own is not None and before is not None and keep == before:
                return  # nothing changed: no new quote, no new sheet
        self.protocol.own = self.own_sheet()

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
        self.protocol.own.retracted.extend(sorted(before - after))
        return True

    def close(self) -> None:
        self.book.close()
        self.enclave.close()
        for k in ("deposits", "ledger", "reputation", "release_records"):
            if k in self.extra and hasattr(self.extra[k], "close"):
                self.extra[k].close()


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
    from node.tee.policy import AttestationPolicy

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
    from node.tee.tcb_policy import default_tcb_policy

    cache = AttestationCache(default_attestation_verifier(AttestationPolicy.dev()))
    tcb = default_tcb_policy()
    book = OfferBook(datadir / "offers.sqlite", device_class=lambda body: device_class_of(cache, tcb, body))
    cap = None if republish_max is None else max(republish, republish_max)  # (None: the protocol's default)
    proto = OffersProtocol(net=net, book=book, attestations=cache, republish_interval=republish, republish_max=cap,
                           **(offers or {}))  # offers.* settings, the price feed and risk.price_tolerance
    stack = OfferStack(enclave, book, proto, peer_id, net)
    stack.extra["tcb_policy"] = tcb
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


def offers_factory(ctx):
    """``--protocol node.daemon:offers_factory`` for ``python -m node.runtime`` (functional tests).

    Options: ``republish=SECONDS`` (default 60: the first re-announcement of an unchanged sheet),
    ``republish_max=SECONDS`` (default 1800: the cap of its doubling), ``keys=N``: make N deposits of $50 of
    ``asset=`` (default BTC-REG) on a dev ledger in the data directory (enclave keys, quote verified,
    funded from the faucet, confirmed) and offer them. ``enclave=in-process``: the simulated enclave's
    trusted core runs in the node's process instead of a separate one (benchmarks with many nodes on few
    cores); the same core signs the same sheets.
    """
    stack = make_offer_stack(ctx.datadir, ctx.net, ctx.peer_id,
                             republish=float(ctx.options.get("republish", 60)),
                             republish_max=(float(ctx.options["republish_max"])
                                            if "republish_max" in ctx.options else None),
                             in_process=ctx.options.get("enclave", "subprocess") == "in-process")
    n = int(ctx.options.get("keys", 0))
    if n:
        from node.deposits import DepositStore, make_deposits
        from node.ledger.devnet import DevLedger

        ledger = DevLedger(ctx.datadir / "ledger.sqlite", automine=True)
        store = DepositStore(ctx.datadir / "deposits.sqlite")
        stack.extra.update(ledger=ledger, deposits=store)
        if not store.all():
            make_deposits(stack.enclave, ledger, store, asset=ctx.options.get("asset", "BTC-REG"), chunks=n,
                          chunk_usd_cents=5000, now=ctx.clock.now(), net=ctx.net, peer_id=ctx.peer_id)
        stack.refresh_offers(ctx.clock.now())
    proto = stack.protocol
    proto.status = lambda: {"offers_in_book": stack.book.count(now=ctx.clock.now()),
                            "origins": sorted(stack.book._latest), "seq": proto.seq,
                            "reasons": proto.reasons, "pull": dict(proto.pull_stats),
                            "next_interval": proto.next_interval, **proto.stats}
    return proto


def device_class_of(cache, tcb, body) -> str:
    """The risk engine's class for the device behind a validated sheet (from its verdict and the TCB policy)."""
    from node.tee.tcb_policy import classify

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
        deposits = stack.extra.get("deposits")
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
    from node.tee.tcb_policy import class_registry, default_tcb_policy

    classes = class_registry(stack.extra.get("tcb_policy") or default_tcb_policy())
    stack.engine = RiskEngine(stack.book, rep, classes=classes, limits=limits, seed=seed)
    signer = PeerSigner(load_or_create_seed(datadir))
    if signer.peer_id != stack.peer_id:
        raise RuntimeError("identity key and peer id disagree")
    stack.rfp = RfpProtocol(net=stack.net, engine=stack.engine, sign=signer.sign, prices=stack.extra.get("prices"),
                            price_tolerance=get("risk.price_tolerance", 0.10),  # the node's feed (None: static)
                            rng=random.SystemRandom())  # request ids nobody can guess from earlier ones
    stack.revocations = make_revocations(stack, get("risk.revocation_signers", []),
                                         get("risk.accept_signed_revocations", False), sign=signer.sign)
    from node.stores.offerbook import device_id_of
    from node.protocols.outcomes import OutcomesProtocol, ReleaseRecords
    from node.stores.release_records import ReleaseRecordsDB

    records = stack.extra["release_records"] = ReleaseRecords(
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
                                      ledger_check=lambda r: ledger_check(stack.extra.get("ledger"), r),
                                      on_proof=stack.revocations.publish_proof,
                                      on_proof_timer=stack.revocations.handle, records=records,
                                      enc_key_of=enc_keys.get,
                                      attested=lambda dev: any(
                                          device_id_of(k) == dev for k in list(stack.protocol.attestations.latest)))
    stack.request_deadline = float(get("risk.request_deadline", 3.0))
    stack.extra["reputation"] = rep


# ----------------------------------------------------------------- API services
class NodeServices:
    """``node.api.services.Services`` over a running daemon's parts."""

    def __init__(self, node, stack: OfferStack, clock, started_at: float) -> None:
        self.node, self.stack, self.clock, self.started_at = node, stack, clock, started_at
        self.requests = None  # node.requestdesk.RequestDesk, set by run_daemon (it needs the daemon's nursery)

    def status(self) -> dict[str, Any]:
        from node.runtime.runner import trio_tasks

        info = self.stack.enclave.info()
        now = self.clock.now()
        return {
            "peer_id": self.node.peer_id,
            "net": self.stack.net,
            "listen": list(self.node.listen_addrs),
            "peers": len(self.node.connected_peers()),
            "offers_in_book": self.stack.book.count(now=now),
            "own_offers": len(self.stack.protocol.own.offers) if self.stack.protocol.own else 0,
            "uptime": round(now - self.started_at, 3),
            "enclave": {"simulated": info.simulated, "device_id": info.device_id.hex(),
                        "measurement": info.measurement, "broken": getattr(self.stack.enclave, "mode", "")},
            "ready": True,
            "requests": dict(self.stack.rfp.stats, reasons=dict(self.stack.rfp.reasons)) if self.stack.rfp else {},
            "revocations": self.stack.revocations.status() if self.stack.revocations else {},
            "outcomes": self.stack.outcomes.status() if self.stack.outcomes else {},
            "tasks": trio_tasks(),  # trio tasks alive in the daemon (a leak shows as growth: benchmarks.soak)
            "sheet": self.stack.protocol.published(),  # our last published sheet: seq, addresses offered
        }

    def peers(self) -> list[dict[str, Any]]:
        mesh = set(self.node.mesh_peers(self.stack.protocol.topic)) if self.node.pubsub else set()
        peers = sorted(self.node.connected_peers())
        scores = self.node.gossip_health(peers)["peer_scores"]  # gossipsub score, components, drops (issue #23)
        boot = self.node.peers.boot_ids
        return [{"peer": p, "bootstrap": p in boot, **self.node.probe.describe(p), "in_offer_mesh": p in mesh,
                 **scores.get(p, {})} for p in peers]

    async def connect(self, multiaddr: str) -> dict[str, Any]:
        """Dial ``multiaddr`` (checked by the API: ip4/ip6, ends in /p2p/<id>); the peer's row once connected."""
        from node.runtime.peering import DIAL_TIMEOUT
        from node.runtime.peerinfo import PING_ID

        pid = multiaddr.rsplit("/p2p/", 1)[-1]
        if pid == self.node.peer_id:
            raise ApiError(409, f"{multiaddr} is this node's own address")
        if pid in self.node.connected_peers():  # (py-libp2p would not dial it again, whatever the address)
            return {"peer": pid, "connected": True, "already": True, **self.node.probe.describe(pid)}
        with trio.move_on_after(DIAL_TIMEOUT):
            try:
                pid = await self.node.connect(multiaddr, now=True)
            except Exception as exc:  # noqa: BLE001 (refused, unreachable, another peer id at that address, ...)
                why = " ".join(str(exc).split()) or exc.__class__.__name__
                raise ApiError(409, f"could not connect to {multiaddr}: {why} (is the node running there, and "
                                    f"is /p2p/ its peer id?)") from None
            if await self.node.will_speak(pid, PING_ID):  # (once the host's identify is done: node.runtime.peerinfo)
                await self.node.probe.ping(pid)
            return {"peer": pid, "connected": True, **self.node.probe.describe(pid)}
        raise ApiError(504, f"no answer from {multiaddr} within {DIAL_TIMEOUT:g} s")

    def balance(self) -> dict[str, Any]:
        with self._consistent():
            return self.stack.desk.balance() if self.stack.desk else {"claims": [], "totals": []}

    def offers(self, asset: str | None, limit: int) -> list[dict[str, Any]]:
        return self.stack.book.rows(now=self.clock.now(), asset=asset, limit=limit)

    def deposits(self) -> list[dict[str, Any]]:
        from node.deposits import deposit_status

        states = {k.pubkey: k.state for k in self.stack.enclave.list_keys()}
        store = self.stack.extra["deposits"]
        kept = store.kept()
        return [{**deposit_status(d, self.stack.extra["ledger"], states.get(d.pubkey, "unknown")),
                 "kept_from": kept.get(d.pubkey, "")} for d in store.all()]

    def _consistent(self):
        """The driver's lock: the contract protocols' ``handle`` runs on a worker thread (it calls the enclave),
        so a reader of their state on the event loop takes the lock every handle holds, and never iterates a
        contract table while a handle changes it. Held for the reading only (no ledger call under it)."""
        driver = getattr(self.node, "driver", None)
        return driver.lock if driver is not None else contextlib.nullcontext()

    def contracts(self) -> list[dict[str, Any]]:
        with self._consistent():
            return self.stack.desk.contracts() if self.stack.desk else []

    def escrow(self) -> dict[str, Any]:
        with self._consistent():
            return self.stack.escrow.status()

    async def escrow_recover(self, contract: str) -> dict[str, Any]:
        return await self.stack.escrow.recover(self, contract)

    async def revoke(self, kind: str, target: str, reason: str) -> dict[str, Any]:
        """Sign a revocation notice with this node's peer key, apply it here and gossip it."""
        from node.identity import load_or_create_seed
        from node.peerkey import PeerSigner
        from node.protocols.revocation import RevocationNotice, make_notice

        signer = PeerSigner(load_or_create_seed(self.stack.extra["datadir"]))
        notice = RevocationNotice(1, self.stack.net, kind, target, reason, "", b"", signer.peer_id, self.clock.now())
        data = make_notice(notice, signer.sign)
        proto = self.stack.revocations
        box: dict[str, Any] = {}
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def publish(now: float):
            try:
                return proto.publish(data, now)
            except ValueError as exc:
                box["error"] = str(exc)
                return []
            finally:
                token.run_sync_soon(done.set)

        self.node.driver.submit(proto, publish)
        with trio.move_on_after(10):
            await done.wait()
        if "error" in box:  # well-formed, but the notice itself is refused (e.g. a device id that is not one)
            raise ApiError(409, box["error"])
        return {"issued": {"kind": kind, "target": target, "reason": reason, "issuer": signer.peer_id},
                "applied_here": proto.status()["applied"][-1:] }

    async def _submit(self, proto, fn, timeout: float = 10.0):
        """Run ``fn(now) -> commands`` on the driver; its return value (or exception) once it ran."""
        box: dict[str, Any] = {}
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def call(now: float):
            try:
                out = fn(now)
                box["ok"] = out
                return out if isinstance(out, list) else []
            except ValueError as exc:
                box["error"] = (409, str(exc))
                return []
            except Exception as exc:  # a bug must not take the driver down: answer it
                log.exception("contract call failed")
                box["error"] = (500, f"{type(exc).__name__}: {exc}")
                return []
            finally:
                token.run_sync_soon(done.set)

        self.node.driver.submit(proto, call)
        with trio.move_on_after(timeout):
            await done.wait()
        if "error" in box:
            raise ApiError(*box["error"])
        return box.get("ok")

    async def _offer(self, peer: str, kind: str, payload: bytes) -> None:
        """Offer a contract to ``peer`` over /keyswitch/contract/1; raises ApiError unless it agrees."""
        answer = await self._contract_answer(peer, kind, payload)
        if answer is None:
            raise ApiError(504, f"{peer} did not answer the contract offer in time")
        accepted, reason = answer
        if not accepted:
            raise ApiError(409, f"{peer} refused: {reason}")

    async def _contract_answer(self, peer: str, kind: str, payload: bytes) -> tuple[bool, str] | None:
        """Offer a contract to ``peer`` over /keyswitch/contract/1 and await its (accepted, reason); None when no
        answer came in time. The answer wakes us (``rfp.answer_listeners``, registered in the very call that
        makes the offer, so it cannot be missed): no polling."""
        rfp = self.stack.rfp
        token = trio.lowlevel.current_trio_token()
        answered = trio.Event()
        box: dict[str, int] = {}

        def offer(now: float):
            rid, cmds = rfp.offer_contract(peer, kind, payload, now)
            box["rid"] = rid
            rfp.answer_listeners.add(rid, lambda: token.run_sync_soon(answered.set))
            return cmds

        self.node.driver.submit(rfp, offer)
        with trio.move_on_after(35):  # the offer's own request times out sooner, with an answer saying so
            await answered.wait()
        rid = box.get("rid")
        if rid is None:
            return None
        self.node.driver.submit(rfp, lambda now: rfp.answer_listeners.discard(rid))
        return rfp.contract_answers.pop(rid, None)

    async def _who(self, peers: list[str]) -> None:
        run = self.stack.desk.run
        token = trio.lowlevel.current_trio_token()
        learnt = {p: trio.Event() for p in peers}

        def ask(now: float, p: str):
            run.known.pop(p, None)  # always asked afresh: a binding's keys root moves with the peer's deposits
            run.who_listeners.add(p, lambda: token.run_sync_soon(learnt[p].set))
            return run.who(p, now)

        for p in peers:
            await self._submit(run, lambda now, p=p: ask(now, p))
        with trio.move_on_after(15):  # woken as each binding is learnt (``run.who_listeners``): no polling
            for p in peers:
                await learnt[p].wait()
        for p in peers:
            self.node.driver.submit(run, lambda now, p=p: run.who_listeners.discard(p))
        missing = [p for p in peers if p not in run.known]
        if missing:
            raise ApiError(504, f"no attested binding from {', '.join(missing)} (see /v1/contracts refusals)")

    async def language_contract(self, kind: str, peer: str, give: str, take: str, chunks: int,
                                terms: dict[str, Any]) -> dict[str, Any]:
        """An escrow (we pay ``chunks`` of ``give`` to ``peer`` on ``terms['arbiter']``'s approval, refunded
        after ``refund_blocks``) or an option (we buy a call on ``chunks`` of ``peer``'s ``take``, paying in
        ``give``): the spec is built from attested bindings, agreed over /keyswitch/contract/1 and run over
        /keyswitch/contract-run/1, where the enclaves decide every release."""
        from node.contracts.spec import spec_id

        from libp2p.peer.id import ID

        desk = self.stack.desk
        arbiter = str(terms.get("arbiter", ""))
        for p in [peer] + ([arbiter] if kind == "escrow" else []):
            try:
                ID.from_base58(p)
            except Exception:
                raise ApiError(409, f"{p!r} is not a peer id") from None
        await self._who([peer] + ([arbiter] if kind == "escrow" else []))
        try:
            if kind == "escrow":
                if not arbiter or arbiter in (peer, self.stack.peer_id):
                    raise ValueError("an escrow needs an arbiter other than the payer and the payee")
                spec, summary = desk.plan_escrow(peer, arbiter, give, chunks, int(terms.get("refund_blocks", 100)))
            else:
                spec, summary = desk.plan_option(peer, give, take, chunks, int(terms.get("premium_chunks", 1)),
                                                 int(terms.get("premium_blocks", 20)),
                                                 int(terms.get("expiry_blocks", 100)))
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        except Exception as exc:  # a bug: say what, in the answer and the log
            log.exception("planning a %s failed", kind)
            raise ApiError(500, f"planning the {kind} failed: {type(exc).__name__}: {exc}") from None
        if terms.get("key_escrow"):  # our chunks' keys in shares held by other nodes (node.escrowdesk)
            spec, summary = await self.stack.escrow.attach(self, spec, summary, terms["key_escrow"])
        why = desk.reserve_spec(spec, self.clock.now())  # the peer's device, owner and class caps, held
        if why:
            raise ApiError(409, why)
        data = spec.encode()
        try:
            if kind == "escrow":
                await self._offer(arbiter, "arbiter", data)
            await self._offer(peer, kind, data)
        except BaseException:
            desk.unreserve_spec(spec)
            raise
        await self._submit(desk.run, lambda now: desk.feed_heights(now) + desk.run.start(spec, now))
        return {"state": "agreed", "contract": spec_id(spec).hex(), **summary}

    async def ring(self, give: str, legs: list[tuple[str, str]], chunks: int, deadline_blocks: int
                   ) -> dict[str, Any]:
        """A ring (stdlib ``ring``): we give ``chunks`` of ``give`` to the first peer of ``legs``, each
        ``(peer, asset)`` gives its chunks to the next, the last to us; agreed with every peer over
        /keyswitch/contract/1, run over /keyswitch/contract-run/1 (the enclaves decide every release)."""
        from node.contracts.spec import spec_id

        from libp2p.peer.id import ID

        desk = self.stack.desk
        for p, _ in legs:
            try:
                ID.from_base58(p)
            except Exception:
                raise ApiError(409, f"{p!r} is not a peer id") from None
        await self._who([p for p, _ in legs])
        try:
            spec, summary = desk.plan_ring(give, legs, chunks, deadline_blocks)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        why = desk.reserve_spec(spec, self.clock.now())  # our predecessor's device, owner and class caps, held
        if why:
            raise ApiError(409, why)
        data = spec.encode()
        try:
            for p, _ in legs:
                await self._offer(p, "ring", data)
        except BaseException:
            desk.unreserve_spec(spec)
            raise
        await self._submit(desk.run, lambda now: desk.feed_heights(now) + desk.run.start(spec, now))
        return {"state": "agreed", "contract": spec_id(spec).hex(), **summary}

    async def approve(self, contract: str, message: str) -> dict[str, Any]:
        """Sign ``message`` (an escrow arbiter's "release", an option buyer's "exercise") for a contract."""
        desk = self.stack.desk
        await self._submit(desk.run, lambda now: desk.approve(contract, message, now))
        return {"contract": contract, "approved": message}

    async def contract(self, peer: str, give: str, take: str, chunks: int, kind: str = "swap",
                       terms: dict[str, Any] | None = None) -> dict[str, Any]:
        """Plan a swap with ``peer`` from the offer book, agree it over /keyswitch/contract/1, start the
        release rounds; answers once the peer agreed (the rounds then run by themselves). ``kind`` escrow
        or option: see ``language_contract``."""
        from node.assets import ASSETS

        desk = self.stack.desk
        if kind not in ("swap", "escrow", "option", "ring"):
            raise ApiError(400, f"kind must be swap, escrow, option or ring, not {kind!r}")
        if peer == self.stack.peer_id:
            raise ApiError(400, "a contract needs another peer")
        if kind == "ring":  # terms: legs [(peer, asset)] in ring order, refund_blocks
            for a in [give] + [a for _, a in terms["legs"]]:
                if a not in ASSETS:
                    raise ApiError(400, f"unknown asset {a!r}")
            return await self.ring(give, list(terms["legs"]), chunks, int(terms.get("refund_blocks", 100)))
        if kind != "swap":
            for a in (give, take) if kind == "option" else (give,):
                if a not in ASSETS:
                    raise ApiError(400, f"unknown asset {a!r}")
            return await self.language_contract(kind, peer, give, take, chunks, terms or {})
        for a in (give, take):
            if a not in ASSETS:
                raise ApiError(400, f"unknown asset {a!r}")
        if peer == self.stack.peer_id:
            raise ApiError(400, "a swap needs another peer")
        try:
            schedule, summary = desk.plan_swap(peer, give, take, chunks)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        # the initiator's own caps on the peer named by hand: its device's reputation, device, owner and class
        # caps, checked and held from now (released if the offer comes to nothing, else when the contract ends)
        why = desk.reserve_swap(peer, schedule, self.clock.now())
        if why:
            raise ApiError(409, why)
        try:
            return await self._offer_swap(desk, peer, schedule, summary)
        except BaseException:
            desk.unreserve_swap(peer, schedule)
            raise

    async def _offer_swap(self, desk, peer: str, schedule, summary: dict[str, Any]) -> dict[str, Any]:
        answer = await self._contract_answer(peer, "swap", wire.encode(schedule))
        if answer is None:
            raise ApiError(504, "the peer did not answer the contract offer in time")
        accepted, reason = answer
        if not accepted:
            raise ApiError(409, f"the peer refused: {reason}")
        usd = desk.declared_usd(peer, schedule)
        self.node.driver.submit(desk.release, lambda now: desk.release.propose(peer, schedule, now, usd))
        return {"state": "agreed", **summary, "rounds": len(schedule.rounds)}

    def reputation(self) -> list[dict[str, Any]]:
        return self.stack.engine.reputation_table(self.clock.now())

    async def deposit(self, asset: str, chunks: int) -> dict[str, Any]:
        from node.assets import UnknownAsset
        from node.deposits import QuoteRefused, make_deposits

        x = self.stack.extra
        try:
            made = await trio.to_thread.run_sync(lambda: make_deposits(
                self.stack.enclave, x["ledger"], x["deposits"], asset=asset, chunks=chunks,
                chunk_usd_cents=x["chunk_usd_cents"], now=self.clock.now(), net=self.stack.net,
                peer_id=self.stack.peer_id, prices=x.get("prices")))  # priced with the node's feed
        except QuoteRefused as exc:
            raise ApiError(409, str(exc)) from None
        except (UnknownAsset, ValueError) as exc:
            raise ApiError(400, str(exc)) from None
        await trio.to_thread.run_sync(self.stack.refresh_offers, self.clock.now())
        self.node.driver.submit(self.stack.protocol,
                                lambda now: self.stack.protocol.set_own_sheet(self.stack.protocol.own, now))
        return {"deposits": [d.to_json() for d in made]}

    async def request(self, asset: str, usd: float, contract: str, give: str = "", wait: bool = True
                      ) -> dict[str, Any]:
        """Ask the network for proposals and choose; answers once the deadline has passed. With ``give``: a
        request to contracts (``node.requestdesk``): the chosen providers' chunks are swapped against ours of
        ``give``; its report once it ended (``wait``), else at once (its ``request_id`` names it)."""
        from node.assets import ASSETS
        from node.protocols.rfp import MAX_REQUEST_CENTS

        if asset not in ASSETS:
            raise ApiError(400, f"unknown asset {asset!r}")
        if give and give not in ASSETS:
            raise ApiError(400, f"unknown asset {give!r} (give)")
        if usd != usd or usd in (float("inf"), float("-inf")):
            raise ApiError(400, f"usd must be a finite number, got {usd!r}")
        cents = int(round(usd * 100))
        if len(contract) > 128:
            raise ApiError(400, "contract: at most 128 characters")
        if not 0 < cents <= MAX_REQUEST_CENTS:
            raise ApiError(400, f"usd must be in (0, {MAX_REQUEST_CENTS / 100:.0f}], got {usd!r}")
        if give:
            rid = self.requests.start(asset, cents, contract, give)
            return await self.requests.wait(rid, -1, math.inf, until_done=True) if wait else self.requests.report(rid)
        return (await self.choose(asset, cents, contract)).to_json()

    async def request_report(self, rid: str, version: int, timeout: float) -> dict[str, Any]:
        """A request to contracts' report; with ``version`` >= 0, once it changed since (or ``timeout``)."""
        if version < 0:
            return self.requests.report(rid)
        return await self.requests.wait(rid, version, timeout)

    async def choose(self, asset: str, cents: int, contract: str, exclude: frozenset[str] = frozenset()):
        """The requests-for-proposals round trip: the ``rfp.Chosen`` (leaving out offers of ``exclude``)."""
        rfp = self.stack.rfp
        box: dict[str, Any] = {}
        done, decided = trio.Event(), trio.Event()
        token = trio.lowlevel.current_trio_token()

        def call(now: float):
            try:
                rid, cmds = rfp.request(asset, cents, contract, now, deadline=self.stack.request_deadline,
                                        exclude=exclude)
                box["rid"] = rid
                rfp.result_listeners.add(rid, lambda: token.run_sync_soon(decided.set))
                if rid in rfp.results:  # (decided at once)
                    rfp.result_listeners.fire(rid)
            except ValueError as exc:
                box["error"] = str(exc)
                cmds = []
            token.run_sync_soon(done.set)
            return cmds

        self.node.driver.submit(rfp, call)
        with trio.move_on_after(5):
            await done.wait()
        if "rid" not in box:
            raise ApiError(429, box.get("error", "the node did not take the request in time"))
        rid = box["rid"]
        with trio.move_on_after(self.stack.request_deadline + 10):  # woken by the decision: no polling
            await decided.wait()
        self.node.driver.submit(rfp, lambda now: rfp.result_listeners.discard(rid))
        if rid not in rfp.results:
            raise ApiError(504, "no decision within the deadline")
        return rfp.results[rid]

    async def sweep(self, deposit: str, to: str) -> dict[str, Any]:
        """Withdraw one of this node's deposits to ``to``: the enclave exports the key to its owner
        (the one clear export it allows; the key is then never offered or released again), and the
        funds are swept at once. The key is used here and dropped, never logged or returned."""
        from node.ledger.base import LedgerError
        from node.tee.client import EnclaveRefused

        x = self.stack.extra
        try:
            pub = bytes.fromhex(deposit)
        except ValueError:
            raise ApiError(400, "deposit must be the hex public key of one of this node's deposits") from None
        if not to:
            raise ApiError(400, "empty destination address")
        match = [d for d in x["deposits"].all() if d.pubkey == pub]
        if not match:
            raise ApiError(404, "no such deposit on this node (see GET /v1/deposits)")
        d = match[0]
        from node.api.addresses import check_destination

        # before the enclave exports anything: a destination that is not an address of the deposit's chain
        # (another asset's or network's, a checksum error) would burn the funds
        canonical, why = check_destination(d.asset, to)
        if why is not None:
            raise ApiError(400, f"to: not a {d.asset} address to sweep to: {why}")
        to = canonical

        exports = Path(self.stack.extra["datadir"]) / "owner-exports"
        keep = exports / f"{d.asset}-{pub.hex()}.key"

        def work() -> str:
            from node.assets import export_key
            from node.fsutil import atomic_write

            secret = self.stack.enclave.export_to_owner(pub)
            try:
                # nothing lost on a failed sweep: the exported key is kept for its owner (0600) until the
                # sweep has gone through, then removed
                exports.mkdir(mode=0o700, exist_ok=True)
                atomic_write(keep, (export_key(d.asset, secret) + "\n").encode())
                txid = x["ledger"].sweep(d.asset, secret, to)
            finally:
                del secret
            keep.unlink()
            return txid

        try:
            txid = await trio.to_thread.run_sync(work)
        except EnclaveRefused as exc:
            raise ApiError(409, f"the enclave refused: {exc.reason}") from None
        except LedgerError as exc:
            raise ApiError(409, f"the ledger refused the sweep ({exc}); the key was exported to its owner "
                                f"and kept in {keep} (mode 0600): sweep it with a wallet") from None
        await trio.to_thread.run_sync(self.stack.refresh_offers, self.clock.now())
        self.stack.protocol.own.retracted.append(pub)
        self.node.driver.submit(self.stack.protocol,
                                lambda now: self.stack.protocol.set_own_sheet(self.stack.protocol.own, now))
        return {"txid": txid, "asset": d.asset, "to": to}


# ----------------------------------------------------------------- the daemon
async def run_daemon(cfg: cfgmod.Config, *, republish: float = 60.0, out=sys.stdout,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the node until SIGINT/SIGTERM (or cancellation). ``task_status.started(node)`` once ready."""
    from node import identity, logs
    from node.api.app import build_app, serve, write_cookie
    from node.clock import SystemClock
    from node.metrics import NodeMetrics
    from node.runtime.driver import run_host
    from node.runtime.node import NodeConfig

    datadir = Path(cfg.datadir)
    clock = SystemClock()
    peer_id = identity.peer_id(datadir)
    logs.bind_peer(peer_id)
    from node.deposits import DepositStore, open_ledger

    from node.assets.feeds import build_feed

    prices = build_feed(cfg, datadir=datadir)  # the node's one price feed: a bad prices.* setting stops the start
    await trio.to_thread.run_sync(prices.refresh, clock.now())  # first fetch (HTTP sources) off the event loop
    ledger = open_ledger(cfg)  # first: an unreachable EVM node (ledger.evm_url) stops the start with its reason
    try:
        stack = make_offer_stack(datadir, cfg["network.net"], peer_id, republish=republish,
                                 republish_max=cfg["network.republish_max"], backend=cfg["tee.backend"],
                                 broken=cfg.get("tee.broken", ""), offers=offer_settings(cfg, prices))
    except BaseException:
        ledger.close()
        raise
    stack.extra["prices"] = prices  # deposits, kept keys, proposals and contracts price with this same object
    print(f"prices: {prices.source} (prices.max_age={prices.max_age:g} s)", file=out, flush=True)
    for s_ in prices.sources:
        if s_.error:
            print(f"prices: {s_.name}: {s_.error}", file=out, flush=True)
    for asset, backend in getattr(ledger, "describe", dict)().items():
        print(f"ledger: {asset} on {backend}", file=out, flush=True)
    stack.extra.update(ledger=ledger, deposits=DepositStore(datadir / "deposits.sqlite"), datadir=datadir,
                       chunk_usd_cents=int(round(cfg["deposits.chunk_usd"] * 100)))
    stack.refresh_offers(clock.now())
    add_switchboard(stack, datadir, cfg)
    from node.swaps import SwapDesk

    stack.desk = SwapDesk(stack, clock=clock, claim_policy=cfg["claims.policy"],  # claim keys: claim.seed
                          prices=prices, price_tolerance=cfg["risk.price_tolerance"],
                          allowed_hashes=cfg["contracts.allowed_hashes"])
    stack.refresh_offers(clock.now())  # kept keys a crash left unadopted are offered at once
    from node.protocols.outcomes import tap_release_records

    tap_release_records(stack.desk.release, stack.outcomes.records)  # what our outcome reports carry
    from node.escrowdesk import EscrowDesk

    stack.escrow = EscrowDesk(stack, clock)  # /keyswitch/key-escrow/1: holder, owner, recovery
    metrics = NodeMetrics()
    url_file = datadir / "api.url"
    try:
        async with trio.open_nursery() as nursery:
            ncfg = NodeConfig.from_config(cfg, app_score=lambda pid: stack.engine.app_score(pid, clock.now()))
            protocols = [stack.protocol, stack.rfp, stack.revocations, stack.outcomes, stack.desk.release,
                         stack.desk.run, stack.escrow.proto]
            node = await nursery.start(functools.partial(run_host, ncfg, protocols, on_notify=stack.desk.on_notify))
            stack.desk.node = node
            services = NodeServices(node, stack, clock, clock.now())
            from node.requestdesk import RequestDesk

            services.requests = RequestDesk(services, nursery)  # requests to contracts (request --give)
            cookie = write_cookie(datadir)
            url = await nursery.start(lambda task_status: serve(build_app(services, cookie, metrics=metrics),
                                                                port=cfg["api.port"], task_status=task_status))
            url_file.write_text(url + "\n")
            print(f"API listening on {url}", file=out, flush=True)
            for a in node.listen_addrs:
                print(f"swarm listening on {a}", file=out, flush=True)
            if cfg["api.metrics_port"]:
                from node.api.app import build_metrics_app

                murl = await nursery.start(lambda task_status: serve(build_metrics_app(metrics),
                                                                     port=cfg["api.metrics_port"],
                                                                     task_status=task_status))
                print(f"metrics on {murl}/metrics", file=out, flush=True)
            node.driver.submit(stack.protocol, lambda now: stack.protocol.set_own_sheet(stack.protocol.own, now))
            print(f"ready {peer_id}", file=out, flush=True)
            task_status.started(node)

            async def gauges() -> None:
                exported: dict[tuple[str, str], int] = {}
                ticks = 0
                topic = stack.protocol.topic
                while True:
                    metrics.peers.set(len(node.connected_peers()))
                    metrics.set_gossip(node.gossip_health(), node.pubsub.counters if node.pubsub else {})
                    metrics.offers.labels(asset="all").set(stack.book.count(now=clock.now()))
                    counts = {("accept", ""): stack.protocol.stats["accept"]}
                    for result, reasons in stack.protocol.reasons.items():
                        for reason, n in reasons.items():
                            counts[(result, reason)] = n
                    for (result, reason), n in counts.items():
                        delta = n - exported.get((result, reason), 0)
                        if delta > 0:
                            metrics.gossip.labels(topic=topic, direction="in", result=result,
                                                  reason=reason).inc(delta)
                            exported[(result, reason)] = n
                    for event, n in stack.rfp.stats.items():
                        metrics.requests.labels(event=event).set(n)
                    metrics.revocations.set(len(stack.revocations.applied))
                    states: dict[str, int] = {"proposed": 0, "running": 0, "done": 0, "withheld": 0, "failed": 0}
                    for c in list(stack.desk.release.contracts.values()):  # (handles run on a worker thread)
                        states[c.rec.state] = states.get(c.rec.state, 0) + 1
                    for st_, n in states.items():
                        metrics.contracts.labels(state=st_).set(n)
                    totals: dict[tuple[str, str], int] = {("releases", ""): 0}
                    for c in list(stack.desk.release.contracts.values()):  # (handles run on a worker thread)
                        if c.outcome is not None:
                            totals[("releases", "")] += c.outcome.released
                            for ch in c.outcome.chunks:
                                if ch.status in ("claimed", "double-spent", "kept"):
                                    totals[("claims", ch.status)] = totals.get(("claims", ch.status), 0) + 1
                    for kind, n in stack.outcomes.by_kind.items():
                        totals[("outcomes", kind)] = n
                    for (what, label), n in totals.items():
                        delta = n - exported.get((what, label), 0)
                        if delta > 0:
                            exported[(what, label)] = n
                            if what == "releases":
                                metrics.releases.inc(delta)
                            elif what == "claims":
                                metrics.claims.labels(result=label).inc(delta)
                            else:
                                metrics.outcomes.labels(kind=label).inc(delta)
                    if ticks % 10 == 0:  # the reputation table can be large: every 10 s
                        now = clock.now()
                        recs = stack.engine.reputation.devices()
                        metrics.set_reputation([r.score_at(now, stack.engine.reputation.half_life)
                                                for r in recs if not r.cheater],
                                               sum(1 for r in recs if r.cheater))
                    ticks += 1
                    await trio.sleep(1.0)

            async def heights() -> None:
                """Ledger heights for the language contracts' time-locks (the enclaves trust us for them)."""
                while True:
                    node.driver.submit(stack.desk.run, stack.desk.feed_heights)
                    await trio.sleep(1.0)

            async def offers_refresher() -> None:
                """Deposits confirm after the fact on a ledger with blocks (and funds can vanish):
                every few seconds, re-derive this node's offers and publish when they changed."""
                while True:
                    await trio.sleep(5.0)
                    before = stack.offered()
                    try:
                        await trio.to_thread.run_sync(stack.refresh_offers, clock.now())
                    except Exception as exc:  # an unreachable ledger server: try again later
                        log.warning("offers refresh failed: %s", exc)
                        continue
                    if stack.retract_gone(before):  # in the event loop, as the protocol's own publishing
                        node.driver.submit(stack.protocol,
                                           lambda now: stack.protocol.set_own_sheet(stack.protocol.own, now))

            async def prices_refresher() -> None:
                """The price sources are fetched in a worker thread, never in the event loop; ``price()``
                answers from the last good values meanwhile (and refuses once all are older than prices.max_age)."""
                while True:
                    await trio.sleep(cfg["prices.refresh"])
                    await trio.to_thread.run_sync(prices.refresh, clock.now(), abandon_on_cancel=True)
                    for s_ in prices.sources:
                        if s_.error:
                            log.warning("prices: %s: %s", s_.name, s_.error)

            nursery.start_soon(gauges)
            nursery.start_soon(prices_refresher)
            nursery.start_soon(offers_refresher)
            nursery.start_soon(heights)
            nursery.start_soon(stack.escrow.run, node)
            await node.stopped.wait()
            nursery.cancel_scope.cancel()
    finally:
        for f in (url_file, datadir / ".cookie"):
            try:
                f.unlink()
            except FileNotFoundError:
                pass
        stack.close()
        print("stopped", file=out, flush=True)


async def _main(cfg: cfgmod.Config, republish: float) -> None:
    async with trio.open_nursery() as nursery:
        node = await nursery.start(lambda task_status: run_daemon(cfg, republish=republish, task_status=task_status))

        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                n = 0
                async for sig in sigs:
                    n += 1
                    if n == 1:
                        print(f"{signal.Signals(sig).name}: shutting down (again to force)", file=sys.stderr,
                              flush=True)
                        node.stop()
                        nursery.start_soon(_deadline)
                    else:
                        print("forced exit", file=sys.stderr, flush=True)
                        os._exit(130)

        async def _deadline() -> None:
            await trio.sleep(SHUTDOWN_DEADLINE)
            print(f"shutdown took over {SHUTDOWN_DEADLINE:.0f} s: forcing", file=sys.stderr, flush=True)
            os._exit(1)

        nursery.start_soon(signals)
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


def main(cfg: cfgmod.Config, *, republish: float = 60.0) -> None:
    from node.ledger.base import LedgerError

    failed = ""
    try:
        trio.run(_main, cfg, republish)
    except* LedgerError as eg:  # the ledger the node cannot start without (an unreachable EVM node)
        failed = "; ".join(str(e) for e in eg.exceptions)
    if failed:
        print(f"error: {failed}", file=sys.stderr, flush=True)
        raise SystemExit(3)
