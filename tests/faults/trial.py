"""One fault-injection trial across whole nodes (issue #22), seeded, on 127.0.0.1.

A dev ledger server, a bootstrap node and two ``keyswitch run`` daemons: A funds two BTC-REG chunks, B two
ETH-DEV chunks, and A starts a tit-for-tat swap of both (4 rounds, A's chunk first). At a point drawn from the
seed, one fault strikes:

* ``kill-a`` / ``kill-b``: SIGKILL the initiator's or the responder's daemon (its enclave process goes with
  it), then restart it on the same data directory after a drawn pause;
* ``pause-ledger``: SIGSTOP the ledger server for a drawn while (every funds check, claim and height read
  stalls), then SIGCONT.

The point is drawn as a delay after the swap is posted; what the nodes had done by then (keys released by each
side) is read from their deposits and recorded, so a run's table says which protocol states were hit. The
contract then runs out (rounds resume, or the round timeout ends it as withheld). After every trial:

* **nothing stuck**: both sides' contracts end (done, withheld or failed) with an outcome, within the round
  timeout after the fault plus the restart;
* **every chunk accounted for on the ledger**: each of the four deposits either still holds its funds, with
  its key still in its owner's enclave, or is empty and the counterparty's outcome names the sweep that took
  it, a transaction the ledger has mined; no chunk is swept by its own owner's node and none is lost unclaimed
  (a key released but never swept would be an empty-handed receiver);
* **at most one chunk lost**: each side receives at most one chunk fewer than it gave (tit-for-tat);
* **records agree with the ledger**: every "claimed" chunk in an outcome names a mined transaction.

``run_trial(root, seed)`` returns a ``TrialResult``; ``python -m benchmarks.faults`` runs many and prints the
table, ``tests/faults/test_faults.py`` runs a few seeds in ``make test``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.functional.framework import Api, Network, until

NET = "faultnet"
FAULTS = ("kill-a", "kill-b", "pause-ledger")
ROUND_TIMEOUT = 30.0  # node.protocols.release.ReleaseProtocol.round_timeout


@dataclass
class TrialResult:
    seed: int
    fault: str
    delay: float  # s after the swap was posted
    pause: float  # s the killed node stayed down, or the ledger stopped
    at_fault: tuple[int, int] = (0, 0)  # keys released by A, by B when the fault struck
    states: tuple[str, str] = ("", "")  # A's and B's contract state at the end
    given: tuple[int, int] = (0, 0)  # chunks of A claimed by B, chunks of B claimed by A
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _released(api: Api) -> int:
    try:
        return sum(1 for x in api.get("/v1/deposits")["deposits"] if x["key_state"] == "released")
    except Exception:  # the node is down: nothing read
        return -1


def _ended(api: Api) -> dict | None:
    try:
        rows = api.get("/v1/contracts")["contracts"]
    except Exception:
        return None
    rows = [c for c in rows if "rounds" in c]  # swap contracts (release/1)
    if rows and rows[-1]["state"] in ("done", "withheld", "failed") and "outcome" in rows[-1]:
        return rows[-1]
    return None


def run_trial(root: Path, seed: int, *, fault: str | None = None) -> TrialResult:
    rng = random.Random(seed)
    fault = fault or rng.choice(FAULTS)
    res = TrialResult(seed, fault, delay=round(rng.uniform(0.0, 0.6), 2), pause=round(rng.uniform(0.5, 6.0), 1))
    t0 = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    net = Network(root, net=NET)
    try:
        lurl = net.add_ledger()
        ledger_proc = net.procs[0]
        boot = net.add_boot()
        apis = dict(zip("AB", net.start_daemons(["A", "B"], bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})))
        a, b = apis["A"], apis["B"]
        assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
        assert b.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 2}).status_code == 201
        until(lambda: a.get("/v1/status")["offers_in_book"] == 2 and b.get("/v1/status")["offers_in_book"] == 2,
              90, "each book holds the other's two offers")
        deposits = {n: apis[n].get("/v1/deposits")["deposits"] for n in "AB"}
        r = a.post("/v1/contracts", {"peer": b.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": 2})
        if r.status_code != 201:
            res.problems.append(f"the swap was not agreed: {r.status_code} {r.text[:200]}")
            return res
        time.sleep(res.delay)
        res.at_fault = (_released(a), _released(b))

        # ---- the fault
        if fault == "pause-ledger":
            os.kill(ledger_proc.pid, signal.SIGSTOP)
            time.sleep(res.pause)
            os.kill(ledger_proc.pid, signal.SIGCONT)
        else:
            n = "A" if fault == "kill-a" else "B"
            apis[n].kill()
            time.sleep(res.pause)
            apis[n].restart()  # the same data directory; its log out-2.log

        # ---- the contract runs out: nothing stuck past the round timeout (after the restart)
        try:
            until(lambda: _ended(a) and _ended(b), ROUND_TIMEOUT + 60, "both sides' contracts ending")
        except AssertionError as exc:
            res.problems.append(f"stuck: {exc} (A: {(_ended(a) or {}).get('state')}, B: {(_ended(b) or {}).get('state')})")
            return res
        ca, cb = _ended(a), _ended(b)
        res.states = (ca["state"], cb["state"])
        res.problems += account(lurl, deposits, {"A": ca["outcome"], "B": cb["outcome"]}, res)
        for n in "AB":
            for log in apis[n].logs():
                text = log.read_text(errors="replace")
                if "Traceback" in text and "raised" in text:
                    res.problems.append(f"{n}'s log {log.name} has a traceback")
        return res
    finally:
        res.seconds = round(time.monotonic() - t0, 1)
        net.close()


def account(lurl: str, deposits: dict[str, list[dict]], outcomes: dict[str, dict], res: TrialResult) -> list[str]:
    """The ledger's view of the four chunks against both outcomes (module docstring)."""
    from node.ledger.client import DevLedgerClient

    led = DevLedgerClient(lurl)
    problems: list[str] = []
    other = {"A": "B", "B": "A"}
    claimed_by = {"A": 0, "B": 0}  # chunks each side swept from the other
    try:
        for owner in "AB":
            by_addr = {c["address"]: c for c in outcomes[other[owner]]["chunks"]}
            for d in deposits[owner]:
                bal = led.balance(d["asset"], d["address"])
                took = by_addr.get(d["address"])
                if bal.confirmed >= d["amount"]:  # still there: never handed over, or handed over and unclaimed
                    if took is not None and took["status"] == "claimed":
                        problems.append(f"{owner}'s chunk {d['address'][:12]} is reported claimed but still funded")
                    elif took is not None and took["status"] in ("received", "kept"):
                        problems.append(f"{owner}'s chunk {d['address'][:12]} was received but never swept")
                    continue
                # empty: the counterparty's outcome must name the sweep, and the ledger must have mined it
                if took is None or took["status"] != "claimed" or not took["txid"]:
                    problems.append(f"{owner}'s chunk {d['address'][:12]} left its address but "
                                    f"{other[owner]}'s outcome does not claim it ({took})")
                    continue
                if led.confirmations(d["asset"], took["txid"]) <= 0:
                    problems.append(f"{other[owner]} claims {d['address'][:12]} by {took['txid'][:12]}, "
                                    "which the ledger has not mined")
                claimed_by[other[owner]] += 1
    finally:
        led.close()
    res.given = (claimed_by["B"], claimed_by["A"])
    for n in "AB":  # tit-for-tat: a side receives at most one chunk fewer than it gave
        gave, got = claimed_by[other[n]], claimed_by[n]
        if gave - got > 1:
            problems.append(f"{n} gave {gave} chunks and received {got}: more than one chunk lost")
    return problems
