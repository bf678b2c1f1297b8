"""The one interpreter of protocol commands, shared by the three drivers.

The runtime (``node.runtime.driver``), the simulator (``simulations.engine.run_cmds``) and the protocol test
harness (``node.protocols.testing``) all carry out a protocol's commands through ``Interpreter.execute``:

* ``Publish``, ``SetTimer``, ``SendRequest``, ``Respond``, ``Notify``: handed to the driver's ``Transport``
  (each driver has its own network and clock: py-libp2p and trio timers, the virtual network, the in-memory
  mesh);
* ``LedgerCall``: plain data naming one of ``LEDGER_OPS``. The interpreter turns it into a job that runs the
  op with the ledger adapters of the issuing protocol (``LedgerAdapters``: ``check_funds``, ``claim``,
  ``price_of``, given by the composition root) and returns its ``TaskDone``. The driver only decides WHERE the
  job runs (the runtime: on a worker thread, off the event loop; the simulator and the harness: at once, in
  order) and must deliver the ``TaskDone`` to the issuing protocol and to no other;
* anything else raises ``UnknownCommand``: a command no driver understands is a bug, never silently dropped.

Why here (``node.protocols``) and not in ``node.runtime``: the simulator and the harness must use it without
loading trio or libp2p. It does I/O only through the adapters it is given (blocking calls of the ledger
adapters, inside the job the driver runs where it likes); it imports no trio, socket, file or clock module
(the duration of a "timed" op is read from the ``clock`` adapter: the runtime gives ``time.perf_counter``,
the simulator and the harness none, so durations there are 0).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from node.protocols.base import Command, LedgerCall, Notify, Publish, Respond, SendRequest, SetTimer, TaskDone
from node.contracts.protocol.state import _funds_missing
from node.contracts.protocol.claims import (
    FUNDS_OK, FUNDS_SHORT, FUNDS_UNKNOWN, ClaimRecord, claim_chunk, funds_state, price_state,
)


class UnknownCommand(TypeError):
    """A command (or a ledger op) no interpreter knows: a programming error, raised, never dropped."""


@dataclass(frozen=True)
class LedgerAdapters:
    """What a ``LedgerCall`` may use: ``check_funds(asset, address) -> Balance``, ``claim(chunk) -> txid``
    (a sweep of a key the enclave holds to a fresh owner address), ``price_of(asset) -> Price``. Given by the
    composition root (the daemon, a test, the simulator); ``of(protocol)`` takes those it gave the protocol."""

    check_funds: Callable[[str, str], object] | None = None
    claim: Callable[[Any], str] | None = None
    price_of: Callable[[str], object] | None = None
    clock: Callable[[], float] | None = None  # a monotonic clock for op durations (None: durations are 0)

    @classmethod
    def of(cls, protocol: object) -> "LedgerAdapters":
        return cls(getattr(protocol, "check_funds", None), getattr(protocol, "claim", None),
                   getattr(protocol, "price_of", None))


# ------------------------------------------------------------------------------------------- ledger ops
def _need(adapter, what: str, op: str):
    if adapter is None:
        raise RuntimeError(f"ledger op {op!r} needs the {what} adapter, and the composition root gave none")
    return adapter


def _op_funds_state(ad: LedgerAdapters, chunk, usd_cents: int = 0, tolerance: float = 0.10):
    """(state, reason) of ``chunk``'s committed funds on our ledger (``claims.funds_state``)."""
    return funds_state(_need(ad.check_funds, "check_funds", "funds_state"), chunk, usd_cents, ad.price_of, tolerance)


def _op_first_unfunded(ad: LedgerAdapters, rounds: tuple):
    """Why the first of these ``(round, chunk)`` has no funds (``"round r: why"``), or None when all have.
    The ledger is asked about them all at once; a ledger that cannot answer counts as "not there"."""
    check = _need(ad.check_funds, "check_funds", "first_unfunded")
    if len(rounds) <= 1:  # one question: no pool of threads for it
        there = [funds_state(check, rc[1]) for rc in rounds]
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(rounds))) as pool:
            there = list(pool.map(lambda rc: funds_state(check, rc[1]), rounds))
    for (r, _), (state, why) in zip(rounds, there):
        if state != FUNDS_OK:  # short, gone or unknown: no agreement
            return f"round {r}: {why}"
    return None


def _op_contract_funds_missing(ad: LedgerAdapters, spec, me, tolerance: float = 0.10):
    """Why the other parties' committed chunks of ``spec`` are not all as committed (``contract_run``)."""
    return _funds_missing(_need(ad.check_funds, "check_funds", "contract_funds_missing"), spec, me, ad.price_of,
                          tolerance)


def _op_claim_chunk(ad: LedgerAdapters, policy: str, chunk, r: int):
    """Settle a received key by policy (``claims.claim_chunk``): a ``ClaimRecord``."""
    return claim_chunk(policy, ad.claim, _need(ad.check_funds, "check_funds", "claim_chunk"), chunk, r)


def _op_contract_settle(ad: LedgerAdapters, policy: str, chunk, step: int, from_peer: bool, usd_cents: int = 0,
                        tolerance: float = 0.10, checked: bool = False):
    """A key that came to us in a language contract: a peer's (``from_peer``: its chunk must still hold what
    was committed, then claimed by ``policy``), or our own handed back (a refund, swept home when a claim is
    configured). A ``ClaimRecord``; for a peer's key with a declared ``usd_cents``, ``(ClaimRecord, reason)``
    when that value is no longer within ``tolerance`` of the chunk's amount at our price NOW (the key is ours
    and claimed all the same; the contract goes no further: ``ContractRun._on_claimed``). ``checked``: the
    funds and the price were checked in a task of their own just before (the fast path): claimed at once."""
    check = _need(ad.check_funds, "check_funds", "contract_settle")
    if from_peer and checked:
        return claim_chunk(policy, ad.claim, check, chunk, step)  # (a failed sweep asks the ledger why)
    if from_peer:
        priced = price_state(chunk, usd_cents, ad.price_of, tolerance)  # (before every round, not only at agreement)
        if priced is not None and priced[0] == FUNDS_UNKNOWN:  # our feed: retried, no one blamed
            return ClaimRecord(step, "claim-failed", "", priced[1])
        state, why = funds_state(check, chunk)
        if state == FUNDS_SHORT:
            return ClaimRecord(step, "double-spent", "", why)
        if state == FUNDS_UNKNOWN:
            return ClaimRecord(step, "claim-failed", "", why)
        rec = claim_chunk(policy, ad.claim, check, chunk, step)  # (gone: the sweep tells who spent)
        return (rec, priced[1]) if priced is not None and rec.status != "claim-failed" else rec
    if ad.claim is None:  # a refund: the key is ours again; sweep it home when we can
        return ClaimRecord(step, "refunded", "", "key handed back to the owner (no sweep configured)")
    rec = claim_chunk("sweep", ad.claim, check, chunk, step)
    return ClaimRecord(step, "refunded" if rec.status == "claimed" else rec.status, rec.txid, rec.detail)


def _op_timed(ad: LedgerAdapters, op: str, args: tuple):
    """``(result of op(*args), seconds it took)`` (the release protocol keeps where its time goes)."""
    fn = _op(op)
    if ad.clock is None:
        return fn(ad, *args), 0.0
    t0 = ad.clock()
    out = fn(ad, *args)
    return out, ad.clock() - t0


LEDGER_OPS: dict[str, Callable[..., object]] = {
    "funds_state": _op_funds_state,
    "first_unfunded": _op_first_unfunded,
    "contract_funds_missing": _op_contract_funds_missing,
    "claim_chunk": _op_claim_chunk,
    "contract_settle": _op_contract_settle,
    "timed": _op_timed,
}


def _op(op: str) -> Callable[..., object]:
    fn = LEDGER_OPS.get(op)
    if fn is None:
        raise UnknownCommand(f"unknown ledger op {op!r} (known: {', '.join(sorted(LEDGER_OPS))})")
    return fn


def run_ledger_call(call: LedgerCall, adapters: LedgerAdapters) -> TaskDone:
    """Run ``call`` (blocking) and make its ``TaskDone``: the op's result, or the exception it raised."""
    fn = _op(call.op)
    try:
        return TaskDone(call.name, fn(adapters, *call.args))
    except Exception as exc:
        return TaskDone(call.name, None, exc)


# ------------------------------------------------------------------------------------------- interpreter
class Transport(Protocol):
    """What a driver supplies. ``src`` is the driver's handle of the issuing protocol (an index, a
    (peer, protocol) pair...): every result goes back to it. ``run_job(src, job)``: run ``job()`` (blocking,
    returns a ``TaskDone``) where the driver likes, then deliver that ``TaskDone`` to ``src`` only."""

    def publish(self, src: Any, cmd: Publish) -> None: ...

    def set_timer(self, src: Any, cmd: SetTimer) -> None: ...

    def send_request(self, src: Any, cmd: SendRequest) -> None: ...

    def respond(self, src: Any, cmd: Respond) -> None: ...

    def notify(self, src: Any, cmd: Notify) -> None: ...

    def run_job(self, src: Any, job: Callable[[], TaskDone]) -> None: ...


class Interpreter:
    """``execute(src, cmd)`` carries out one command for the protocol ``src`` names; ``adapters(src)`` gives
    the ledger adapters of that protocol (default: those the composition root gave the protocol itself)."""

    def __init__(self, transport: Transport, adapters: Callable[[Any], LedgerAdapters]) -> None:
        self.transport = transport
        self.adapters = adapters

    def execute(self, src: Any, cmd: Command) -> None:
        t = self.transport
        if isinstance(cmd, Publish):
            t.publish(src, cmd)
        elif isinstance(cmd, SetTimer):
            t.set_timer(src, cmd)
        elif isinstance(cmd, SendRequest):
            t.send_request(src, cmd)
        elif isinstance(cmd, Respond):
            t.respond(src, cmd)
        elif isinstance(cmd, Notify):
            t.notify(src, cmd)
        elif isinstance(cmd, LedgerCall):
            _op(cmd.op)  # an unknown op is refused here, on the issuing side, not later on a worker
            adapters = self.adapters(src)
            t.run_job(src, lambda: run_ledger_call(cmd, adapters))
        else:
            raise UnknownCommand(f"no interpreter for command {type(cmd).__name__}: {cmd!r:.200}")

    def execute_all(self, src: Any, cmds) -> None:
        for c in cmds or ():
            self.execute(src, c)
