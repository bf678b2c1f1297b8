"""What a fault trial sees of a running contract: the daemons' API, their event logs and the ledger (issue #22).

Nothing here reads a protocol module: a daemon's ``GET /v1/contracts`` row (``state``, and where the row has them
``released`` / ``received`` / ``refunded`` / ``claims``, as ``/keyswitch/contract-run/1`` rows do), its
``GET /v1/deposits`` (each key's state in its enclave), its ``GET /v1/balance`` (every key it received and where
it went), the ``notify <protocol>.released`` / ``notify <protocol>.received`` lines every contract protocol logs
as it acts (whatever the protocol's name: ``LogWatch``), and the ledger's balances. So the harness keeps working
when a contract moves from one wire protocol to another. A swap runs its four rounds in well under a second: the
trigger reads the logs and the ledger (milliseconds), not the API (a ``/v1/deposits`` asks the ledger per key).

**Fault points.** A contract is a list of ``Step`` s (a giver releases its n-th chunk to a taker). The points a
fault can strike at are drawn from the protocol's own states: ``agreeing`` (the offer in flight), ``agreed``
(just answered), and for each step ``send`` (the giver's enclave released the key), ``receive`` (a moment later:
the key in flight or being checked), ``seal`` (the taker's enclave holds it) and ``sweep`` (the taker's claim left
the deposit address). ``Progress.reached(point)`` says whether a snapshot is at or past a point; the trial strikes
at the first snapshot that is.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.functional.framework import Api

#: the states a contract ends in: a swap's (a silent peer ends it as withheld: it has no refund height), a
#: ring's (withheld there is not final: late keys are still taken, and the refund height settles it)
ENDED = {"swap": ("done", "withheld", "failed"), "ring": ("done", "failed")}
STEP_POINTS = ("send", "receive", "seal", "sweep")


@dataclass(frozen=True)
class Step:
    giver: str  # party name ("A", "B", "C")
    taker: str
    nth: int  # the giver's n-th chunk given (1-based), and so the taker's n-th received from it


def swap_steps(chunks: int) -> list[Step]:
    """A tit-for-tat swap: A's chunk first, then B's, one at a time."""
    out = []
    for k in range(1, chunks + 1):
        out += [Step("A", "B", k), Step("B", "A", k)]
    return out


def ring_steps(names: str, chunks: int) -> list[Step]:
    """A ring: each party gives its chunks to its successor (all may move at once)."""
    return [Step(n, names[(i + 1) % len(names)], k) for k in range(1, chunks + 1) for i, n in enumerate(names)]


def points(steps: list[Step]) -> list[str]:
    return ["agreeing", "agreed"] + [f"{p}-{i}" for i in range(len(steps)) for p in STEP_POINTS]


def safe_get(api: Api | None, path: str) -> dict | None:
    if api is None:
        return None
    try:
        return api.get(path)
    except Exception:  # down, restarting, or answering slowly: nothing read
        return None


def contract_row(api: Api | None) -> dict | None:
    """This trial's contract on a daemon: the newest row (each trial's daemons run one contract)."""
    got = safe_get(api, "/v1/contracts")
    rows = (got or {}).get("contracts") or []
    return rows[-1] if rows else None


@dataclass
class Progress:
    """One snapshot: per party, its keys released, the keys it received from each giver, its chunks swept."""

    steps: list[Step]
    kind: str = "swap"
    released: dict[str, int] = field(default_factory=dict)
    received: dict[tuple[str, str], int] = field(default_factory=dict)  # (taker, giver) -> count
    swept: dict[str, int] = field(default_factory=dict)  # owner -> its deposit addresses emptied
    states: dict[str, str] = field(default_factory=dict)
    all_in: set = field(default_factory=set)  # parties whose row says every key due to them is in

    def step_reached(self, kind: str, s: Step) -> bool:
        if kind == "sweep":
            return self.swept.get(s.giver, 0) >= s.nth
        if kind == "seal":
            return self.received.get((s.taker, s.giver), 0) >= s.nth or self.step_reached("sweep", s)
        return self.released.get(s.giver, 0) >= s.nth or self.step_reached("seal", s)  # send, receive

    def reached(self, point: str) -> bool:
        if point in ("agreeing", "agreed"):
            return True
        kind, i = point.rsplit("-", 1)
        return self.step_reached(kind, self.steps[int(i)])

    def ended(self) -> bool:
        return bool(self.states) and all(s in ENDED[self.kind] for s in self.states.values())

    def brief(self) -> str:
        """e.g. ``rel A1 B0 | got B1 | swept 0`` (what had happened when the fault struck)."""
        rel = " ".join(f"{n}{c}" for n, c in sorted(self.released.items()))
        got = " ".join(f"{t}{c}" for (t, _), c in sorted(self.received.items()) if c)
        return f"rel {rel} | got {got or '-'} | swept {sum(self.swept.values())}"


def snapshot(kind: str, steps: list[Step], apis: dict[str, Api | None], deposits: dict[str, list[dict]],
             ledger) -> Progress:
    """Read every daemon's API and the ledger once."""
    p = Progress(steps, kind)
    owner_of = {d["address"]: n for n, ds in deposits.items() for d in ds}
    names = {a.peer: m for m, a in apis.items() if a is not None}
    explicit = False
    for n, api in apis.items():
        mine = safe_get(api, "/v1/deposits")
        if mine is not None:
            p.released[n] = sum(1 for d in mine["deposits"] if d["key_state"] in ("released", "exported")
                                and d["address"] in owner_of)
        row = contract_row(api)
        if row is None:
            continue
        p.states[n] = row.get("state", "")
        if "received" in row:  # (giver party index, chunk index) pairs, parties in the row's order
            explicit = True
            parties = row.get("parties") or []
            for giver_ix, _ in row["received"]:
                giver = names.get(parties[giver_ix]) if giver_ix < len(parties) else None
                if giver:
                    p.received[(n, giver)] = p.received.get((n, giver), 0) + 1
        if row.get("keys_in_at"):
            p.all_in.add(n)
    if not explicit:  # rows without "received" (a /keyswitch/release/1 swap): see _implied
        _implied(p)
    _swept(p, deposits, ledger)
    return p


def _swept(p: Progress, deposits: dict[str, list[dict]], ledger) -> None:
    for n, ds in deposits.items():
        for d in ds:
            try:
                bal = ledger.balance(d["asset"], d["address"])
            except Exception:
                continue  # the ledger is stopped: nothing swept seen
            if bal.unconfirmed < d["amount"]:  # (unconfirmed: confirmed plus the mempool's effects)
                p.swept[n] = p.swept.get(n, 0) + 1


def _implied(p: Progress) -> None:
    """A swap row without ``received`` (``/keyswitch/release/1``): tit-for-tat says what each side holds. The
    responder releases its k-th key only after its enclave took the initiator's k-th; the initiator its k+1-th
    after the responder's k-th; ``keys_in_at`` means every key due is in."""
    givers = {s.giver for s in p.steps}
    if givers != {"A", "B"}:
        return
    due = {n: sum(1 for s in p.steps if s.taker == n) for n in "AB"}
    implied = {("B", "A"): p.released.get("B", 0), ("A", "B"): max(0, p.released.get("A", 0) - 1)}
    for (t, g), c in implied.items():
        c = due[t] if t in p.all_in else min(c, due[t])
        p.received[(t, g)] = max(p.received.get((t, g), 0), c)


NOTIFY = re.compile(r"notify (\w+)\.(released|received) (\{.*?\})(?: \[|$)")


class LogWatch:
    """Each party's contract events from its logs (every log of every start), read incrementally: the keys it
    released and received, each counted once (a restarted node re-sends a journaled release: not a new one)."""

    def __init__(self, logs: dict[str, list[Path]]) -> None:
        self.logs = logs  # the daemons' own lists: a restart's new log is seen
        self._pos: dict[Path, int] = {}
        self._tail: dict[Path, str] = {}
        self.released: dict[str, set] = {n: set() for n in logs}
        self.received: dict[str, set] = {n: set() for n in logs}

    def poll(self) -> None:
        for n, paths in self.logs.items():
            for path in list(paths):
                try:
                    with open(path, "rb") as f:
                        f.seek(self._pos.get(path, 0))
                        chunk = f.read()
                except OSError:
                    continue
                self._pos[path] = self._pos.get(path, 0) + len(chunk)
                text = self._tail.pop(path, "") + chunk.decode(errors="replace")
                lines = text.split("\n")
                self._tail[path] = lines.pop()  # an unfinished line: the rest comes with the next read
                for line in lines:
                    self._line(n, line)

    def _line(self, n: str, line: str) -> None:
        m = NOTIFY.search(line)
        if m is None:
            return
        try:
            d = ast.literal_eval(m.group(3))
        except (ValueError, SyntaxError):
            return
        if not isinstance(d, dict):
            return
        contract = d.get("contract", "")
        if m.group(2) == "released":
            self.released[n].add((contract, d.get("round", d.get("index"))))
        else:
            self.received[n].add((contract, d.get("giver"), d.get("step")))


def fast_progress(kind: str, steps: list[Step], watch: LogWatch, deposits: dict[str, list[dict]],
                  ledger) -> Progress:
    """The trigger's view: the logs' events and (``ledger`` not None) the ledger's balances; no API call."""
    watch.poll()
    p = Progress(steps, kind)
    p.released = {n: len(v) for n, v in watch.released.items()}
    for n, got in watch.received.items():
        for _, giver_ix, _ in got:  # the giver as a party index of the contract: the ring's and swap's order
            giver = "ABC"[giver_ix] if isinstance(giver_ix, int) and 0 <= giver_ix < 3 else None
            if giver:
                p.received[(n, giver)] = p.received.get((n, giver), 0) + 1
    if not any(watch.received.values()):
        _implied(p)
    if ledger is not None:
        _swept(p, deposits, ledger)
    return p
