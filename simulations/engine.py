"""The virtual engine: the node's own sans-IO protocols on a virtual clock.

A discrete-event loop (``heapq`` of ``(time, seq, kind, payload)``) drives,
per *full* node, the same objects a real node runs: ``OffersProtocol`` over an
in-memory ``OfferBook(None)``, ``RfpProtocol`` over a ``RiskEngine`` (with its
``Reputation``, caps and allocator). Publishing nodes hold a real
``InProcessEnclave`` (seeded, in memory: real secp256k1 signatures, a real
simulated quote) whose deposits are made on one in-process ``DevLedger``, so
every sheet is checked by ``validate_sheet`` exactly as on the wire.

Measured before choosing this: an ``InProcessEnclave`` takes ~1 ms to create
and a deposit ~0.75 ms per chunk on the ``DevLedger``, so every publisher gets
a real one (no lightweight stand-in). The ledger funds the deposits (faucet,
automine); with no contract layer yet it is not consulted again during a run.

What lets 10,000 nodes and a simulated day fit on two cores (answers unchanged, byte for byte: the
same seed gives the same ``summary.json`` and ``events.jsonl`` as before these were added):

* each full node's book counts changes to its rows (``version``), so its ``RiskEngine`` reuses the
  candidate table while the book is unchanged, and the per-device scores and headrooms while its
  reputation and caps are unchanged and every score involved is 0 (a node that never held a contract);
* ``allocate`` is a pure function of its inputs, and nodes with the same book and the same view answer a
  request with the same seed (its id): one answer per distinct input, shared in the process;
* pure checks are memoised across nodes (same inputs, same answer): attestation verdicts, address
  derivations, Ed25519 signature checks (``node.peerkey`` caches them; a real node gains from that
  only for a request it checks twice) and sheet signatures (``memoised_sheet_signatures``: the 100 full
  nodes check each sheet's once between them). So the engine's CPU is not the sum of the nodes' CPU;
* a full node's book, like a daemon's, writes only the sheet's own row for a re-announced sheet whose
  offers are the ones it stored from that origin last, none expired or gone (``OfferBook.apply_sheet``);
* churn re-filters the mesh with numpy instead of rebuilding it, and a gossip message is pushed as
  events only to the full nodes it reaches; a spammer pruned by every mesh peer only advances its RNG draws.

And one protocol change that real daemons run too (``node.protocols.rfp``, request version 2, responder
sortition): a request draws about ``requests.proposals`` (default 16) of the full nodes to answer, by a hash
of (request id, peer id) under a share the client learns from earlier answers, instead of every one of the
~97 that can. That cuts ~60 allocations per request to ~13; the answers change (fewer proposals), the
outcome metrics of day.toml do not get worse (simulations/README.md, "Scale"). ``requests.proposals = 0``
runs the old every-peer-answers protocol.

Measured on the shared 2-core machine (``python -m benchmarks.sim``, and the whole of ``day.toml``): see
simulations/README.md, "Scale". ``scenarios/day.toml`` states a day of activity, the daemon's
re-announcement of unchanged sheets included (``OffersProtocol``'s back-off: 60 s, doubling to 30 min).

Gossip model (gossipsub-like):

* every node has a mesh of about ``mesh_degree`` (D) peers on the topics
  (a random graph, degree D up to ``mesh_degree_max``), fixed per run apart
  from churn and pruning;
* a message is forwarded by a node to its mesh peers only after ``validate``
  returned ACCEPT, once (dedup by message id), each hop costing the sampled
  one-way link latency plus ``validation_ms``. With first-arrival dedup this
  flood is exactly the earliest-arrival (shortest-path) time over the mesh, so
  each message's spread is computed in one Dijkstra (scipy, in C) over
  per-message sampled link latencies instead of one Python event per hop;
* a lost transmission (probability ``loss``) is recovered as gossipsub's
  IHAVE/IWANT does: at the sender's next heartbeat (uniform wait up to
  ``heartbeat``) plus two more one-way latencies;
* a node that receives a REJECTed message from a peer counts it against that
  peer and prunes it from its mesh after ``PRUNE_AFTER_REJECTS`` (the effect of
  gossipsub's P4 invalid-message penalty and graylisting).

Simplifications, stated:

* Only *full* nodes (``network.full_nodes``) hold an offer book, a risk engine
  and the RFP protocol; the others (bootstrap and relay nodes) only forward.
  Whether a relay forwards is decided by one *reference validator* per message
  (the same ``validate_sheet`` / ``validate_request`` with a shared
  attestation cache and seq table), computed when the message is published:
  honest nodes reach the same verdict on the same bytes, and every full node
  re-validates with its own protocol on arrival (disagreements are counted as
  ``verdict_mismatch``). This is what lets 10,000 nodes fit on two cores.
* Stream requests (proposals) take one sampled one-way latency each way;
  ``loss`` does not apply to them (a stream retransmits).
* Contracts, by default (``requests.contracts = "model"``): a successful choice is *held* as
  exposure by the client's risk engine for ``contract_seconds``, then
  released, and each device in it is credited ``Action.CLAIMED`` (or, for a
  withholder or broken TEE, as in the next items). With ``"real"`` each contract
  runs the release code instead (``simulations.contracts``: the swap protocol
  between the devices' enclaves, outcomes and reports from the code).
* Outcome reports and revocations (scenarios with a ``slanderer``,
  ``withholder``, ``broken_tee`` or ``revoked_class``): every full node also
  runs ``OutcomesProtocol`` (``ledger_check`` is ``node.app.stack.ledger_check``
  on the shared ``DevLedger``) and/or ``RevocationProtocol`` (the issuer a
  configured, opted-into signer), with ``OffersProtocol.refuse`` set as
  ``node.app.stack.make_revocations`` sets it. A full node learns a device (so
  that device's reports are weighed) when it ACCEPTs the device's sheet: the
  engine calls ``Reputation.observe`` then, standing in for "attestation
  verified here"; the reference validator of the relays likewise knows a
  reporter once it has accepted its sheet. Clients (requesters) offer deposits
  in those scenarios so that their enclave-signed reports are weighed. Relays
  keep forwarding the sheets of a revoked device or class (they hold no risk
  engine); full nodes IGNORE them, counted as ``revoked_ignored``, not as a
  verdict mismatch.
* Withholding and double-spending (model contracts) happen at the simplified contract's end
  (above): a withholder's counterparty applies ``Action.WITHHELD`` and
  gossips a ``withheld`` report instead of crediting ``CLAIMED``; a broken
  TEE's deposit is swept on the ``DevLedger`` with the key exported from its
  enclave, and the client gossips a ``double-spent`` report naming that spend
  (and, having seen the ledger itself, marks the device a cheater at once).
  There is no key-release round, no sweep by the client and no escrow.
* Device classes are simulation ground truth (a table from the enclave's
  signing key to the class drawn from ``devices``), standing in for the
  platform a real quote would name; all sim quotes verify as ``sim``.
* Churn: an offline node neither receives nor forwards nor publishes; its mesh
  links come back when it does (rejoining through a bootstrap node is not
  modelled: bootstrap nodes are relays like the others). Requesters do not churn.
  A full node that comes back gets ``PeerConnected`` for each online mesh peer, so its ``OffersProtocol``
  pulls the latest sheets from each (``/keyswitch/<net>/sheets/1``) and validates them as gossip. A full
  peer answers with its own protocol (rate limits included); a relay answers through the same
  ``answer_pull`` from the sheets the reference validator accepted (the latest per origin: what a relay
  that never went offline holds), without rate limits; bootstrap nodes and adversaries do not speak the
  protocol. At the start nobody pulls (nobody holds a sheet yet).
* Re-publication, as the daemon does it: a publisher's ``OffersProtocol`` re-announces its unchanged sheet
  after ``deposits.republish`` s, then twice as late each time up to ``deposits.republish_max`` (the
  protocol's own timer and back-off); a changed sheet goes through ``set_own_sheet`` (published at once,
  the back-off restarted). With ``deposits.keep_offers = true`` an offer keeps its identity until half its
  lifetime is gone, as ``node.app.stack``'s ``refresh_offers`` does, and is then renewed at the current price
  (the daemon keeps the deposit-time value) at most ``REFRESH_LAG`` (the refresher's 5 s) later. With
  ``false`` (the default of the small scenarios) every re-announcement tick re-prices the offers, which
  is a change each time: one sheet per ``republish`` s, no back-off. Deposits never move (contracts
  hold exposure, they spend nothing), so no other change happens between renewals.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import random
import warnings
from decimal import Decimal
from typing import Callable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from node.clock import ManualClock
from node.protocols.base import (
    GossipReceived, Notify, PeerConnected, Publish, RequestReceived, ResponseReceived, Result, SendRequest, Started,
    TimerFired,
)
from node.protocols.interpret import Interpreter, LedgerAdapters
from simulations.simnode import (
    LATENCY_BINS, Metrics, SimNode, SimTransport, counting_book, memoised_sheet_signatures,
)
from simulations.summary import EngineSummary

PRUNE_AFTER_REJECTS = 3
REFRESH_LAG = 5.0  # node.app.daemon's offers_refresher re-derives the offers every 5 s: a renewal is seen that late


@contextlib.contextmanager
def quiet_node_logs():
    """Keep thousands of simulated nodes' warnings off the screen while the block runs, then the level as it was:
    the simulator's programs run inside it (``simulations.__main__.main``, a sweep's worker); an ``Engine`` built
    elsewhere (a test) leaves the process's logging as it found it."""
    ks = logging.getLogger("keyswitch")
    before = ks.level
    ks.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ks.setLevel(before)


class Engine(EngineSummary):
    def __init__(self, sc: dict, *, log: Callable[[dict], None] | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        self.sc = sc
        self.seed = sc["run"]["seed"]
        self.rng = random.Random(self.seed)
        self.nprng = np.random.default_rng(self.seed)
        self.t0 = float(sc["run"]["start_time"])
        self.now = self.t0
        self.clock = ManualClock(self.t0)
        self.net = sc["run"]["net"]
        self.log = log or (lambda rec: None)
        self.progress = progress
        self.heap: list = []
        self._seq = 0
        self.m = Metrics()
        self.nodes: list[SimNode] = []
        self.by_peer: dict[str, int] = {}
        self.calls: dict[int, tuple] = {}
        self._interp = None  # the one interpreter (``run_cmds``), made on first use
        self._call_id = 0
        self.device_kind: dict[bytes, str] = {}  # device id -> honest | sybil
        self.device_class_of: dict[bytes, str] = {}  # enclave sign_pub -> class (ground truth)
        self.device_limit: dict[bytes, int] = {}  # device id -> its class's starting limit (cents)
        self.requesters: list[int] = []
        self.spammers: list[int] = []
        self.forgers: list[int] = []
        self.role: dict[int, str] = {}  # full node idx -> slanderer | withholder | broken_tee
        adv = sc["adversaries"]
        # outcome reports are gossiped (and checked on the ledger) when an adversary is about them
        self.reports_on = any(k in adv for k in ("slanderer", "withholder", "broken_tee"))
        self.contracts = None  # simulations.contracts.ContractLayer when contracts run the release code
        if sc["requests"]["contracts"] == "real":
            from simulations.contracts import ContractLayer

            self.contracts = ContractLayer(self)
            self.reports_on = True  # contract outcomes are reported, as daemons do
        self.revoke_cfg = adv.get("revoked_class")
        from node.peerkey import PeerSigner

        self.issuer = PeerSigner(hashlib.sha256(b"keyswitch-sim/revocation-issuer/%d" % self.seed).digest())
        self._forged: set[bytes] = set()
        self._sheet_origin: dict[bytes, int] = {}
        self._ref_seen_reports: set[bytes] = set()
        self._ref_known: set[bytes] = set()
        self._ref_seen_notices: set[bytes] = set()
        self.completed_over_time: list[tuple[float, int, int]] = []  # (t, ok so far, decided so far)
        self._verify_sheet_sig = memoised_sheet_signatures()
        self._build()

    # ------------------------------------------------------------ setup
    def _build(self) -> None:
        from node.ledger.devnet import DevLedger
        from node.protocols.offers import AttestationCache, default_attestation_verifier
        from node.attest.policy import AttestationPolicy

        sc, net = self.sc, self.sc["network"]
        self.lat = net["latency_ms"]
        self.ledger = DevLedger(None, automine=True)
        # one reference validator for the relays (and attestation verdicts it caches)
        # Pure checks memoised across nodes (same inputs, same answer): the verdict on a (quote, binding)
        # pair (offer addresses: node.protocols.offers.ADDRESSES). Each node still keeps its own AttestationCache, so
        # it still asks once per device; only the repeated cryptography is shared. The memo ignores the
        # verification time (a sim quote stays fresh for the policy's 7 days, longer than any run).
        self._verify_attestation = default_attestation_verifier(AttestationPolicy.dev())
        self._verdicts: dict[bytes, object] = {}
        # enclave sign_pub -> its attested encryption key, from the bindings of the quotes verified (shared by
        # the full nodes as the verdict memo is)
        self._enc_keys: dict[bytes, bytes] = {}
        self._enc_key_of = self._enc_keys.get
        self.ref_cache = AttestationCache(self._shared_verify)
        self.ref_seq: dict[str, int] = {}
        from node.protocols.offers import SheetStore

        self.ref_sheets = SheetStore()  # the latest accepted sheet per origin, as a relay holds it for pulls
        self.ref_seen_requests: set[bytes] = set()
        kinds = (["bootstrap"] * net["bootstrap"] + ["full"] * net["full_nodes"]
                 + ["relay"] * (net["nodes"] - net["bootstrap"] - net["full_nodes"]))
        for name in ("spammer", "sybil", "forger"):
            cfg = sc["adversaries"].get(name)
            if cfg:
                kinds += [name] * cfg["nodes"]
        full_ix = [i for i, k in enumerate(kinds) if k == "full"]
        n_offer = round(sc["deposits"]["offering_share"] * len(full_ix))
        offering = set(self.rng.sample(full_ix, n_offer))
        nreq = sc["requests"]["requesters"]
        self.requesters = sorted(self.rng.sample(full_ix, nreq))
        if self.reports_on:
            # a report is signed by the client's enclave and weighed only if its device is known: clients offer too
            offering |= set(self.requesters)
            pool = sorted(offering - set(self.requesters))
            self.rng.shuffle(pool)
            from simulations.scenario import ROLE_ADVERSARIES

            for name in ROLE_ADVERSARIES:
                for _ in range(sc["adversaries"].get(name, {}).get("nodes", 0)):
                    self.role[pool.pop()] = name
        classes = sorted(sc["devices"])
        weights = [sc["devices"][c] for c in classes]
        from node.peerkey import PeerSigner

        for i, kind in enumerate(kinds):
            signer = PeerSigner(hashlib.sha256(b"keyswitch-sim/peer/%d/%d" % (self.seed, i)).digest())
            node = SimNode(i, signer.peer_id, kind, full=(kind == "full"))
            node.signer = signer
            self.nodes.append(node)
            self.by_peer[node.peer_id] = i
            if kind == "full":
                self._make_full(node)
            if (kind == "full" and i in offering) or kind == "sybil":
                if kind == "sybil":
                    cfg = sc["adversaries"]["sybil"]
                    dclass, chunks, usd = cfg["device_class"], cfg["chunks_per_node"], cfg["chunk_usd"]
                else:
                    dclass = self.rng.choices(classes, weights)[0]
                    chunks, usd = sc["deposits"]["chunks_per_node"], self.rng.choice(sc["deposits"]["chunk_usd"])
                self._make_publisher(node, dclass, chunks, round(usd * 100))
            if kind == "spammer":
                self.spammers.append(i)
            if kind == "forger":
                self.forgers.append(i)
        self._build_mesh()
        self._full_mask = np.fromiter((x.full for x in self.nodes), dtype=bool, count=len(self.nodes))
        self._alive = np.ones(len(self.nodes), dtype=bool)  # node.alive, as an array (set with it)

    def _shared_verify(self, quote: bytes, binding, now: float):
        key = hashlib.sha256(quote + binding.encode()).digest()
        v = self._verdicts.get(key)
        if v is None:
            v = self._verdicts[key] = self._verify_attestation(quote, binding, now)
            if getattr(v, "ok", False):
                self._enc_keys[binding.sign_pub] = binding.enc_pub
        return v

    def _book_class(self, body) -> str:
        return self.device_class_of.get(body.binding.sign_pub, "sim")

    def _make_full(self, node: SimNode) -> None:
        from node.protocols.offers import AttestationCache, OffersProtocol
        from node.protocols.rfp import RfpProtocol
        from node.risk.allocate import Limits
        from node.risk.engine import RiskEngine
        from node.risk.reputation import Reputation

        q = self.sc["requests"]
        node.book = counting_book(self._book_class)
        node.offers = OffersProtocol(
            net=self.net, book=node.book, attestations=AttestationCache(self._shared_verify),
            republish_interval=self.sc["deposits"]["republish"], republish_max=self.sc["deposits"]["republish_max"],
            verify_sig=self._verify_sheet_sig)
        limits = Limits(q["max_per_device"], q["max_share_device"], q["max_share_owner"])
        node.engine = RiskEngine(node.book, Reputation(None), limits=limits, seed=self.seed * 1_000_003 + node.idx)
        node.rfp = RfpProtocol(net=self.net, engine=node.engine, sign=node.signer.sign,
                               target_proposals=q["proposals"], prices=self)  # the scenario's prices are ours
        if self.reports_on:
            from node.app.stack import ledger_check
            from node.protocols.outcomes import OutcomesProtocol

            # the attested encryption key of each enclave (bound by the quote in its verified sheets)
            node.outcomes = OutcomesProtocol(net=self.net, engine=node.engine,
                                             ledger_check=lambda r: ledger_check(self.ledger, r),
                                             enc_key_of=self._enc_key_of)
        if self.revoke_cfg is not None:
            from node.protocols.revocation import RevocationProtocol, TrustConfig

            # the issuer is a configured signer and the operator opted in (risk.accept_signed_revocations)
            node.revocations = RevocationProtocol(net=self.net, engine=node.engine,
                                                  trust=TrustConfig(frozenset({self.issuer.peer_id}), True))
        if self.reports_on or self.revoke_cfg is not None:
            from node.stores.offerbook import device_id_of

            def refuse(body, node=node) -> str | None:  # as node.app.stack.make_revocations sets it up
                dev = device_id_of(body.binding.sign_pub)
                if node.engine.reputation.is_cheater(dev):
                    return f"device {dev.hex()[:16]} is revoked"
                why = node.engine.caps.classes.is_revoked(node.book.device_class(body))
                return f"its class is revoked: {why}" if why else None

            node.offers.refuse = refuse

    def _make_publisher(self, node: SimNode, dclass: str, chunks: int, chunk_cents: int) -> None:
        from node.app.deposits import DepositStore, make_deposits
        from node.stores.offerbook import OfferBook, device_id_of
        from node.protocols.offers import OffersProtocol
        from node.tee.client import InProcessEnclave

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seed = hashlib.sha256(b"keyswitch-sim/enclave/%d/%d" % (self.seed, node.idx)).digest()
            node.enclave = (InProcessEnclave(None, clock=self.clock, seed=seed) if self.contracts is None
                            else self.contracts.enclave(node, seed))
        if node.offers is None:  # a publisher that keeps no book of its own (sybils)
            node.book = OfferBook(None)
            node.offers = OffersProtocol(net=self.net, book=node.book, attestations=None,
                                         republish_interval=self.sc["deposits"]["republish"],
                                         republish_max=self.sc["deposits"]["republish_max"])
        asset = self.rng.choice(self.sc["assets"])["symbol"]
        store = DepositStore(None)
        node.deposits = make_deposits(node.enclave, self.ledger, store, asset=asset, chunks=chunks,
                                      chunk_usd_cents=chunk_cents, now=self.now, prices=self._prices(),
                                      net=self.net, peer_id=node.peer_id)
        info = node.enclave.info()
        node.device_id = device_id_of(info.sign_pub)
        node.device_class = dclass
        self.device_class_of[info.sign_pub] = dclass
        self.device_kind[node.device_id] = ("sybil" if node.kind == "sybil"
                                            else self.role.get(node.idx, "honest"))
        from node.risk.classes import ClassRegistry

        self.device_limit[node.device_id] = ClassRegistry().resolve(dclass).limit_cents(0.0)
        if self.contracts is not None:
            self.contracts.attach(node)

    def price(self, asset: str, at: float):
        """The scenario's price of ``asset`` now (a ``PriceFeed``: each node's own price)."""
        return self._prices().price(asset, at)

    def _prices(self):
        from node.assets.prices import StaticPrices

        table = {a["symbol"]: str(self._price(a["symbol"])) for a in self.sc["assets"]}
        return StaticPrices(table, at=self.now, source="scenario")

    def _price(self, symbol: str) -> Decimal:
        """The scenario's price path, piecewise linear in simulated seconds since the start."""
        path = next(a["price_path"] for a in self.sc["assets"] if a["symbol"] == symbol)
        t = self.now - self.t0
        if t <= path[0][0]:
            return Decimal(str(path[0][1]))
        for (t1, p1), (t2, p2) in zip(path, path[1:]):
            if t <= t2:
                f = (t - t1) / (t2 - t1) if t2 > t1 else 1.0
                return Decimal(str(round(p1 + (p2 - p1) * f, 8)))
        return Decimal(str(path[-1][1]))

    def _own_sheet(self, node: SimNode, fresh: bool = False):
        """The publisher's sheet at the current price (what ``OfferStack.refresh_offers`` does on a node);
        ``fresh``: a new binding and quote (its deposit keys changed)."""
        from node.assets.prices import Price, usd_value_cents
        from node.protocols.offers import Offer, OwnSheet

        ttl = self.sc["deposits"]["offer_ttl"]
        offers = []
        own = node.offers.own
        kept = {o.pubkey: o for o in own.offers} if own is not None and self.sc["deposits"]["keep_offers"] else {}
        for d in node.deposits:
            old = kept.get(d.pubkey)
            if old is not None and old.expiry - self.now > ttl / 2:  # as node.app.stack's refresh_offers
                offers.append(old)
                continue
            p = Price(d.asset, self._price(d.asset), self.now, "scenario")
            offers.append(Offer(d.asset, d.address, d.pubkey, d.amount, max(1, usd_value_cents(d.asset, d.amount, p)),
                                str(p.usd_per_unit), self.now, self.now + ttl))
        if own is None or fresh:
            committed = node.enclave.held_pubkeys()  # what the binding's keys_root commits to (sheets carry it)
            binding = node.enclave.binding_for(self.net, node.peer_id)
            quote = node.enclave.quote(binding, now=self.now)
            return OwnSheet(offers, [], quote, binding, node.enclave.sign_offer_sheet, committed)
        return OwnSheet(offers, [], own.quote, own.binding, own.sign, own.committed)

    def _build_mesh(self) -> None:
        net = self.sc["network"]
        n, d, dmax = len(self.nodes), net["mesh_degree"], net["mesh_degree_max"]
        self.adj: list[set[int]] = [set() for _ in range(n)]
        order = list(range(n))
        self.rng.shuffle(order)
        for i in order:
            tries = 0
            while len(self.adj[i]) < min(d, n - 1) and tries < 20 * d:
                tries += 1
                j = self.rng.randrange(n)
                if j == i or j in self.adj[i] or len(self.adj[j]) >= dmax:
                    continue
                self.adj[i].add(j)
                self.adj[j].add(i)
        self.initial_adj = [frozenset(a) for a in self.adj]
        self._graph_dirty = self._mesh_dirty = True

    def _graph(self):
        """The mesh among online nodes as CSR (neighbours sorted): the full mesh is laid out again only when a
        link is pruned; churn only re-filters it by who is online."""
        if self._graph_dirty:
            n = len(self.nodes)
            if self._mesh_dirty:
                lens = np.fromiter((len(a) for a in self.adj), dtype=np.int64, count=n)
                self._mesh_rows = np.repeat(np.arange(n, dtype=np.int32), lens)
                self._mesh_cols = np.fromiter((j for a in self.adj for j in sorted(a)), dtype=np.int32,
                                              count=int(lens.sum()))
                self._mesh_dirty = False
            alive = self._alive
            keep = alive[self._mesh_rows] & alive[self._mesh_cols]
            self._indices = self._mesh_cols[keep]
            self._indptr = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(np.bincount(self._mesh_rows[keep], minlength=n), out=self._indptr[1:])
            self._online = int(alive.sum())
            self._graph_dirty = False
        return self._indptr, self._indices

    # ------------------------------------------------------------ latency
    def _lat(self, size: int) -> np.ndarray:
        """One-way link latencies in seconds."""
        lat = self.lat
        if lat["dist"] == "constant":
            ms = np.full(size, float(lat["value"]))
        elif lat["dist"] == "uniform":
            ms = self.nprng.uniform(lat["min"], lat["max"], size)
        else:
            ms = lat["median"] * np.exp(lat["sigma"] * self.nprng.standard_normal(size))
        return ms / 1000.0

    def _hop_weights(self, size: int) -> np.ndarray:
        net = self.sc["network"]
        w = self._lat(size) + net["validation_ms"] / 1000.0
        if net["loss"] > 0:
            lost = self.nprng.random(size) < net["loss"]
            k = int(lost.sum())
            if k:
                w[lost] += self.nprng.uniform(0, net["heartbeat"], k) + self._lat(k) + self._lat(k)
        return np.maximum(w, 1e-6)

    # ------------------------------------------------------------ the loop
    def push(self, at: float, kind: str, payload: tuple) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (at, self._seq, kind, payload))

    def run(self) -> None:
        if self.contracts is None:
            return self._run()
        from simulations.contracts import shared_pure_checks

        with shared_pure_checks():
            return self._run()

    def _run(self) -> None:
        sc = self.sc
        end = self.t0 + sc["run"]["duration"]
        for node in self.nodes:
            for proto in node.protocols():
                self.run_cmds(node, proto.handle(Started(node.peer_id), self.now), proto)
            if node.enclave is not None:
                # first sheet at a random moment in the first republish interval
                self.push(self.now + self.rng.uniform(0, min(5.0, sc["deposits"]["republish"])), "publish", (node.idx,))
        if sc["requests"]["rate"] > 0 and self.requesters:
            self.push(self.now + self.rng.expovariate(sc["requests"]["rate"]), "make_request", ())
        for i in self.spammers:
            self.push(self.now + self.rng.expovariate(sc["adversaries"]["spammer"]["rate"]), "spam", (i,))
        for i in self.forgers:
            self.push(self.now + self.rng.expovariate(sc["adversaries"]["forger"]["rate"]), "forge", (i,))
        for i, role in sorted(self.role.items()):
            if role == "slanderer":
                self.push(self.now + self.rng.expovariate(sc["adversaries"]["slanderer"]["rate"]), "slander", (i,))
        if self.revoke_cfg is not None:
            self.push(self.t0 + self.revoke_cfg["at"], "revoke", ())
        ch = sc["churn"]
        if ch["enabled"] and ch["leave_rate"] > 0:
            self.push(self.now + self.rng.expovariate(ch["leave_rate"] * len(self.nodes)), "churn", ())
        self.push(self.now, "sample", ())
        while self.heap and self.heap[0][0] <= end:
            at, _, kind, payload = heapq.heappop(self.heap)
            self.now = at
            self.clock.set(at)
            self.m.events += 1
            getattr(self, "_ev_" + kind)(*payload)
        self.now = end
        if self.progress:
            self.progress(end - self.t0)

    def _ev_sample(self) -> None:
        ok = sum(1 for r in self.m.decided if r["ok"])
        self.completed_over_time.append((round(self.now - self.t0, 3), ok, len(self.m.decided)))
        self.m.reputation_over_time.append((round(self.now - self.t0, 3), self._reputation_by_kind()))
        f = self.m.fees
        self.m.fees_over_time.append((round(self.now - self.t0, 3), f["collected_cents"], f["pool_cents"],
                                      f["honest_losses_cents"]))
        if self.revoke_cfg is not None:
            cls = self.revoke_cfg["device_class"]
            held = sum(v for d, v in self.m.exposure_now.items() if self._dev_class.get(d) == cls)
            self.m.class_exposure.append((round(self.now - self.t0, 3), held))
        if self.progress:
            self.progress(self.now - self.t0)
        self.push(self.now + max(1.0, self.sc["run"]["duration"] / 200), "sample", ())

    def _ev_publish(self, i: int) -> None:
        node = self.nodes[i]
        self._set_own(node, self._own_sheet(node))

    def _set_own(self, node: SimNode, own) -> None:
        """A changed own sheet, as the daemon hands it over (``set_own_sheet``: published at once, the
        re-announcement back-off restarted); with ``keep_offers`` the refresher renews it at half its offers'
        lifetime (``_ev_refresh``)."""
        cmds = node.offers.set_own_sheet(own, self.now)
        self.m.sheets_changed += any(isinstance(c, Publish) for c in cmds)
        self.run_cmds(node, cmds, node.offers)
        if self.sc["deposits"]["keep_offers"] and own.offers:
            node.refresh_at = min(o.expiry for o in own.offers) - self.sc["deposits"]["offer_ttl"] / 2 + REFRESH_LAG
            self.push(node.refresh_at, "refresh", (node.idx, node.refresh_at))

    def _ev_refresh(self, i: int, at: float) -> None:
        node = self.nodes[i]
        if node.refresh_at != at:
            return  # superseded by a later publication
        fresh = self._own_sheet(node)
        if fresh.offers != node.offers.own.offers:
            self._set_own(node, fresh)

    def _ev_timer(self, i: int, name: str, at: float) -> None:
        node = self.nodes[i]
        if node.timers.get(name) != at:
            return  # replaced or cancelled
        del node.timers[name]
        # an offline node's protocols still see their timers (so they re-arm); run_cmds drops what it publishes
        if name == "offers.republish" and node.enclave is not None and node.offers.own is not None:
            fresh = self._own_sheet(node)  # re-priced (keep_offers = false), or the same offers
            if fresh.offers != node.offers.own.offers:
                self._set_own(node, fresh)  # a changed sheet: published at once, no back-off
                return
            cmds = node.offers.handle(TimerFired(name), self.now)  # the unchanged sheet, re-announced
            self.m.sheets_reannounced += any(isinstance(c, Publish) for c in cmds)
            self.run_cmds(node, cmds, node.offers)
            return
        for proto in node.protocols():
            self.run_cmds(node, proto.handle(TimerFired(name), self.now), proto)

    def _ev_deliver(self, j: int, topic: str, data: bytes, src: int, sent_at: float, ref: Result) -> None:
        node = self.nodes[j]
        if not node.alive:
            return
        for proto in node.protocols():
            if topic not in proto.topics:
                continue
            v = proto.validate(topic, data, self.nodes[src].peer_id, self.now)
            self.m.validations[v.result.value] += 1
            if data in self._forged:
                self.m.forger["accepted_at_full_nodes" if v.result is Result.ACCEPT else "rejected_at_full_nodes"] += 1
            if v.result is Result.IGNORE and v.reason.startswith("revoked"):
                self.m.revoked_ignored += 1  # the relays (no risk engine) still forward it; counted apart
            elif v.result is not ref:
                self.m.verdict_mismatch += 1
            if v.result is Result.ACCEPT:
                if proto is node.offers:
                    self.m.book_latency.append(self.now - sent_at)
                    origin = self._sheet_origin.get(data)
                    if self.reports_on and origin is not None:
                        # the device's attestation is verified here: it is known (a reporter can be weighed)
                        o = self.nodes[origin]
                        node.engine.reputation.observe(o.device_id, o.peer_id, o.device_class, self.now)
                self.run_cmds(node, proto.handle(GossipReceived(topic, data, self.nodes[src].peer_id), self.now), proto)

    def _ev_req_in(self, target: int, call_id: int) -> None:
        src, cmd = self.calls[call_id][:2]
        node = self.nodes[target]
        if not node.alive:
            self.calls.pop(call_id, None)
            self.push(self.now + cmd.timeout, "resp_in", (src, cmd, b"", "timeout: peer offline"))
            return
        server = next((p for p in node.protocols() if cmd.protocol in p.stream_protocols), None)
        self.run_cmds(node, server.handle(RequestReceived(cmd.protocol, self.nodes[src].peer_id, call_id, cmd.data),
                                          self.now), server)

    def _ev_resp_in(self, i: int, cmd: SendRequest, data: bytes, error: str, peer: str = "") -> None:
        node = self.nodes[i]
        if error and cmd.protocol != node.offers.sheets_protocol:  # (a pull's failures: the pull's counters)
            self.m.stream_errors += 1
        if not node.alive:
            return
        for proto in node.protocols():
            if cmd.protocol in proto.stream_protocols:
                self.run_cmds(node, proto.handle(ResponseReceived(cmd.protocol, cmd.peer, cmd.request_id, data, error),
                                                 self.now), proto)

    def _ev_make_request(self) -> None:
        from node.risk.allocate import Limits

        q = self.sc["requests"]
        self.push(self.now + self.rng.expovariate(q["rate"]), "make_request", ())
        i = self.rng.choice(self.requesters)
        node = self.nodes[i]
        usd = self.rng.uniform(q["usd_min"], q["usd_max"])
        asset = self.rng.choice(self.sc["assets"])["symbol"]
        rid = self.rng.getrandbits(128).to_bytes(16, "big")
        if not node.alive:
            self.m.requests_not_sent += 1
            return
        try:
            rid, cmds = node.rfp.request(asset, round(usd * 100), q["contract"], self.now,
                                         limits=Limits(q["max_per_device"], q["max_share_device"],
                                                       q["max_share_owner"]),
                                         deadline=q["deadline"], request_id=rid)
        except ValueError as exc:
            self.m.requests_not_sent += 1
            self.log({"t": self._t(), "ev": "request_not_sent", "node": i, "reason": str(exc)[:80]})
            return
        self.m.requests_sent += 1
        self.log({"t": self._t(), "ev": "request", "node": i, "request": rid.hex(), "asset": asset,
                  "usd_cents": round(usd * 100)})
        self.run_cmds(node, cmds, node.rfp)

    def _contract_ended(self, node: SimNode, offers: tuple, charged: bool = True) -> None:
        """A contract over ``offers`` ended: the client's exposure on them is released; a fee is charged."""
        node.engine.release(offers)
        if charged:
            fee = sum(c.usd_cents for c in offers) * self.sc["fees"]["contract_fee_bp"] // 10_000
            self.m.fees["collected_cents"] += fee
            self.m.fees["pool_cents"] += int(fee * self.sc["fees"]["insurance_share"])
            self.m.fees["contracts"] += 1
        for c in offers:
            self.m.exposure_now[c.device_id] = self.m.exposure_now.get(c.device_id, 0) - c.usd_cents

    def _ev_release(self, i: int, offers: tuple) -> None:
        from node.risk.reputation import Action

        node = self.nodes[i]
        self._contract_ended(node, offers)
        for dev in dict.fromkeys(c.device_id for c in offers):
            kind = self.device_kind.get(dev, "honest")
            if kind in ("withholder", "broken_tee") and self.reports_on:
                self._contract_outcome(node, dev, kind, [c for c in offers if c.device_id == dev])
            elif node.engine.reputation.record(dev) is not None:
                node.engine.reputation.apply(dev, Action.CLAIMED, self.now)

    def _contract_outcome(self, client: SimNode, dev: bytes, kind: str, chunks: list) -> None:
        """A withholder's or a broken TEE's side of a completed (simplified) contract, and the client's report."""
        from node.risk.reputation import Action
        from simulations.adversaries import double_spend, outcome_report, release_record

        rep = client.engine.reputation
        cid = hashlib.sha256(b"contract/%d/" % client.idx + dev + repr(self.now).encode()).digest()
        if kind == "withholder":
            self.m.withheld["contracts"] += 1
            # tit-for-tat: the client lost at most the one chunk it released before the key it never got
            self.m.fees["honest_losses_cents"] += max(c.usd_cents for c in chunks)
            if rep.record(dev) is not None:
                rep.apply(dev, Action.WITHHELD, self.now)  # the client's own observation
            report = outcome_report(self, client, dev, "withheld", cid, chunks[0].asset, chunks[0].address)
            self.m.withheld["reports"] += 1
        else:
            owner = self.nodes[self.by_peer[chunks[0].owner_id]]
            pubs = {d.address: d.pubkey for d in owner.deposits}  # before the spends take them off
            spent = [(c, double_spend(self, owner, c.address)) for c in chunks]
            spent = [(c, tx) for c, tx in spent if tx]
            if not spent:
                return
            for c, tx in spent:
                self.m.fees["honest_losses_cents"] += c.usd_cents
                self.m.double_spends.append({"t": self._t(), "at": self.now, "device": dev.hex(), "client": client.idx,
                                             "address": c.address, "txid": tx, "cents": c.usd_cents})
            c, tx = spent[0]
            # the report carries the release record the device's enclave signed to the client's enclave
            record = release_record(self, owner, client, pubs[c.address], cid)
            report = outcome_report(self, client, dev, "double-spent", cid, c.asset, c.address, tx, record)
            # the client saw the empty deposit itself: it checks the ledger as everyone will
            from node.app.stack import ledger_check
            from node.risk.reputation import LedgerCheck

            if ledger_check(self.ledger, _decode_report(report)) is LedgerCheck.CONFIRMED:
                if rep.record(dev) is None:
                    rep.observe(dev, c.owner_id, c.device_class, self.now)
                rep.mark_cheater(dev, self.now)
                client.book.drop_device(dev)
                self.m.cheater_at.setdefault((dev, client.idx), self.now)
        self.log({"t": self._t(), "ev": "outcome", "client": client.idx, "device": dev.hex(), "kind": kind})
        self.run_cmds(client, client.outcomes.publish(report, self.now), client.outcomes)

    def _ev_forge(self, i: int) -> None:
        from simulations.adversaries import forged_sheet

        self.push(self.now + self.rng.expovariate(self.sc["adversaries"]["forger"]["rate"]), "forge", (i,))
        data = forged_sheet(self, self.nodes[i])
        self._forged.add(data)
        self.m.forger["published"] += 1
        self._gossip(i, f"/keyswitch/{self.net}/offers/1", data, forger=True)

    def _ev_slander(self, i: int) -> None:
        from simulations.adversaries import slander_report

        self.push(self.now + self.rng.expovariate(self.sc["adversaries"]["slanderer"]["rate"]), "slander", (i,))
        node = self.nodes[i]
        victims = [n for n in self.nodes if n.enclave is not None and self.device_kind.get(n.device_id) == "honest"]
        if not victims or not node.alive:
            return
        data = slander_report(self, node, self.rng.choice(victims))
        self.m.slander["published"] += 1
        self.run_cmds(node, node.outcomes.publish(data, self.now), node.outcomes)

    def _ev_revoke(self) -> None:
        from node.protocols.revocation import NOTICE_VERSION, RevocationNotice, make_notice

        cfg = self.revoke_cfg
        n = RevocationNotice(NOTICE_VERSION, self.net, "class", cfg["device_class"], cfg["reason"], "", b"",
                             self.issuer.peer_id, self.now)
        data = make_notice(n, self.issuer.sign)
        self.revoked_at = self.now
        self.log({"t": self._t(), "ev": "revoke", "class": cfg["device_class"]})
        src = self.nodes[0]
        if src.revocations is not None:
            self.run_cmds(src, src.revocations.handle(GossipReceived(src.revocations.topic, data, ""), self.now),
                          src.revocations)
        self._gossip(0, f"/keyswitch/{self.net}/revocations/1", data)

    def _ev_spam(self, i: int) -> None:
        from simulations.adversaries import skip_spam, spam_message

        self.push(self.now + self.rng.expovariate(self.sc["adversaries"]["spammer"]["rate"]), "spam", (i,))
        node = self.nodes[i]
        self.m.spam["published"] += 1
        if not any(self._alive[j] for j in self.adj[i]):  # pruned by every mesh peer: nobody hears it
            skip_spam(self, node)
            self.m.spam["dropped_no_mesh"] += 1
            return
        self._gossip(i, f"/keyswitch/{self.net}/offers/1", spam_message(self, node), spam=True)

    def _ev_churn(self) -> None:
        ch = self.sc["churn"]
        self.push(self.now + self.rng.expovariate(ch["leave_rate"] * len(self.nodes)), "churn", ())
        i = self.rng.randrange(len(self.nodes))
        node = self.nodes[i]
        if not node.alive or i in self.requesters:
            return
        node.alive = self._alive[i] = False
        self._graph_dirty = True
        self.m.churn_events += 1
        self.log({"t": self._t(), "ev": "leave", "node": i})
        self.push(self.now + self.rng.expovariate(1.0 / ch["mean_downtime"]), "rejoin", (i,))

    def _ev_rejoin(self, i: int) -> None:
        node = self.nodes[i]
        node.alive = self._alive[i] = True
        self._graph_dirty = True
        self.log({"t": self._t(), "ev": "rejoin", "node": i})
        if node.full:  # connected again to its mesh peers: it pulls the sheets it missed from each
            for j in sorted(self.adj[i]):
                if self._alive[j]:
                    self.run_cmds(node, node.offers.handle(PeerConnected(self.nodes[j].peer_id), self.now), node.offers)

    def _t(self) -> float:
        return round(self.now - self.t0, 6)

    # ------------------------------------------------------------ commands
    def run_cmds(self, node: SimNode, cmds: list, proto=None) -> None:
        """Carry out the commands ``node``'s protocol ``proto`` returned, through the one interpreter
        (``node.protocols.interpret``): a ``LedgerCall`` runs at once with that protocol's ledger adapters and
        its ``TaskDone`` goes back to ``proto`` only; a command no interpreter knows raises ``UnknownCommand``."""
        if self._interp is None:
            self._interp = Interpreter(SimTransport(self), lambda src: LedgerAdapters.of(src[1]))
        for cmd in cmds:
            self._interp.execute((node, proto), cmd)

    def _send_request(self, node: SimNode, cmd: SendRequest) -> None:
        target = self.by_peer.get(cmd.peer)
        if (target is not None and self.nodes[target].kind == "relay"
                and cmd.protocol == node.offers.sheets_protocol):
            self._relay_pull(node, self.nodes[target], cmd)
            return
        delay = 0.0
        if target is not None and self.contracts is not None and cmd.protocol == self.contracts.protocol:
            delay = self.contracts.outgoing(node, cmd)  # a hostile host may hold or drop what it sends
            if delay is None:
                return
        elif target is None or not self.nodes[target].full:
            self.push(self.now, "resp_in", (node.idx, cmd, b"", "protocol not supported"))
            return
        self._call_id += 1
        self.calls[self._call_id] = (node.idx, cmd)
        if cmd.protocol.startswith("/keyswitch/contract/"):
            self.m.proposals_sent += 1
        self.push(self.now + float(self._lat(1)[0]) + delay, "req_in", (target, self._call_id))

    def _relay_pull(self, node: SimNode, relay: SimNode, cmd: SendRequest) -> None:
        """A relay answers a pull with the sheets the reference validator accepted (the latest per origin),
        through the same ``answer_pull`` a node runs; relays apply no rate limit (each node asks a peer at
        most once per ``pull_again``)."""
        from node.protocols.offers import answer_pull

        if not relay.alive:
            self.push(self.now + cmd.timeout, "resp_in", (node.idx, cmd, b"", "timeout: peer offline"))
            return
        self.m.relay_pull_answers += 1
        data = answer_pull(cmd.data, net=self.net, own=None, store=self.ref_sheets)
        at = self.now + float(self._lat(1)[0]) + float(self._lat(1)[0])
        if at - self.now > cmd.timeout:
            self.push(self.now + cmd.timeout, "resp_in", (node.idx, cmd, b"", "timeout"))
        else:
            self.push(at, "resp_in", (node.idx, cmd, data, ""))

    def _notify(self, node: SimNode, note: Notify) -> None:
        if note.kind.startswith("contract.") and self.contracts is not None:
            self.contracts.on_notify(node, note)
            return
        if note.kind == "offers.sheet":
            if self.reports_on and note.detail.get("pulled"):  # as for a gossiped sheet (_ev_deliver)
                o = self.nodes[self.by_peer[note.detail["origin"]]]
                node.engine.reputation.observe(o.device_id, o.peer_id, o.device_class, self.now)
            return
        if note.kind == "outcome.cheater":
            self.m.cheater_at.setdefault((bytes.fromhex(note.detail["subject"]), node.idx), self.now)
            return
        if note.kind == "revocation.applied":
            self.m.revocation_at.setdefault(node.idx, self.now)
            if note.detail["kind"] == "class":
                left = sum(1 for _, dclass in node.book.devices()
                           if node.engine.caps.classes.is_revoked(dclass) is not None)
                self.m.revocation_left.append(left)
            return
        if note.kind != "rfp.chosen":
            return
        d = note.detail
        rid = bytes.fromhex(d["request_id"])
        rec = {"t": self._t(), "node": node.idx, "request": d["request_id"], "ok": d["ok"],
               "target_cents": d["target_cents"], "total_cents": d["total_cents"],
               "overshoot_cents": d["overshoot_cents"], "proposals": d["proposals"],
               "chunks": len(d["offers"]), "reason": d["reason"][:120]}
        self.m.decided.append(rec)
        self.log({"ev": "chosen", **rec})
        chosen = node.rfp.results.get(rid)
        if chosen is None or not chosen.ok:
            return
        offers = tuple(chosen.offers)
        node.engine.hold(offers)
        half = int(self.now - self.t0 >= self.sc["run"]["duration"] / 2)
        for c in offers:
            kind = self.device_kind.get(c.device_id, "honest")
            self.m.chosen_cents.setdefault(kind, [0, 0])[half] += c.usd_cents
            if (self.revoke_cfg is not None and node.idx in self.m.revocation_at
                    and self._dev_class.get(c.device_id) == self.revoke_cfg["device_class"]):
                self.m.revoked_class_chosen_after += 1
        caps = node.engine.caps
        for dev, owner, dclass in dict.fromkeys((c.device_id, c.owner_id, c.device_class) for c in offers):
            if caps.exposure.by_device.get(dev, 0) > caps.device_limit(dev, dclass, self.now)[0]:
                self.m.cap_violations += 1
                self.log({"t": self._t(), "ev": "cap_violation", "node": node.idx, "device": dev.hex()})
        per_client: dict[bytes, int] = {}
        for c in offers:
            now_ = self.m.exposure_now.get(c.device_id, 0) + c.usd_cents
            self.m.exposure_now[c.device_id] = now_
            self.m.exposure_peak[c.device_id] = max(self.m.exposure_peak.get(c.device_id, 0), now_)
            per_client[c.device_id] = node.engine.caps.exposure.by_device.get(c.device_id, 0)
        for dev, v in per_client.items():
            self.m.exposure_peak_per_client[dev] = max(self.m.exposure_peak_per_client.get(dev, 0), v)
        if self.contracts is not None:
            self.contracts.start(node, offers)  # the release code runs them (simulations.contracts)
        else:
            self.push(self.now + self.sc["requests"]["contract_seconds"], "release", (node.idx, offers))

    # ------------------------------------------------------------ gossip
    def _reference_verdict(self, topic: str, data: bytes):
        from node.protocols.offers import validate_sheet
        from node.protocols.rfp import validate_request

        if topic.endswith("/outcomes/1"):
            from node.protocols.outcomes import validate_report

            # a relay knows the devices whose attested sheets it has seen
            v, r = validate_report(data, net=self.net, now=self.now, known_device=self._ref_known.__contains__,
                                   seen=self._ref_seen_reports.__contains__)
            if r is not None:
                self._ref_seen_reports.add(data)
            return v
        if topic.endswith("/revocations/1"):
            from node.protocols.revocation import TrustConfig, validate_notice

            v, n = validate_notice(data, net=self.net, now=self.now,
                                   trust=TrustConfig(frozenset({self.issuer.peer_id}), True),
                                   seen=self._ref_seen_notices.__contains__)
            if n is not None:
                self._ref_seen_notices.add(data)
            return v
        if topic.endswith("/offers/1"):
            v, body = validate_sheet(data, net=self.net, now=self.now, latest_seq=self.ref_seq.get,
                                     attestations=self.ref_cache, verify_sig=self._verify_sheet_sig)
            if body is not None and v.result is Result.ACCEPT:
                self.ref_seq[body.origin] = body.seq
                self.ref_sheets.put(body.origin, body.seq, data)
                if self.reports_on:
                    from node.stores.offerbook import device_id_of

                    self._ref_known.add(device_id_of(body.binding.sign_pub))
            return v
        v, req = validate_request(data, net=self.net, now=self.now, seen=lambda r: r in self.ref_seen_requests)
        if req is not None:
            self.ref_seen_requests.add(req.request_id)
        return v

    def _gossip(self, src: int, topic: str, data: bytes, spam: bool = False, forger: bool = False) -> None:
        indptr, indices = self._graph()
        n = len(self.nodes)
        v = self._reference_verdict(topic, data)
        if self.reports_on and topic.endswith("/offers/1") and not (spam or forger):
            self._sheet_origin[data] = src
        if not self.nodes[src].alive or indptr[src] == indptr[src + 1]:
            if spam:
                self.m.spam["dropped_no_mesh"] += 1
            return
        w = self._hop_weights(len(indices))
        if v.result is Result.ACCEPT:
            g = csr_matrix((w, indices, indptr), shape=(n, n))
            dist, pred = dijkstra(g, directed=True, indices=src, return_predecessors=True)
            reached = np.flatnonzero(np.isfinite(dist))
            reached = reached[reached != src]
            prev = pred
        else:  # every receiver rejects or ignores: only the publisher's own mesh peers see it
            reached = indices[indptr[src]:indptr[src + 1]].astype(np.int64)
            dist = np.full(n, np.inf)
            dist[reached] = w[indptr[src]:indptr[src + 1]]
            prev = np.full(n, src)
        is_sheet = topic.endswith("/offers/1")
        self.log({"t": self._t(), "ev": "spam" if spam else ("sheet" if is_sheet else "gossip"), "src": src,
                  "topic": topic.rsplit("/", 2)[-2], "verdict": v.result.value, "reason": v.reason[:80],
                  "reached": int(len(reached)),
                  "max_ms": round(float(dist[reached].max()) * 1000, 2) if len(reached) else None})
        if spam:
            self.m.spam["receivers"] += len(reached)
            self.m.spam_receivers.update((src, j) for j in reached.tolist())
            if v.result is Result.ACCEPT:
                self.m.spam["accepted"] += 1
                self.m.spam["forwarded"] += len(reached)
        elif forger:
            self.m.forger["receivers"] += len(reached)
            if v.result is Result.ACCEPT:
                self.m.forger["accepted_by_reference"] += 1
                self.m.forger["forwarded"] += len(reached)
        elif is_sheet:
            self.m.sheets_published += 1
            if v.result is Result.ACCEPT:
                self.m.gossip_hist += np.histogram(dist[reached], LATENCY_BINS)[0]
                online = self._online - 1
                self.m.coverage.append(len(reached) / max(1, online))
        if v.result is not Result.REJECT:  # only full nodes act on it: deliver to them, in the same order
            reached = reached[self._full_mask[reached]]
        for j in reached.tolist():
            node = self.nodes[j]
            if v.result is Result.REJECT:
                node.rejects_from[src] = node.rejects_from.get(src, 0) + 1
                if node.rejects_from[src] == PRUNE_AFTER_REJECTS and src in self.adj[j]:
                    self.adj[j].discard(src)
                    self.adj[src].discard(j)
                    self._graph_dirty = self._mesh_dirty = True
                    if spam or forger:
                        self.m.spam["pruned_links"] += 1
            if node.full:
                self.push(self.now + float(dist[j]), "deliver", (j, topic, data, int(prev[j]), self.now, v.result))

    # ------------------------------------------------------------ results


def _decode_report(data: bytes):
    from node import wire
    from node.protocols.outcomes import OutcomeReport, SignedReport

    return wire.decode(wire.decode(data, SignedReport).body, OutcomeReport)
