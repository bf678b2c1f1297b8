"""The swap as a contract run over ``/keyswitch/contract-run/1`` (issue #19), host side: what ``SwapDesk`` keeps
for the swaps it proposes and agrees to (``SwapDesk.swaps``).

* **The spec** (``spec``): the stdlib ``turns`` contract of the schedule ``SwapDesk.plan_swap`` makes, each chunk
  with its declared USD cents (signed by every enclave, checked by each runner at its own price), built from the
  peer's attested binding (``who``). Its one-chunk bound is release/1's: the enclaves enforce ``turns``.
* **Who commits first**: the responder. It agrees (``SwapDesk._accept_spec``: party 1, the stdlib turns by exact
  hash) and opens the contract once its answer is out (``contract.accepted`` -> ``start_agreed``); the proposer
  expects it (``propose``) and its enclave takes it already signed by the responder's, so, as in release/1, the
  proposer never commits its chunks to a contract the peer did not sign.
* **A proposal** holds the peer's exposure until the contract runs (``holds``), across a restart too (``load``:
  the runner keeps the agreement in its ``agreed`` store), for ``RESERVE_TTL``; it ends failed, for the watchers
  (a request's swaps) and ``contracts()``, when our enclave refuses the peer's open (``refused_open``) or the
  peer never opens it (``end_proposals``).
* **Its end**: one outcome report per swap, the swap-shaped outcome of ``contract.withheld`` /
  ``contract.outcome`` (``ended``), as release/1 did, not one per claim; a withheld swap is
  over for the holds (``withheld``): release/1's WITHHELD was terminal.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("keyswitch.swaps")
KEEP_UNOPENED = 64  # swaps we proposed that ended unopened, kept as rows of ``contracts()``


def is_swap(spec) -> bool:
    """Is ``spec`` a two-party swap (the stdlib ``turns`` contract ``SwapRuns.spec`` builds)? By the exact hash."""
    from node.contracts import stdlib

    return len(spec.parties) == 2 and stdlib.source_hash(spec.source) == stdlib.SOURCE_HASHES["turns"]


class SwapRuns:
    """``desk``: the ``SwapDesk`` (its runner ``run``, stack, clock, watchers, reporter and holds)."""

    def __init__(self, desk) -> None:
        self.desk = desk
        #: swap specs we agreed to as the responder, started once our answer is out (``contract.accepted``)
        self.starts: list = []
        #: contract id hex -> (steps whose key our enclave took, the protocol clock's time it took the latest:
        #: ``contract.received``'s "at"), in memory: once every key due is in, with the peer's, when every key was
        #: exchanged (``keys_in_at``, ``benchmarks.swap``)
        self.keys_in: dict[str, tuple[frozenset[int], float]] = {}
        #: swaps we proposed and the peer has not opened yet: contract id hex -> (agreed at, spec)
        self.proposed: dict[str, tuple[float, Any]] = {}
        #: proposals that ended unopened (refused by our enclave, or lapsed): (spec, why), for ``end_proposals``
        self.unopened: list[tuple[Any, str]] = []
        #: the last ``KEEP_UNOPENED`` of them as ``contracts()`` rows (release/1 kept a failed proposal's record)
        self.unopened_rows: dict[str, dict[str, Any]] = {}

    # -------------------------------------------------------------- the proposer
    def spec(self, peer: str, schedule, usd: list[int]):
        """The stdlib ``turns`` contract of ``schedule`` (we are party 0) with ``peer``'s attested binding, each
        chunk with its declared USD cents ``usd`` (per round)."""
        from node.contracts import stdlib
        from node.contracts.spec import Commit, PartySpec, make_spec

        chunks: list[list] = [[], []]
        order: list[tuple[int, int]] = []
        for rd, cents in zip(schedule.rounds, usd):
            c = rd.chunk
            order.append((rd.giver, len(chunks[rd.giver])))
            chunks[rd.giver].append(Commit(c.pubkey, c.asset, c.address, c.amount, cents))
        bindings = [self.desk._identity().binding, self.desk._known(peer)]
        return make_spec(self.desk.stack.net, stdlib.source("turns"), {},
                         [PartySpec(b, chunks[k]) for k, b in enumerate(bindings)], order)

    def load(self) -> None:
        """The proposals a restart found in the runner's agreement store (ours: we are party 0)."""
        from node.contracts.spec import decode_spec

        me = self.desk._identity().binding.peer_id
        for key, rec in self.desk.run.agreed.items():
            spec = None if isinstance(rec, str) else decode_spec(rec.spec)
            if spec is not None and not isinstance(spec, str) and is_swap(spec) and spec.ids[0] == me:
                self.proposed[key] = (rec.at, spec)

    def propose(self, spec, now: float) -> list:
        """We offer the swap ``spec``: expected from now, its exposure held until it runs. On the driver."""
        from node.contracts.spec import spec_id

        self.proposed[spec_id(spec).hex()] = (now, spec)
        self.desk.run.expect(spec, now)
        return []

    def withdraw(self, spec, now: float) -> list:
        """The offer of ``spec`` came to nothing: no longer expected, nor held. On the driver."""
        from node.contracts.spec import spec_id

        cid = spec_id(spec)
        self.proposed.pop(cid.hex(), None)
        self.desk.sync_holds(now)
        return self.desk.run.unexpect(cid)

    def holds(self, now: float, ttl: float, present: set, wanted: dict) -> None:
        """``sync_holds``'s part: each proposal not opened holds the peer's exposure (its reservation becomes this
        hold, which a restart rebuilds) until it runs or ``ttl`` seconds passed (then it ends unopened)."""
        runs = self.desk.run.runs
        for key, (at, spec) in list(self.proposed.items()):
            if key in runs or self.desk.lapses.due("p-" + key, at, ttl, now):  # (monotonic, as resumed agreements)
                del self.proposed[key]
                if key not in runs:
                    self.unopened.append((spec, f"the peer did not open the contract within {ttl:.0f} s"))
            else:
                present.add(("run", key))
                wanted["p-" + key] = self.desk._spec_holds(spec, 0)

    def refused_open(self, key: str, reason: str) -> None:
        """Our enclave refused the peer's open of a swap we proposed (as release/1's initiator refusing an agree):
        the proposal ends failed."""
        at_spec = self.proposed.pop(key, None) if key not in self.desk.run.runs else None
        if at_spec is not None:
            self.unopened.append((at_spec[1], f"our side refused the contract: {reason}"))

    def declined(self, key: str, reason: str) -> None:
        """The peer agreed to a swap we proposed, then could not start it (``contract.declined``): the proposal
        ends failed now, with its reason, not when it lapses."""
        at_spec = self.proposed.pop(key, None) if key not in self.desk.run.runs else None
        if at_spec is not None:
            self.unopened.append((at_spec[1], f"the peer could not start the contract: {reason}"))

    def end_proposals(self) -> None:
        """Proposals that ended before the peer opened them: a failed swap outcome to the watchers (as release/1's
        failed proposal), a row for ``contracts()``, no longer expected. On the trio thread."""
        from node.contracts.spec import spec_id
        from node.contracts.protocol.run import FAILED
        from node.contracts.protocol.swap import swap_outcome

        desk = self.desk
        ended, self.unopened = self.unopened, []
        if ended:
            desk.sync_holds(desk.clock.now())  # (their holds go)
        for spec, why in ended:
            d = swap_outcome(spec, spec_id(spec), 0, FAILED, why, [], []).to_json()
            log.info("swap %s with %s: %s", d["contract_id"][:16], d["peer"], why)
            self.unopened_rows[d["contract_id"]] = {**self.row(d["contract_id"], spec), "state": FAILED,
                                                    "reason": why, "outcome": d}
            while len(self.unopened_rows) > KEEP_UNOPENED:
                del self.unopened_rows[next(iter(self.unopened_rows))]
            node = getattr(desk, "node", None)
            if node is not None:
                node.driver.submit(desk.run, lambda now, cid=spec_id(spec): desk.run.unexpect(cid))
            for w in list(desk.watchers):
                w(d)

    @staticmethod
    def row(key: str, spec) -> dict[str, Any]:
        """A ``contracts()`` row of a swap we proposed that the peer has not opened (yet)."""
        return {"contract": key, "kind": "swap", "parties": list(spec.ids), "peer": spec.ids[1], "role": "initiator",
                "state": "proposed", "reason": "", "rounds": len(spec.steps())}

    def rows(self) -> list[dict[str, Any]]:
        """``contracts()`` rows of the proposals not opened, then of those that ended unopened."""
        runs = self.desk.run.runs
        out = [self.row(key, spec) for key, (_at, spec) in sorted(self.proposed.items()) if key not in runs]
        return out + [row for key, row in sorted(self.unopened_rows.items()) if key not in runs]

    # -------------------------------------------------------------- the responder
    def start_agreed(self, now: float) -> list:
        """Open the swap specs we agreed to as the responder (on the driver, as ``ContractRun``'s call)."""
        cmds: list = []
        specs, self.starts = self.starts, []
        for spec in specs:
            try:
                cmds += self.desk.run.start(spec, now)
            except Exception as exc:  # our enclave or a funds check refused it: the proposer is told at once
                log.warning("the swap we agreed to could not start: %s: %s", type(exc).__name__, exc)
                self.desk.unreserve_spec(spec)
                cmds += self.desk.run.decline(spec, str(exc), now)
        return cmds

    # -------------------------------------------------------------- both
    def run_of(self, key: str):
        """The run of contract ``key`` if it is a swap, else None."""
        r = self.desk.run.runs.get(key)
        return r if r is not None and is_swap(r.spec) else None

    def ended(self, n) -> None:
        """A swap withheld or ended (``contract.withheld`` / ``contract.outcome``): its swap-shaped outcome reported
        once per contract and handed to the watchers. A claim (``contract.claim``) is reported with it."""
        d = n.detail.get("outcome")
        if n.kind == "contract.claim" or not d:
            return
        desk = self.desk
        desk.reporter.report(d["contract_id"], d, d.get("peer", ""), desk.clock.now())
        for w in list(desk.watchers):
            w(d)

    def outcome(self, r):
        """A swap run's outcome (``claims.Outcome``) once it was withheld or ended, else None: the runner's, or
        for a run that ended before this process started, from our enclave's view of what moved."""
        from node.contracts.protocol.run import RUNNING
        from node.contracts.protocol.swap import swap_outcome

        from node.tee.client import EnclaveRefused

        if r.outcome is None and r.rec.state != RUNNING:
            try:  # (forgotten by our enclave: what moved is in the record)
                moved = r.rec.moved or self.desk.stack.enclave.contract_status(r.cid).moved
            except EnclaveRefused:  # (dropped: a runner never signed it, nothing moved)
                moved = []
            r.outcome = swap_outcome(r.spec, r.cid, r.me, r.rec.state, r.rec.reason, moved, r.rec.claims)
        return r.outcome

    @staticmethod
    def withheld(r) -> bool:
        """A swap run that was withheld: over for the holds, as release/1's WITHHELD (what it cost is lost;
        ``turns`` has no time-lock, so nothing more moves unless the peer resumes)."""
        from node.contracts.protocol.run import WITHHELD

        return r.rec.state == WITHHELD and is_swap(r.spec)
