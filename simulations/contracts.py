"""Real contracts in the virtual engine (``requests.contracts = "real"``).

In this mode every contract between two simulated devices is the swap as a contract: the schedule
compiled to the stdlib ``turns`` contract (``node.contracts.protocol.schedule.schedule_spec``) and run by the node's own
``ContractRun`` (``/keyswitch/contract-run/1``: open / opened, one release at a time as the contract
allows, funds checks and sweeps as ``LedgerCall`` commands), between the two devices' real in-process
enclaves (each decides and signs every release itself), through the engine's one interpreter
(``Engine.run_cmds``), on the engine's clock, network latencies and ``DevLedger``. Nothing here decides
an outcome: the client's swap-shaped outcome (``contract.withheld`` / ``contract.outcome``, from
``contract_swap.swap_outcome``) is what the engine counts, and the client's ``OutcomeReporter``
(``node.contracts.desk.swaps``, as a daemon's swap desk runs it) applies each settled claim and each withholding to its
reputation and gossips the report its enclave signs, carrying the release record the device's enclave signed.

What a chosen set becomes: per device in it, one swap. The client (party 0, it gives first) pays with
fresh deposits of its own asset, one per chunk it receives and of the same USD value (its "wallet": made
at the contract's start, never offered); the device gives the chosen chunks. The schedule is
``swap_schedule`` (a0, b0, a1, b1, ...: neither side is ever exposed to more than one chunk). The
agreement over ``/keyswitch/contract/1`` (``node.contracts.desk.swaps.SwapDesk.accept``) is not run: the device
``expect``s the spec, as it would after agreeing. Both sides sweep what they receive (claim policy
"sweep", the daemon's default). An honest device retracts its committed chunks from its sheet at
agreement (as ``SwapDesk`` does) and its owner deposits as many fresh chunks at once (one new sheet; supply
does not run dry over a day).

Adversaries, driven as attackers would (the host, not the code under test, misbehaves):

* ``withholder``: its host stops sending releases (drops every outgoing ``release`` message of the
  protocol, as the withholder tests' hosts do); its enclave's protocol is the honest one. The ``turns``
  contract has no time-lock: the client's side stays withheld (its outcome counted when it is withheld).
* ``broken_tee``: its enclave is ``DoubleReleaseEnclave``, a build whose double-release guard is off (a key
  may be committed to several open contracts, and a key released in one contract is released again in
  another); its host keeps offering the chunks it released and holds each outgoing release back
  ``adversaries.broken_tee.hold`` seconds so that more buyers of the same chunk pay their first chunk
  before the first of them sweeps it. The first client to sweep wins; the others find the funds gone
  (a ``double-spent`` claim record from their own sweep) and report it.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field

from node import wire
from node.contracts.protocol.run import PROTOCOL_ID
from node.contracts.protocol.schedule import Chunk, Schedule, swap_schedule
from node.tee.broken import BrokenEnclave

CONTRACT_PROTOCOL = PROTOCOL_ID


@contextmanager
def shared_pure_checks():
    """While the engine runs: the pure checks every full node repeats on the same outcome report, memoised
    across nodes (same inputs, same answer, as the engine's other memos): a report's release record
    (``outcomes.check_record_of``: its enclave signature and deposit address) and enclave signatures
    (``verify_domain_sig``). Each node still runs its own protocol on every report; only the repeated
    cryptography is shared. Restored on exit (a test's process is not left patched)."""
    import node.protocols.outcomes as outcomes
    import node.tee.client as client

    real_record, real_sig = outcomes.check_record_of, client.verify_domain_sig
    records: dict[tuple, object] = {}
    sigs: dict[tuple, bool] = {}

    def check_record_of(r):
        key = (r.net, r.release, r.subject, r.contract_id, r.asset, r.address)
        got = records.get(key)
        if got is None:
            if len(records) >= 50_000:
                records.clear()
            got = records[key] = real_record(r)
        return got

    def verify_domain_sig(pub: bytes, domain: str, digest: bytes, sig: bytes) -> bool:
        key = (pub, domain, digest, sig)
        ok = sigs.get(key)
        if ok is None:
            if len(sigs) >= 50_000:
                sigs.clear()
            ok = sigs[key] = real_sig(pub, domain, digest, sig)
        return ok

    outcomes.check_record_of, client.verify_domain_sig = check_record_of, verify_domain_sig
    try:
        yield
    finally:
        outcomes.check_record_of, client.verify_domain_sig = real_record, real_sig


class DoubleReleaseEnclave(BrokenEnclave):
    """The simulator's broken TEE: an in-process enclave whose double-release guard is off. I1 (one key, one
    open contract) is not enforced, and a key released in one contract is rolled back to "held" (a replayed
    sealed state, ``BrokenEnclave``) and released again when another contract asks for it. Each release is
    a real one, signed by the enclave as any. Lives in ``simulations/``: neither the daemon nor any setting
    can select it."""

    def __init__(self, *, clock, seed: bytes) -> None:
        super().__init__(None, mode="double-release", clock=clock, seed=seed)
        contracts = self._core.contracts
        contracts.committed_to = lambda pub: None  # I1 off
        contracts.committed_all = lambda: {}

    def _release_again(self, cid: bytes, index: int) -> None:
        """If our chunk ``index`` of contract ``cid`` was released by another contract, roll it back."""
        with self._lock:
            try:
                st, spec = self._core.contracts._get(cid)
                pub = spec.parties[st.me].chunks[index].pubkey
            except Exception:  # not ours to decide here: the honest call refuses it
                return
            if any(m.giver == st.me and m.index == index for m in st.moved):
                return  # released by this very contract: a resend, not a second release
        if self._rollback(pub):
            self._rolled.add(pub)

    def contract_release(self, cid: bytes, index: int, receiver: int) -> bytes:
        self._release_again(cid, index)
        return super().contract_release(cid, index, receiver)

    def contract_step(self, cid: bytes, record: bytes, index: int, receiver: int, ack_digest: bytes,
                      export: bool = False):
        self._release_again(cid, index)
        return super().contract_step(cid, record, index, receiver, ack_digest, export)


@dataclass
class Deal:
    """One swap the engine started: the client's view (``key``: its contract id hex) and what it cost."""

    client: int
    device: int
    offers: tuple  # the chosen offers (risk.types.Candidate) of this device
    schedule: Schedule
    cents: dict[bytes, int]  # deposit key -> USD cents (both sides' chunks)
    started: float
    outcome: dict | None = None
    ended: float = 0.0


@dataclass
class Stats:
    started: int = 0
    not_started: int = 0  # a chosen offer the device no longer holds in its deposits
    rounds_scheduled: int = 0
    released_notes: int = 0  # contract.released notifications (one per release record sent)
    by_status: dict[str, int] = field(default_factory=dict)  # client outcome status -> contracts
    honest_losses_cents: int = 0
    honest_losses_unreported_cents: int = 0
    dropped_releases: int = 0  # withholders' hosts
    held_releases: int = 0  # broken TEEs' hosts
    replenished: int = 0  # chunks deposited again by devices' owners


class ContractLayer:
    """The engine's real-contract mode: one ``ContractRun`` per device (``node.runner``)."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.protocol = CONTRACT_PROTOCOL
        self.deals: dict[str, Deal] = {}  # contract id hex -> deal
        self.reporters: dict[int, object] = {}  # full node idx -> its OutcomeReporter
        self.stats = Stats()
        broken = sim.sc["adversaries"].get("broken_tee", {})
        self.hold = float(broken.get("hold", 0.0))
        self.turns_at = sim.t0 + float(broken.get("after", 0.0))
        self.round_timeout = float(sim.sc["requests"]["round_timeout"])

    # ------------------------------------------------------------------ setup
    def enclave(self, node, seed: bytes):
        """The enclave of a publishing node: the broken build for a broken TEE, else the honest one."""
        from node.tee.client import InProcessEnclave

        if self.sim.role.get(node.idx) == "broken_tee":
            return DoubleReleaseEnclave(clock=self.sim.clock, seed=seed)
        return InProcessEnclave(None, clock=self.sim.clock, seed=seed)

    def attach(self, node) -> None:
        """Give a publishing node its contract runner (and a full node its outcome reporter)."""
        from node.contracts.protocol.run import ContractRun, RunRecord
        from node.protocols.offers import AttestationCache
        from node.contracts.protocol.claims import MemoryContractStore, sweep_claimer

        sim = self.sim
        binding = node.enclave.binding_for(sim.net, node.peer_id)
        node.runner = ContractRun(
            net=sim.net, enclave=node.enclave, binding=binding, quote=node.enclave.quote(binding, now=sim.now),
            attestations=AttestationCache(sim._shared_verify), check_funds=sim.ledger.balance,
            claim=sweep_claimer(lambda: node.enclave, sim.ledger, lambda c: self._owner_address(node, c)),
            store=MemoryContractStore(record_type=RunRecord), claim_policy="sweep", round_timeout=self.round_timeout)
        if node.outcomes is not None:
            from node.contracts.desk.swaps import OutcomeReporter

            self.reporters[node.idx] = OutcomeReporter(
                net=sim.net, engine=node.engine, outcomes=lambda: node.outcomes, enclave=lambda: node.enclave,
                devices=lambda: node.book.devices(),
                publish=lambda data: sim.run_cmds(node, node.outcomes.publish(data, sim.now), node.outcomes))

    def _owner_address(self, node, chunk: Chunk) -> str:
        """A fresh address of the node's owner for a swept chunk (a daemon derives it from its claim seed)."""
        import coincurve

        from node.assets import address_for

        k = hashlib.sha256(b"keyswitch-sim/owner/%d/%d/" % (self.sim.seed, node.idx) + chunk.pubkey).digest()
        return address_for(chunk.asset, coincurve.PrivateKey(k).public_key.format())

    # ------------------------------------------------------------------ contracts
    def start(self, client, offers: tuple) -> None:
        """The client's chosen set: one swap per device in it."""
        from node.contracts.spec import spec_id
        from node.contracts.protocol.schedule import schedule_spec

        sim = self.sim
        by_dev: dict[bytes, list] = {}
        for c in offers:
            by_dev.setdefault(c.device_id, []).append(c)
        for dev, mine in by_dev.items():
            device = sim.nodes[sim.by_peer[mine[0].owner_id]]
            held = {d.address: d for d in device.deposits}
            if any(c.address not in held for c in mine) or device.runner is None or device is client:
                self.stats.not_started += 1
                self._ended(client, tuple(mine), None)
                continue
            give = [Chunk(d.asset, d.address, d.pubkey, d.amount) for d in (held[c.address] for c in mine)]
            pay = self._wallet(client, [c.usd_cents for c in mine])
            schedule = swap_schedule([p for p, _ in pay], give)
            cents = {p.pubkey: v for p, v in pay} | {g.pubkey: c.usd_cents for g, c in zip(give, mine)}
            spec = schedule_spec(schedule, [client.runner.binding, device.runner.binding])
            cid = spec_id(spec).hex()
            device.runner.expect(spec)  # stands in for the agreement (SwapDesk.accept)
            try:  # (the client checks the device's committed funds on the ledger first)
                cmds = client.runner.start(spec, sim.now)
            except ValueError as exc:  # e.g. the device's chunk was swept meanwhile: the contract never opens
                sim.log({"t": sim._t(), "ev": "contract-not-opened", "client": client.idx, "reason": str(exc)[:160]})
                self.stats.not_started += 1
                self._ended(client, tuple(mine), None)
                continue
            self.deals[cid] = Deal(client.idx, device.idx, tuple(mine), schedule, cents, sim.now)
            self.stats.started += 1
            self.stats.rounds_scheduled += len(schedule.rounds)
            sim.run_cmds(client, cmds, client.runner)

    def _wallet(self, client, cents: list[int]) -> list[tuple[Chunk, int]]:
        """Fresh deposits of the client's asset, one per value, funded on the ledger (never offered)."""
        asset = client.deposits[0].asset if client.deposits else self.sim.sc["assets"][0]["symbol"]
        return [(Chunk(d.asset, d.address, d.pubkey, d.amount), d.usd_cents)
                for d in self._fund(client, [(asset, v) for v in cents])]

    def _fund(self, node, wanted: list[tuple[str, int]]) -> list:
        """New keys in ``node``'s enclave, each funded on the ledger with ``(asset, USD cents)`` worth: its
        ``Deposit``s (as ``make_deposits`` makes them, without re-verifying the vault each time)."""
        from node.assets import address_for
        from node.assets.prices import chunk_amount, usd_value_cents
        from node.app.deposits import Deposit

        sim, out = self.sim, []
        for pub, (asset, v) in zip(node.enclave.generate_keys(len(wanted)), wanted):
            price = sim._prices().price(asset, sim.now)
            amount = chunk_amount(asset, v, price)
            address = address_for(asset, pub)
            txid = sim.ledger.faucet(asset, address, amount)
            out.append(Deposit(pub, asset, address, amount, max(1, usd_value_cents(asset, amount, price)),
                               str(price.usd_per_unit), price.at, txid, sim.now))
        return out

    # ------------------------------------------------------------------ the host's network
    def cheating(self, node) -> bool:
        """Does ``node``'s host cheat now? A withholder always; a broken TEE from ``broken_tee.after`` s on
        (before, it behaves as an honest device would and builds a record)."""
        role = self.sim.role.get(node.idx)
        return role == "withholder" or (role == "broken_tee" and self.sim.now >= self.turns_at)

    def outgoing(self, node, cmd) -> float | None:
        """Extra delay of an outgoing release-protocol request by ``node``'s host, or None: dropped."""
        if not self.cheating(node):
            return 0.0
        role = self.sim.role.get(node.idx)
        try:
            kind = wire.decode(cmd.data, wire.Signed).kind
        except wire.WireError:
            return 0.0
        if kind != "release":
            return 0.0
        if role == "withholder":
            self.stats.dropped_releases += 1
            return None
        self.stats.held_releases += 1
        return self.hold

    # ------------------------------------------------------------------ notifications
    def on_notify(self, node, note) -> None:
        kind, d = note.kind, note.detail
        reporter = self.reporters.get(node.idx)
        if reporter is not None and kind in ("contract.received", "contract.claim", "contract.withheld"):
            reporter.on_contract_notify(note, self.sim.now)  # as the daemon's swap desk does
        if kind == "contract.released":
            self.stats.released_notes += 1
        elif kind == "contract.opened" and not (self.cheating(node) and self.sim.role.get(node.idx) == "broken_tee"):
            if d["party"] == 1:  # the device: its committed chunks leave its sheet
                self._replenish(node, {bytes.fromhex(p) for p in d["committed"]})
        elif kind in ("contract.withheld", "contract.outcome") and "outcome" in d:
            deal = self.deals.get(d["contract"])
            if deal is not None and deal.client == node.idx and deal.outcome is None:
                self._client_outcome(node, deal, d["outcome"])

    def _client_outcome(self, client, deal: Deal, d: dict) -> None:
        """The client's side ended: its exposure is released, fees are charged on a contract that ran, and
        its loss is what it gave minus what it claimed (values of the chunks, from their deposits)."""
        sim = self.sim
        deal.outcome, deal.ended = d, sim.now
        status = d["status"]
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        given = sum(deal.cents[rd.chunk.pubkey] for rd in deal.schedule.rounds if rd.giver == 0)
        released = d["released"]
        gave = sum(deal.cents[rd.chunk.pubkey] for rd in [r for r in deal.schedule.rounds if r.giver == 0][:released])
        got = sum(deal.cents.get(bytes.fromhex(c["deposit_pub"]), 0) for c in d["chunks"] if c["status"] == "claimed")
        loss = max(0, gave - got)
        honest = sim.device_kind.get(client.device_id, "honest") == "honest"
        if honest:
            self.stats.honest_losses_cents += loss
            if loss and status not in ("double-spent", "withheld"):  # a loss no outcome report names
                self.stats.honest_losses_unreported_cents += loss
        self._ended(client, deal.offers, status if status != "failed" else None, loss if honest else 0)
        dev = sim.nodes[deal.device]
        if status == "double-spent":
            spent = next(c for c in d["chunks"] if c["status"] == "double-spent")
            sim.m.double_spends.append({"t": sim._t(), "at": sim.now, "device": dev.device_id.hex(),
                                        "client": client.idx, "address": spent["address"], "txid": spent["txid"],
                                        "cents": loss})
            sim.m.cheater_at.setdefault((dev.device_id, client.idx), sim.now)  # its own sweep: seen on its ledger
            client.book.drop_device(dev.device_id)
        elif status == "withheld":
            sim.m.withheld["contracts"] += 1
            sim.m.withheld["reports"] += 1
        sim.log({"t": sim._t(), "ev": "contract", "client": client.idx, "device": deal.device, "status": status,
                 "rounds": len(deal.schedule.rounds), "released": released, "received": d["received"],
                 "given_cents": given, "loss_cents": loss, "reason": d["reason"][:160]})

    def _ended(self, client, offers: tuple, status: str | None, loss: int = 0) -> None:
        """Exposure released; a fee on a contract that ran (any status but failed / not started)."""
        self.sim._contract_ended(client, offers, charged=status is not None)
        self.sim.m.fees["honest_losses_cents"] += loss

    def _replenish(self, device, gone: set[bytes]) -> None:
        """An honest device agreed to a swap: the chunks it committed leave its sheet (``SwapDesk`` does the
        same) and its owner deposits as many fresh ones at once: one new sheet, supply kept constant."""
        keep = [x for x in device.deposits if x.pubkey not in gone]
        fresh = self._fund(device, [(x.asset, x.usd_cents) for x in device.deposits if x.pubkey in gone])
        self.stats.replenished += len(fresh)
        device.deposits = keep + fresh
        if device.offers.own is not None:
            self.sim._set_own(device, self.sim._own_sheet(device, fresh=True))

    # ------------------------------------------------------------------ summary
    def _broken_summary(self) -> dict:
        """The broken TEEs: how many released a key twice (their enclaves' count), how many of those every
        other full node isolated, and how long that took from the first double spend a victim's sweep found."""
        sim, m = self.sim, self.sim.m
        full = [n for n in sim.nodes if n.full]
        broken = [n for n in sim.nodes if sim.role.get(n.idx) == "broken_tee"]
        twice = [n for n in broken if getattr(n.enclave, "releases", 0) > 0]
        times, found = [], 0
        for n in twice:
            t0 = min((x["at"] for x in m.double_spends if x["device"] == n.device_id.hex()), default=None)
            if t0 is None:
                continue  # its second buyer's contract has not ended yet
            found += 1
            seen = [m.cheater_at.get((n.device_id, f.idx)) for f in full if f is not n]
            if all(t is not None for t in seen):
                times.append(round(max(seen) - t0, 4))
        return {"devices": len(broken), "released_twice": len(twice), "double_spend_found": found,
                "found_by_run_end_share": round(found / len(twice), 4) if twice else None,
                "isolated_everywhere": len(times), "not_isolated": found - len(times),
                "isolate_all_s_max": max(times, default=None),
                "isolate_all_s_mean": round(sum(times) / len(times), 4) if times else None}

    def summary(self) -> dict:
        """What the release code did: contracts by the client's outcome, release records journaled by the
        enclaves (each one a signed release of a deposit key), second releases by broken enclaves."""
        sim, s = self.sim, self.stats
        records = sum(sum(1 for e in n.enclave._core.journal() if e.op == "release")
                      for n in sim.nodes if n.enclave is not None)
        ended = [x for x in self.deals.values() if x.outcome is not None]
        return {
            "mode": "real",
            "started": s.started,
            "not_started": s.not_started,
            "ended": len(ended),
            "running_at_end": s.started - len(ended),
            "by_status": dict(sorted(s.by_status.items())),
            "rounds_scheduled": s.rounds_scheduled,
            "rounds_of_claimed_contracts": sum(len(x.schedule.rounds) for x in ended
                                               if x.outcome["status"] == "claimed"),
            "release_records": records,
            "release_notes": s.released_notes,
            "second_releases": sum(getattr(n.enclave, "releases", 0) for n in sim.nodes if n.enclave is not None),
            "honest_losses_cents": s.honest_losses_cents,
            "honest_losses_unreported_cents": s.honest_losses_unreported_cents,
            "broken": self._broken_summary(),
            "withheld_releases_dropped": s.dropped_releases,
            "broken_releases_held": s.held_releases,
            "chunks_replenished": s.replenished,
            "duration_s_mean": (round(sum(x.ended - x.started for x in ended) / len(ended), 3) if ended else None),
        }
