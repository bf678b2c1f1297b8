"""The host side of contracts in a running node: plan a swap, agree to one, claim, report.

* **Planning** (initiator): ``plan_swap`` picks this node's own offered
  chunks of one asset and a peer's offered chunks of another from the offer
  book, and builds the release schedule (``swap_schedule``: one chunk at a
  time, so neither side is ever exposed to more than one chunk).
* **Agreement** (``/keyswitch/contract/1``, ``RfpProtocol.offer_contract``):
  the responder's ``accept`` policy checks that the chunks asked of it are
  its own current offers, that the chunks it gets are the proposer's offers
  in its book, that it gets at least 98% of the USD value it gives, and that
  its risk engine lets it hold one chunk of the proposer's device. Then it
  ``expect``s the schedule and the release protocol (``/keyswitch/release/1``)
  runs it: quotes checked, keys exchanged encrypted enclave to enclave.
* **Claims**: a received key is swept at once to a fresh address of the
  owner, derived from the node's identity seed and the deposit key
  (``claim_key``: the owner can always re-derive it).
* **Outcomes**: when a contract ends, the node applies it to its own
  reputation view (claimed +, withheld -, double-spent: the ledger
  confirms it) and gossips a report signed by its enclave.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from node import wire

log = logging.getLogger("keyswitch.swaps")
VALUE_TOLERANCE = 0.98


def claim_key(seed: bytes, deposit_pub: bytes) -> bytes:
    """The owner's private key for the claim address of one received deposit (re-derivable from the seed)."""
    import coincurve

    n = 0
    while True:
        k = hashlib.sha256(b"keyswitch/claim-key/1" + seed + deposit_pub + n.to_bytes(4, "big")).digest()
        try:
            coincurve.PrivateKey(k)
            return k
        except Exception:
            n += 1


class SwapDesk:
    def __init__(self, stack, seed: bytes, clock) -> None:
        from node.protocols.release import ContractStore, ReleaseProtocol, sweep_claimer

        self.stack, self.clock, self._seed = stack, clock, seed
        ledger = stack.extra["ledger"]
        own = stack.protocol.own
        self.release = ReleaseProtocol(
            net=stack.net, enclave=stack.enclave, binding=own.binding, quote=own.quote,
            attestations=stack.protocol.attestations, check_funds=self._funds,
            claim=sweep_claimer(lambda: stack.enclave, ledger, self.claim_address),
            store=ContractStore(stack.extra["datadir"] / "contracts"), claim_policy="sweep")
        stack.rfp.on_contract = self.accept
        self.reported: set[str] = set()

    # -------------------------------------------------------------- helpers
    def claim_address(self, chunk) -> str:
        import coincurve

        from node.assets import address_for

        pub = coincurve.PrivateKey(claim_key(self._seed, chunk.pubkey)).public_key.format()
        return address_for(chunk.asset, pub)

    def _funds(self, asset: str, address: str) -> bool:
        return self.stack.extra["ledger"].balance(asset, address).confirmed > 0

    def _book_offer(self, address: str) -> dict | None:
        row = self.stack.book.db.execute(
            "SELECT origin, device_id, device_class, asset, amount, usd_cents, pubkey FROM offers WHERE address = ?",
            (address,)).fetchone()
        if row is None:
            return None
        return dict(zip(("origin", "device_id", "device_class", "asset", "amount", "usd_cents", "pubkey"), row))

    # -------------------------------------------------------------- planning
    def plan_swap(self, peer: str, give_asset: str, take_asset: str, chunks: int):
        """(schedule, summary) for swapping ``chunks`` of our ``give_asset`` for the peer's ``take_asset``."""
        from node.protocols.release import Chunk, swap_schedule

        now = self.clock.now()
        mine = [o for o in (self.stack.protocol.own.offers if self.stack.protocol.own else [])
                if o.asset == give_asset and o.expiry > now][:chunks]
        if len(mine) < chunks:
            raise ValueError(f"this node offers {len(mine)} unexpired {give_asset} chunk(s), {chunks} needed "
                             f"(fund more with: keyswitch deposit --asset {give_asset})")
        theirs = [c for c in self.stack.book.candidates(take_asset, now=now) if c.owner_id == peer]
        if len(theirs) < chunks:
            raise ValueError(f"the book holds {len(theirs)} {take_asset} offer(s) from {peer}, {chunks} needed")
        want = sum(o.usd_cents for o in mine)
        theirs.sort(key=lambda c: (abs(c.usd_cents - want / chunks), c.offer_id))
        theirs = theirs[:chunks]
        a = [Chunk(o.asset, o.address, o.pubkey, o.amount) for o in mine]
        b = [Chunk(c.asset, c.address, bytes(self._book_offer(c.address)["pubkey"]), c.amount) for c in theirs]
        summary = {"peer": peer, "give": {"asset": give_asset, "chunks": chunks, "usd_cents": want},
                   "take": {"asset": take_asset, "chunks": chunks, "usd_cents": sum(c.usd_cents for c in theirs)}}
        return swap_schedule(a, b), summary

    # -------------------------------------------------------------- agreement
    def accept(self, peer: str, offer, now: float) -> str | None:
        """The responder's policy; None to agree (and expect the schedule), else the reason."""
        from node.protocols.release import Schedule, validate_schedule

        if offer.kind != "swap":
            return f"unsupported contract kind {offer.kind!r}"
        try:
            schedule = wire.decode(offer.schedule, Schedule, max_size=256 * 1024)
        except wire.WireError as exc:
            return f"malformed schedule: {exc.reason}"
        bad = validate_schedule(schedule)
        if bad:
            return bad
        own = {o.pubkey: o for o in (self.stack.protocol.own.offers if self.stack.protocol.own else [])}
        give = got = 0
        biggest = 0
        device = dclass = None
        for r in schedule.rounds:
            if r.giver == 1:
                o = own.get(r.chunk.pubkey)
                if o is None or o.address != r.chunk.address or o.amount != r.chunk.amount or o.expiry <= now:
                    return f"chunk {r.chunk.address} is not one of this node's current offers"
                give += o.usd_cents
            else:
                row = self._book_offer(r.chunk.address)
                if row is None or row["origin"] != peer or bytes(row["pubkey"]) != r.chunk.pubkey \
                        or row["amount"] != r.chunk.amount:
                    return f"chunk {r.chunk.address} is not an offer of {peer} in this node's book"
                got += row["usd_cents"]
                biggest = max(biggest, row["usd_cents"])
                device, dclass = bytes(row["device_id"]), row["device_class"]
        if got < VALUE_TOLERANCE * give:
            return f"value: would give {give / 100:.2f} USD for {got / 100:.2f} USD"
        if device is not None:
            engine = self.stack.engine
            if engine.reputation.record(device) is None:
                engine.reputation.observe(device, peer, dclass, now)
            refusal = engine.caps.check(device, peer, dclass, biggest, now)  # tit-for-tat: one chunk at risk
            if refusal is not None:
                return f"risk: {refusal.reason}"
        self.release.expect(peer, schedule)
        return None

    def _retract_released(self, d: dict[str, Any]) -> None:
        """Drop a deposit key our enclave just released from our own sheet (and list it as retracted once),
        so the next republish neither offers it nor asks the enclave to sign for a key it no longer holds
        (the enclave refuses: every republish after a swap failed, with a traceback, until a refresh)."""
        c = self.release.contracts.get(d.get("contract", ""))
        if c is None or not 0 <= d.get("round", -1) < len(c.rounds):
            return
        pub = c.rounds[d["round"]].chunk.pubkey
        own = self.stack.protocol.own
        if own is not None and any(o.pubkey == pub for o in own.offers):
            own.offers = [o for o in own.offers if o.pubkey != pub]
            own.retracted.append(pub)
        extra = self.stack.extra
        if "offers" in extra:
            extra["offers"] = [o for o in extra["offers"] if o.pubkey != pub]

    # -------------------------------------------------------------- outcomes
    def on_notify(self, n) -> None:
        """Driver notifications: a released key leaves our own sheet; a finished contract feeds reputation
        and is reported to the network."""
        if n.kind == "release.released":
            self._retract_released(n.detail)
            return
        if n.kind != "release.outcome":
            return
        d: dict[str, Any] = n.detail
        if d["contract_id"] in self.reported or not d.get("device"):
            return
        self.reported.add(d["contract_id"])
        from node.protocols.outcomes import make_report, report_for_outcome
        from node.risk.reputation import Action

        now = self.clock.now()
        device = bytes.fromhex(d["device"])
        rep = self.stack.engine.reputation
        if rep.record(device) is None:
            dclass = dict(self.stack.book.devices()).get(device, "unknown")
            rep.observe(device, d["peer"], dclass, now)
        status = d["status"]
        outcome = {"claimed": "claimed", "withheld": "withheld", "double-spent": "double-spent"}.get(status)
        if outcome is None:
            return
        if outcome == "double-spent":
            rep.mark_cheater(device, now)  # our own sweep failed: checked on our own ledger
        else:
            rep.apply(device, Action.CLAIMED if outcome == "claimed" else Action.WITHHELD, now)
        outcomes = self.stack.outcomes
        report = report_for_outcome(d, net=self.stack.net, reporter=self.stack.enclave.info().sign_pub, now=now,
                                    records=outcomes.records)  # carries the release record we received
        data = make_report(report, self.stack.enclave.sign)
        self.node.driver.submit(outcomes, lambda t: outcomes.publish(data, t))

    def contracts(self) -> list[dict[str, Any]]:
        out = []
        for key, c in sorted(self.release.contracts.items()):
            row = {"contract": key, "peer": c.rec.peer, "role": "initiator" if c.rec.role == 0 else "responder",
                   "state": c.rec.state, "reason": c.rec.reason, "rounds": len(c.rec.schedule.rounds),
                   "spent_ms": {k: round(v * 1e3, 1) for k, v in sorted(c.spent.items())}}
            if c.outcome is not None:
                row["outcome"] = c.outcome.to_json()
            out.append(row)
        return out
