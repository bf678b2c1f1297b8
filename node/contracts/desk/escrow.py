"""Key escrow in a running daemon (issue 7's liveness half): ``/keyswitch/key-escrow/1`` for operators.

The protocol and the enclave side are ``node.protocols.keyescrow`` and ``node.enclave.contracts``; this
module wires them into the daemon the way ``node.contracts.desk.swaps`` wires ``ContractRun``:

* **holder** (always on): the daemon runs ``KeyEscrow`` on its stream protocol, so any attested node may name
  it an escrow holder. It holds shares of at most ``MAX_HELD_CONTRACTS`` contracts and ``MAX_HELD_SHARES``
  shares for others, at most ``MAX_HELD_PER_OWNER`` contracts of one owner; past that a ``hold`` is refused
  with code "full" and the reason, and so is the ``key-escrow-hold`` contract offer an owner sends before its
  contract starts. It lets go of a contract a day after every share it holds of it was released or its chunk
  moved, or 30 days after its refund path opened (node/protocols/escrow_letgo.py). Ledger heights (every
  second, off the event loop) feed every contract it holds.
* **owner**: ``POST /v1/contracts`` for kind escrow / option takes ``key_escrow: {holders, k, recovery}``
  (peer ids). ``attach`` fetches the holders' and the recovery node's attested bindings (``who``) and hands
  their quotes to our enclave (``attest_peer``: it splits a key only to enclaves it verified itself), refuses
  bad input with the reason (a holder or the recovery node that is a party, k out of range, an unknown or
  unattested peer, a node that declines), and builds the ``EscrowedSpec``: all our chunks in Shamir shares,
  k of the holders rebuild a key, released only to the recovery node's enclave. Each holder is asked to
  agree first (``key-escrow-hold`` over ``/keyswitch/contract/1``), then the recovery node
  (``key-escrow-recovery``: the spec and, per escrowed chunk, our claim address, where it will sweep the
  chunk). ``ContractRun`` then sends the shares once our enclave opened the contract and again when every
  runner signed; its key-escrow requests go through ``_Router`` so that their answers and retry timers
  come back to ``KeyEscrow`` (the driver returns them to the protocol that issued the command).
* **recovery** (on request): the recovery node keeps what it agreed to in ``<datadir>/escrow.sqlite``.
  ``POST /v1/escrow/recover {"contract": id}`` (``keyswitch recover --contract ID``) starts bringing the
  owner's escrowed chunks home: the holders are asked (each ask carries our enclave's binding and quote,
  which the holder's enclave verifies itself), they answer only once the contract refunds a chunk
  to its owner (the time-lock height on their own ledger view), k shares are rebuilt in our enclave and the
  chunk is swept to the owner's claim address named at agreement. Recovery is an operator's decision, not
  automatic: a live owner refunds its chunks itself at the height, and only its operator knows the device
  is gone. A recovery asked for survives our restart (it resumes). ``GET /v1/escrow`` shows all three roles.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec

from node import wire

log = logging.getLogger("keyswitch.escrow")

MAX_HELD_CONTRACTS = 256  # contracts this node holds escrow shares of, for others
MAX_HELD_SHARES = 4096  # shares over all of them
MAX_HELD_PER_OWNER = 16  # contracts of one owner (its enclave's key), so one device cannot fill the bound alone
MAX_DESIGNATIONS = 256  # contracts this node agreed to be the recovery node of
HOLD_KIND, RECOVERY_KIND = "key-escrow-hold", "key-escrow-recovery"
ORDER_VERSION = 1


class RecoveryOrder(msgspec.Struct, array_like=True, frozen=True):
    """What an owner asks of its recovery node: the contract, its party, and per escrowed chunk (in
    ``spec.escrowed_chunks`` order) the address the recovered chunk is swept to."""

    version: int
    spec: bytes
    party: int
    to: list[str]


class _Router:
    """``ContractRun.escrow``: the owner's and the payee's key-escrow calls, their commands carried out as
    ``KeyEscrow``'s own (the driver hands a response or a timer to the protocol that issued the command)."""

    def __init__(self, desk: "EscrowDesk") -> None:
        self.desk = desk

    def distribute(self, spec, sigs, now: float) -> list:
        return self.desk.route(self.desk.proto.distribute(spec, sigs, now))

    def show_moved(self, spec, record: bytes, now: float) -> list:
        return self.desk.route(self.desk.proto.show_moved(spec, record, now))


def check_request(ke: dict[str, Any], parties: list[str]) -> tuple[list[str], int, str]:
    """(holders, k, recovery) of a ``key_escrow`` request, or ValueError with the reason. ``parties``: the
    contract's peer ids (ours first)."""
    from node.contracts.spec import MAX_ESCROW_HOLDERS

    holders, k, recovery = list(ke.get("holders") or []), ke.get("k"), str(ke.get("recovery") or "")
    if not all(isinstance(h, str) and h for h in holders):
        raise ValueError("key_escrow.holders must be peer ids")
    if len(set(holders)) != len(holders):
        raise ValueError("key_escrow.holders must be distinct")
    if not 2 <= len(holders) <= MAX_ESCROW_HOLDERS:
        raise ValueError(f"key_escrow needs 2..{MAX_ESCROW_HOLDERS} holders, got {len(holders)}")
    if not isinstance(k, int) or not 2 <= k <= len(holders):
        raise ValueError(f"key_escrow.k must be 2..{len(holders)} (the number of holders), got {k!r}")
    if not recovery:
        raise ValueError("key_escrow.recovery (the peer id of the owner's recovery node) is missing")
    for h in holders:
        if h in parties:
            raise ValueError(f"key_escrow: holder {h} is a party of the contract (holders must be other nodes)")
    if recovery in parties:
        raise ValueError(f"key_escrow: the recovery node {recovery} is a party of the contract")
    if recovery in holders:
        raise ValueError(f"key_escrow: the recovery node {recovery} is also a holder")
    return holders, k, recovery


class EscrowDesk:
    def __init__(self, stack, clock, designations) -> None:
        """``designations``: where the contracts we are the recovery node of are kept
        (``node.stores.designations.DesignationStore``, opened by the composition root)."""
        from node.protocols.escrow_letgo import LetGo
        from node.protocols.keyescrow import KeyEscrow
        from node.contracts.protocol.claims import sweep_claimer

        self.stack, self.clock = stack, clock
        self.ledger = stack.ledger
        self.proto = KeyEscrow(stack.net, stack.enclave,
                               claim=sweep_claimer(lambda: stack.enclave, self.ledger, self._destination),
                               check_funds=stack.desk._funds, max_contracts=MAX_HELD_CONTRACTS,
                               max_shares=MAX_HELD_SHARES,
                               identity=lambda: (stack.protocol.own.binding, stack.protocol.own.quote),
                               let_go=LetGo(max_per_owner=MAX_HELD_PER_OWNER))
        # (used from the key-escrow protocol's handle, on the driver's worker thread, under its lock)
        self.db = designations
        #: deposit key hex -> the owner's address, from the contract whose recovery was asked (not from every
        #: designation: anyone may name someone else's deposit key in a spec it proposes to us)
        self._dest: dict[str, str] = {}
        self.node = None
        self._queued: list = []
        self._assets: list[str] | None = None  # assets our ledger serves (heights for held contracts)
        stack.desk.run.escrow = _Router(self)
        prev = stack.rfp.on_contract

        def on_contract(peer: str, offer, now: float) -> str | None:
            if offer.kind in (HOLD_KIND, RECOVERY_KIND):
                return self.accept(peer, offer, now)
            return prev(peer, offer, now) if prev is not None else f"unsupported contract kind {offer.kind!r}"

        stack.rfp.on_contract = on_contract

    # -------------------------------------------------------------- plumbing
    def route(self, cmds: list) -> list:
        """Carry out ``cmds`` as ``KeyEscrow``'s (queued until the driver runs); nothing for the caller."""
        if cmds:
            self._queued += cmds
            self._flush()
        return []

    def _flush(self) -> None:
        driver = getattr(self.node, "driver", None)
        if driver is not None and self._queued:
            cmds, self._queued = self._queued, []
            driver.submit(self.proto, lambda now: cmds)

    def _destination(self, chunk) -> str:
        """Where a recovered chunk goes: the owner's address for it, named when we agreed (a worker thread
        asks: from memory, not SQLite)."""
        to = self._dest.get(chunk.pubkey.hex())
        if to is None:
            raise ValueError(f"no destination agreed for deposit key {chunk.pubkey.hex()[:16]}...")
        return to

    def start(self, node) -> None:
        """Attach the running node (its driver), and resume the recoveries asked before a restart. The daemon's
        loop then calls ``tick`` every second (``node.app.daemon``: the heights, read off the event loop)."""
        self.node = node
        for cid in self.db.unfinished():
            node.driver.submit(self.proto, lambda now, cid=cid: self._resume(cid, now))

    def tick(self) -> bool:
        """Every second (the daemon's loop): the key-escrow commands queued before the driver ran handed to it;
        True when something reads ledger heights (a contract we hold shares of, a recovery), else no ledger call."""
        self._flush()
        return bool(self.proto.holding() or self.proto.recoveries)

    def read_heights(self) -> list[tuple[str, int]]:
        """Our ledger's heights of the assets it serves (blocking ledger calls: the daemon runs it on a worker
        thread)."""
        if self._assets is None:
            self._assets = self._served_assets()
        return self._heights()

    def observe(self, heights: list[tuple[str, int]]) -> None:
        """Hand ``heights`` to the key-escrow protocol (on the driver) and record finished recoveries."""
        if heights:
            self.node.driver.submit(self.proto, lambda now: [c for a, h in heights for c in
                                                             self.proto.observe_height(a, h, now)])
        self._record_results()

    def _served_assets(self) -> list[str]:
        from node.assets import ASSETS

        out = []
        for a in ASSETS:
            try:
                self.ledger.height(a)
                out.append(a)
            except Exception:
                pass
        return out

    def _heights(self) -> list[tuple[str, int]]:
        out = []
        for a in self._assets or []:
            try:
                out.append((a, self.ledger.height(a)))
            except Exception:  # the ledger is away: next second
                pass
        return out

    def _record_results(self) -> None:
        from node.protocols.keyescrow import FAILED, MOVED, SWEPT

        done: dict[str, list] = {}
        for r in self.proto.recoveries.values():
            done.setdefault(r.cid.hex(), []).append(r)
        for cid, rs in done.items():
            if all(r.state in (SWEPT, FAILED, MOVED) for r in rs):
                res = [{"index": r.index, "state": r.state, **({"status": r.claim.status, "txid": r.claim.txid}
                                                               if r.claim else {})} for r in rs]
                self.db.set_result(cid, json.dumps(res))

    # -------------------------------------------------------------- holder / recovery: agreeing
    def accept(self, peer: str, offer, now: float) -> str | None:
        """A ``key-escrow-hold`` or ``key-escrow-recovery`` offer: None to agree, else the reason."""
        try:
            return self._accept(peer, offer, now)
        except Exception as exc:  # the enclave or our database is away: refuse, say why
            log.exception("key-escrow offer from %s", peer)
            return f"this node could not take it: {type(exc).__name__}: {exc}"

    def _accept(self, peer: str, offer, now: float) -> str | None:
        from node.contracts.spec import decode_spec, spec_id

        try:
            order = wire.decode(offer.schedule, RecoveryOrder, max_size=512 * 1024) \
                if offer.kind == RECOVERY_KIND else RecoveryOrder(ORDER_VERSION, offer.schedule, -1, [])
        except wire.WireError as exc:
            return f"malformed recovery order: {exc.reason}"
        if order.version != ORDER_VERSION:
            return f"unsupported recovery order version {order.version}"
        spec = decode_spec(order.spec)
        if isinstance(spec, str):
            return spec
        me = self.stack.enclave.info().enc_pub
        terms = [t for t in spec.escrows if spec.ids[t.party] == peer]
        if not terms:
            return "the spec escrows no chunk of the proposer"
        cid = spec_id(spec)
        if offer.kind == HOLD_KIND:
            if not any(h.enc_pub == me for t in terms for h in t.holders):
                return "the spec does not name this node's enclave as a holder of the proposer's chunks"
            from node.protocols.escrow_letgo import owners_of

            return self.proto.over_bound(cid, sum(len(spec.escrowed_chunks(t)) for t in terms), owners_of(spec, me))
        term = next((t for t in terms if t.party == order.party), None)
        if term is None or term.beneficiary != me:
            return "the spec does not name this node's enclave as the recovery enclave of the proposer's chunks"
        idx = spec.escrowed_chunks(term)
        if len(order.to) != len(idx) or not all(isinstance(a, str) and 0 < len(a) <= 128 for a in order.to):
            return f"a recovery order names one destination address per escrowed chunk ({len(idx)})"
        n = self.db.count()
        if n >= MAX_DESIGNATIONS and not self.db.has(cid.hex()):
            return f"full: this node is already the recovery node of {n} contracts (at most {MAX_DESIGNATIONS})"
        dest = {spec.parties[term.party].chunks[i].pubkey.hex(): a for i, a in zip(idx, order.to)}
        self.db.add(cid.hex(), peer, term.party, order.spec, json.dumps(dest), now)
        return None

    # -------------------------------------------------------------- owner: building the escrowed spec
    async def attach(self, services, spec, summary: dict, ke: dict[str, Any]):
        """(escrowed spec, summary): ``spec`` with our chunks key-escrowed per ``ke`` ({holders, k, recovery}),
        agreed with each holder and the recovery node. Raises ``ApiError`` with the reason."""
        import base58

        from node.api.services import ApiError
        from node.contracts.spec import EscrowHolder, EscrowTerm, make_spec, validate_spec

        own = self.stack.protocol.own.binding
        me = spec.ids.index(own.peer_id)
        try:
            holders, k, recovery = check_request(ke, list(spec.ids))
            for p in holders + [recovery]:
                try:
                    base58.b58decode(p)  # (what py-libp2p's ID.from_base58 checks)
                except Exception:
                    raise ValueError(f"key_escrow: {p!r} is not a peer id") from None
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        try:
            await services._who(holders + [recovery])
        except ApiError as exc:
            raise ApiError(409, f"key escrow: {exc.reason}: an unknown or unreachable peer, or one whose quote "
                                "did not verify") from None
        run = self.stack.desk.run

        def verify(now: float) -> list:  # I3: our enclave splits only to holders and for a beneficiary it verified
            for p in holders + [recovery]:
                run.attest_known(p, now)
            return []

        try:
            await services._submit(run, verify)
        except ApiError as exc:
            raise ApiError(409, f"key escrow: {exc.reason}") from None
        known = run.known
        term = EscrowTerm(me, [], [EscrowHolder(known[h].enc_pub, h) for h in holders], k, known[recovery].enc_pub)
        out = make_spec(spec.net, spec.source, {p.name: p.value for p in spec.params}, list(spec.parties),
                        spec.order, escrow=[term])
        bad = validate_spec(out)
        if bad:
            raise ApiError(409, f"key escrow: {bad}")
        for h in holders:
            await services._offer(h, HOLD_KIND, out.encode())
        chunks = out.parties[me].chunks
        order = RecoveryOrder(ORDER_VERSION, out.encode(), me,
                              [self.stack.desk.claim_address(chunks[i]) for i in out.escrowed_chunks(term)])
        await services._offer(recovery, RECOVERY_KIND, wire.encode(order))
        return out, {**summary, "key_escrow": {"holders": holders, "k": k, "recovery": recovery,
                                               "claim_addresses": order.to}}

    # -------------------------------------------------------------- recovery
    def _start_recovery(self, cid: str, now: float, resume: bool = False) -> list:
        """``KeyEscrow.recover`` for every escrowed chunk of the owner we are the recovery node of (run on the
        driver, as ``KeyEscrow``'s call)."""
        from node.contracts.spec import decode_spec

        row = self.db.get(cid)
        if row is None:
            raise ValueError(f"this node is not the recovery node of contract {cid}")
        party, data, dest = row
        self._dest.update(json.loads(dest))
        spec = decode_spec(data)
        if isinstance(spec, str):
            raise ValueError(spec)
        term = next(t for t in spec.escrows if t.party == party)
        if not resume:
            self.db.ask_recover(cid, now)
        return [c for i in spec.escrowed_chunks(term) for c in self.proto.recover(spec, [], party, i, now)]

    def _resume(self, cid: str, now: float) -> list:
        try:
            return self._start_recovery(cid, now, resume=True)
        except ValueError as exc:
            log.warning("recovery of %s not resumed: %s", cid, exc)
            return []

    async def recover(self, services, contract: str) -> dict[str, Any]:
        """Start (or resume) bringing the owner's escrowed chunks of ``contract`` home; the rows of it."""
        await services._submit(self.proto, lambda now: self._start_recovery(contract, now))
        return {"contract": contract, "recovering": [r for r in self.status()["recoveries"]
                                                     if r["contract"] == contract]}

    # -------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        rec = []
        for r in sorted(self.proto.recoveries.values(), key=lambda r: r.key):
            rec.append({"contract": r.cid.hex(), "party": r.party, "index": r.index, "state": r.state,
                        "shares": sorted(r.shares), "k": r.term.k, "holders_said": {str(p): s for p, s in
                                                                                  sorted(r.said.items())},
                        **({"claim": {"status": r.claim.status, "txid": r.claim.txid, "detail": r.claim.detail}}
                           if r.claim else {})})
        designated = [{"contract": cid, "owner": owner, "party": party, "destinations": json.loads(dest),
                       "agreed": agreed, "recover_asked": rq, "result": json.loads(res) if res else None}
                      for cid, owner, party, dest, agreed, rq, res in self.db.rows()]
        try:
            shares = [{"contract": s.cid.hex(), "party": s.party, "index": s.index, "state": s.state,
                       "releasable": s.allowed, "why": s.why} for s in self.stack.enclave.escrow_holdings()]
        except Exception as exc:  # the enclave is away: the host's view still answers
            shares = [{"error": str(exc)}]
        return {"holding": {"contracts": self.proto.holding(), "shares": shares,
                            "limits": {"contracts": MAX_HELD_CONTRACTS, "shares": MAX_HELD_SHARES}},
                "recovery_node_of": designated, "recoveries": rec}
