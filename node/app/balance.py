"""Where claimed funds went (``GET /v1/balance``, ``keyswitch balance``).

Every key this node received in a contract ends as one claim record of that contract (``ClaimRecord``):
``claimed`` (exported to the owner and swept at once to a fresh owner address derived from ``claim.seed``:
``SwapDesk.claim_address``), ``kept`` (claim policy "keep": the key stays in the enclave and is offered again as
a deposit) or ``double-spent`` (someone emptied the deposit first: nothing came in). ``claims`` lists them, read
from the contract records on disk; ``totals`` sums them per asset, outcome and destination. Amounts are in the
asset's smallest unit (the CLI prints coin units).
"""

from __future__ import annotations

from typing import Any, Callable

#: the destination shown for a key kept in the enclave
KEPT = "kept in this node's enclave (offered again as a deposit)"
#: the destination shown for a deposit someone else emptied first
LOST = "nothing: the deposit was spent by someone else first"


def received_claims(release_store, run_store) -> list[tuple[str, Any, Any]]:
    """``[(contract key, Chunk, ClaimRecord)]``: every claim record of a key due to us, swaps (``release_store``)
    and language contracts (``run_store``). Records that do not decode are skipped (the protocols report them)."""
    from node.contracts.spec import decode_spec
    from node.contracts.protocol.schedule import Chunk

    out: list[tuple[str, Any, Any]] = []
    for key, rec in release_store.items():
        if isinstance(rec, str):
            continue
        for cl in rec.claims:
            if 0 <= cl.round < len(rec.schedule.rounds) and rec.schedule.rounds[cl.round].giver != rec.role:
                out.append((key, rec.schedule.rounds[cl.round].chunk, cl))
    for key, rec in run_store.items():
        if isinstance(rec, str) or not rec.claims:
            continue
        spec = decode_spec(rec.spec)
        if isinstance(spec, str):
            continue
        steps = spec.steps()
        for cl in rec.claims:
            if 0 <= cl.round < len(steps):
                giver, index = steps[cl.round]
                c = spec.parties[giver].chunks[index]
                out.append((key, Chunk(c.asset, c.address, c.pubkey, c.amount), cl))
    return out


def claim_rows(received: list[tuple[str, Any, Any]], claim_address: Callable[[Any], str]) -> list[dict[str, Any]]:
    """One row per received key: contract, asset, amount, status, destination, the sweep's txid."""
    rows = []
    for key, chunk, cl in received:
        if cl.status == "claimed":
            to = claim_address(chunk)
        else:
            to = KEPT if cl.status == "kept" else LOST
        rows.append({"contract": key, "asset": chunk.asset, "amount": chunk.amount, "status": cl.status,
                     "from_address": chunk.address, "destination": to, "txid": cl.txid})
    return rows


def totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows summed per (asset, status, destination): amount and how many keys."""
    sums: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        k = (r["asset"], r["status"], r["destination"])
        t = sums.setdefault(k, {"asset": k[0], "status": k[1], "destination": k[2], "amount": 0, "keys": 0})
        t["amount"] += r["amount"]
        t["keys"] += 1
    return [sums[k] for k in sorted(sums)]
