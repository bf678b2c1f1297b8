"""The two-party swap as a contract run over ``/keyswitch/contract-run/1`` (issue #19: one contract protocol), sans-IO.

A release/1 swap already was a contract: ``schedule.schedule_spec`` compiles its schedule to the stdlib ``turns``
contract (both parties' chunks and bindings, the step order = the schedule's rounds), which each enclave opens
and signs, so a swap's contract id, its enclave state and its release records (round = step) are the same
whichever protocol carries them. What the swap adds on top of a language contract lives here:

* ``swap_outcome``: the swap-shaped ``Outcome`` (released / received / lost, each chunk of the peer's with its
  claim) that the request desk and the outcome reporter read, computed from a contract-run record and its
  enclave's view of what moved (``contract_run`` attaches it to ``contract.withheld`` / ``contract.outcome``
  for a two-party contract);
* ``run_record_of`` / ``migrate_release_records``: a node's release/1 records (``contracts/*.rec``) turned into
  contract-run records (``runs/*.rec``) with the same contract id, so a contract in flight when the node
  upgraded resumes over contract-run/1 (its enclave already holds the contract and the signatures).
"""

from __future__ import annotations

import hashlib

import msgspec

from node.attest.binding import Binding
from node.contracts.spec import ContractSpec, decode_spec, spec_id
from node.contracts.protocol.claims import ChunkOutcome, ClaimRecord, Outcome, RecordStore
from node.contracts.protocol.schedule import Schedule, schedule_spec

#: the states of a release/1 record (``ContractRecord.state``); a contract-run record uses the same words but for
#: "proposed" (a release/1 proposal never agreed, which moved nothing)
PROPOSED, RUNNING, DONE, WITHHELD, FAILED = "proposed", "running", "done", "withheld", "failed"


class ContractRecord(msgspec.Struct, array_like=True):
    """A release/1 swap's host record (``<datadir>/contracts/*.rec``, written by nodes before the protocol was
    retired): read only to migrate it (``migrate_release_records``). The enclave's journal keeps what moved."""

    net: str
    role: int  # our party index
    peer: str
    schedule: Schedule
    bindings: list[Binding]  # party order; a proposal holds only ours
    quotes: list[bytes]
    state: str
    reason: str = ""
    acked: int = -1  # highest round of ours the peer acknowledged
    claims: list[ClaimRecord] = []
    version: int = 1
    #: per round, the USD cents the peer declared for its chunk at agreement (0: none; ours: 0), checked at our
    #: price before each release of ours that follows it (``funds_state``, ``risk.price_tolerance``)
    usd: list[int] = []



def swap_outcome(spec: ContractSpec, cid: bytes, me: int, state: str, reason: str, moved, claims) -> Outcome | None:
    """The outcome of a two-party contract from our side (None for any other): ``moved`` the enclave's
    ``Moved(giver, index, receiver)`` list, ``claims`` the record's ``ClaimRecord``s by step. ``status``:
    "double-spent" if a received key's funds were gone, "failed" if the contract stopped (cheat, local
    refusal), "withheld" if it is withheld or ended with fewer chunks received than released, else "claimed"."""
    if len(spec.parties) != 2 or me not in (0, 1):
        return None
    peer = 1 - me
    by_step = {c.round: c for c in claims}
    got = {m.index for m in moved if m.giver == peer and m.receiver == me}
    released = sum(1 for m in moved if m.giver == me != m.receiver)
    chunks: list[ChunkOutcome] = []
    for i, ch in enumerate(spec.parties[peer].chunks):
        step = spec.step_of(peer, i)
        if i in got:
            cl = by_step.get(step)
            chunks.append(ChunkOutcome(step, ch.pubkey, ch.asset, ch.address, "received") if cl is None else
                          ChunkOutcome(step, ch.pubkey, ch.asset, ch.address, cl.status, cl.txid, cl.detail))
        elif state in (WITHHELD, FAILED):
            chunks.append(ChunkOutcome(step, ch.pubkey, ch.asset, ch.address,
                                       "withheld" if state == WITHHELD else "not-received", "", reason))
    lost = max(0, released - len(got))
    if any(c.status == "double-spent" for c in chunks):
        status = "double-spent"
    elif state == FAILED:
        status = "failed"
    elif state == WITHHELD or lost:
        status = "withheld"
    else:
        status = "claimed"
    b = spec.parties[peer].binding
    return Outcome(cid, b.peer_id, status, reason, released, len(got), lost, chunks,
                   hashlib.sha256(b.sign_pub).digest())


def run_record_of(rec: ContractRecord, record_type: type):
    """The contract-run record (``record_type``: ``contract_run.RunRecord``, which imports this module) of a
    release/1 record (same spec, so same contract id), or why it cannot resume: a proposal never agreed (one
    binding) moved nothing; the node proposes again if it still wants it."""
    if rec.state == PROPOSED:
        return "a proposal the peer never agreed to: nothing was released; propose the swap again"
    if len(rec.bindings) != 2:
        return f"a {rec.state} contract whose record names {len(rec.bindings)} binding(s), not both parties'"
    spec = schedule_spec(rec.schedule, rec.bindings)
    state = {RUNNING: "running", WITHHELD: "withheld", DONE: "done", FAILED: "failed"}[rec.state]
    acked = [r for r, rd in enumerate(rec.schedule.rounds) if rd.giver == rec.role and r <= rec.acked]
    # (the signatures over the contract id are in our enclave already: contract_run's resume asks it for ours)
    return record_type(spec.encode(), state, rec.reason, [], acked, list(rec.claims))


def migrate_release_records(old: RecordStore, runs: RecordStore, record_type: type) -> list[tuple[str, str]]:
    """Move every release/1 record of ``old`` into ``runs`` (``record_type`` records, keyed by the same contract
    id), each written before the old one is deleted (a crash in between migrates it again, to the same
    record). Returns (old key, what happened) per record: "migrated", "dropped: why" (a proposal never
    agreed: nothing moved) or "left in place: why" (it does not decode, or cannot be a contract-run record)."""
    done: list[tuple[str, str]] = []
    for key, rec in old.items():
        if isinstance(rec, str):
            done.append((key, f"left in place: it does not decode ({rec}); move it aside to silence this"))
            continue
        new = run_record_of(rec, record_type)
        if isinstance(new, str) and rec.state == PROPOSED:
            old.delete(key)
            done.append((key, f"dropped: {new}"))
            continue
        if isinstance(new, str):  # (its claims stay readable where they are: node.app.balance reads both stores)
            done.append((key, f"left in place: {new}"))
            continue
        runs.put(spec_id(decode_spec(new.spec)).hex(), new)
        old.delete(key)
        done.append((key, "migrated"))
    return done
