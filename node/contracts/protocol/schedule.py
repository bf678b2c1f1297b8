"""A two-party swap's schedule and the contract it compiles to, sans-IO.

A **schedule** is an ordered list of rounds; round ``r`` says which party (``giver``, 0 or 1) releases which
deposit key (``chunk``) to whom (``taker``). ``swap_schedule(a_chunks, b_chunks)`` alternates one chunk at a
time (a0, b0, a1, b1, ...), so neither party is ever exposed to more than one chunk; ``validate_schedule``
refuses any schedule that would expose a party to more. ``schedule_spec`` compiles a schedule to the stdlib
``turns`` contract (both parties' chunks and bindings; the step order = the schedule's rounds), which each
enclave opens and signs and ``node.contracts.protocol.run`` (``/keyswitch/contract-run/1``) runs; the enclave
releases a key only when that contract allows it (its own view: its releases and the keys it accepted), so the
one-chunk bound is enforced inside the enclaves, not by the hosts.
"""

from __future__ import annotations

import hashlib

import msgspec

from node import wire
from node.attest.binding import Binding
from node.contracts.spec import Commit, ContractSpec, PartySpec, make_spec, spec_id

MAX_ROUNDS = 1000


class Chunk(msgspec.Struct, array_like=True, frozen=True):
    asset: str
    address: str
    pubkey: bytes  # 33-byte compressed deposit key
    amount: int


class Round(msgspec.Struct, array_like=True, frozen=True):
    giver: int  # party index that releases
    taker: int  # party index that receives
    chunk: Chunk


class Schedule(msgspec.Struct, array_like=True, frozen=True):
    rounds: list[Round]
    parties: int = 2
    version: int = 1


def swap_schedule(a_chunks: list[Chunk], b_chunks: list[Chunk]) -> Schedule:
    """A two-party swap, one chunk at a time: a0, b0, a1, b1, ... (party 0 = A gives first)."""
    rounds: list[Round] = []
    for i in range(max(len(a_chunks), len(b_chunks))):
        if i < len(a_chunks):
            rounds.append(Round(0, 1, a_chunks[i]))
        if i < len(b_chunks):
            rounds.append(Round(1, 0, b_chunks[i]))
    s = Schedule(rounds)
    bad = validate_schedule(s)
    if bad:
        raise ValueError(bad)
    return s


def exposure(schedule: Schedule) -> list[int]:
    """Per party: the most chunks it has ever released without being given back as many."""
    worst = [0] * schedule.parties
    net = [0] * schedule.parties
    for rd in schedule.rounds:
        net[rd.giver] += 1
        net[rd.taker] -= 1
        worst[rd.giver] = max(worst[rd.giver], net[rd.giver])
    return worst


def validate_schedule(s: Schedule) -> str | None:
    if s.version != 1:
        return f"unsupported schedule version {s.version}"
    if s.parties != 2:
        return "only two-party schedules are supported"
    if not 1 <= len(s.rounds) <= MAX_ROUNDS:
        return f"a schedule has 1..{MAX_ROUNDS} rounds"
    seen: set[bytes] = set()
    for i, rd in enumerate(s.rounds):
        if {rd.giver, rd.taker} != {0, 1}:
            return f"round {i}: giver and taker must be the two parties 0 and 1"
        pk = rd.chunk.pubkey
        if len(pk) != 33 or pk[0] not in (2, 3):
            return f"round {i}: deposit key is not a compressed secp256k1 key"
        if pk in seen:
            return f"round {i}: deposit key appears twice"
        seen.add(pk)
        if rd.chunk.amount <= 0 or not rd.chunk.asset or not rd.chunk.address:
            return f"round {i}: chunk needs an asset, an address and a positive amount"
    worst = exposure(s)
    if max(worst) > 1:
        return f"a party would be exposed to {max(worst)} chunks at once (at most 1)"
    return None


def schedule_hash(s: Schedule) -> bytes:
    return hashlib.sha256(wire.encode(s)).digest()


def schedule_spec(schedule: Schedule, bindings: list[Binding]) -> ContractSpec:
    """The schedule compiled to a contract the enclaves run: the stdlib ``turns`` contract (party 0 gives
    first, then strict alternation, one chunk each), each party's chunks in schedule order, and the step
    order = the schedule's rounds (so a release record's ``round`` is the schedule round)."""
    from node.contracts import stdlib

    chunks: list[list[Commit]] = [[], []]
    order: list[tuple[int, int]] = []
    for rd in schedule.rounds:
        c = rd.chunk
        order.append((rd.giver, len(chunks[rd.giver])))
        chunks[rd.giver].append(Commit(c.pubkey, c.asset, c.address, c.amount, 0))
    return make_spec(bindings[0].net, stdlib.source("turns"), {},
                     [PartySpec(b, chunks[k]) for k, b in enumerate(bindings)], order)


def contract_id(schedule: Schedule, bindings: list[Binding]) -> bytes:
    """The id of the schedule's contract (``schedule_spec``): terms, both parties' chunks and bindings."""
    return spec_id(schedule_spec(schedule, bindings))


def chunk_index(schedule: Schedule, rnd: int) -> int:
    """Round ``rnd``'s chunk index among its giver's chunks."""
    g = schedule.rounds[rnd].giver
    return sum(1 for rd in schedule.rounds[:rnd] if rd.giver == g)
