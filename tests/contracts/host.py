"""A small host loop for tests: ask the contract each round, perform what honest parties may."""

from __future__ import annotations

from node.contracts import Contract, Outcome, Transfer, View, evaluate


def run(contract: Contract, view: View, *, withholders: frozenset[str] = frozenset(), max_rounds: int = 200,
        trace: list | None = None) -> tuple[View, Outcome, int]:
    """Round by round, every party except ``withholders`` performs every release allowed to it.

    Returns the final view, the last outcome and the number of rounds that moved something.
    ``trace`` (if given) receives (view, outcome) for every round evaluated.
    """
    rounds = 0
    for _ in range(max_rounds):
        out = evaluate(contract, view)
        if trace is not None:
            trace.append((view, out))
        done = [r for r in out.releases if r.giver not in withholders]
        if not done:
            return view, out, rounds
        view = view.with_moved(*(Transfer(r.giver, r.index, r.receiver) for r in done))
        rounds += 1
    raise AssertionError("host loop did not settle")


def received(view: View, party: str) -> list[Transfer]:
    return [t for t in view.moved if t.receiver == party and t.giver != party]


def usd_given(view: View, party: str) -> int:
    return sum(view.chunks[party][t.index].usd_cents for t in view.moved if t.giver == party and t.receiver != party)


def usd_received(view: View, party: str) -> int:
    return sum(view.chunks[t.giver][t.index].usd_cents for t in received(view, party))
