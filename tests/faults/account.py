"""After a fault trial: every chunk accounted for on the ledger, no key released twice, the nodes' records
agreeing with the ledger (issue #22). Read from the daemons' API (``/v1/deposits``, ``/v1/balance``,
``/v1/contracts``) and the ledger only.

For each deposit (its owner's chunk committed to the contract):

* **still funded**: no node may report it claimed; and its key must still be its owner's (``held``): a key its
  owner's enclave released whose funds nobody swept is a chunk lost with no one holding it;
* **empty**: exactly one node's record claims it, by a transaction the ledger has mined: the step's taker (its
  counterparty, "claimed"), or its owner if its contract refunded it ("refunded");
* **no key released twice**: at most one claim record, on one node, names a deposit; a deposit claimed by anyone
  has its key marked given away in its owner's enclave journal (``key_state`` released or exported);
* **at most one chunk lost**: each party receives at most one chunk fewer than it gave (tit-for-tat: the
  victim of a withholder).
"""

from __future__ import annotations

from tests.faults.observe import Step, contract_row, safe_get
from tests.functional.framework import Api

SWEPT = ("claimed", "refunded")  # a claim record's status once its sweep left: a taker's, an owner's refund


def collect(apis: dict[str, Api]) -> dict[str, dict]:
    """Each party's deposits, claims and contract row, read once at the end."""
    out = {}
    for n, api in apis.items():
        out[n] = {"deposits": (safe_get(api, "/v1/deposits") or {}).get("deposits"),
                  "claims": (safe_get(api, "/v1/balance") or {}).get("claims"),
                  "row": contract_row(api)}
    return out


def unmined_claims(seen: dict[str, dict], ledger) -> list[str]:
    """Claimed txids the ledger has not mined yet (a trial waits for none before it accounts)."""
    out = []
    for n, v in seen.items():
        for c in v["claims"] or []:
            if c["status"] in SWEPT and (not c["txid"] or ledger.confirmations(c["asset"], c["txid"]) <= 0):
                out.append(f"{n}:{c['from_address'][:10]}")
    return out


def account(steps: list[Step], deposits: dict[str, list[dict]], seen: dict[str, dict], ledger) -> tuple[
        list[str], dict[str, int]]:
    """Problems found (empty: all accounted for) and, per party, the chunks it received (swept from others)."""
    problems: list[str] = []
    for n, v in seen.items():
        if v["deposits"] is None or v["claims"] is None:
            problems.append(f"{n}'s API did not answer at the end")
    if problems:
        return problems, {}
    takers = {(s.giver, s.taker) for s in steps}
    key_state = {d["address"]: d["key_state"] for v in seen.values() for d in v["deposits"]}
    claims_of: dict[str, list[tuple[str, dict]]] = {}
    for n, v in seen.items():
        for c in v["claims"]:
            claims_of.setdefault(c["from_address"], []).append((n, c))
    got = {n: 0 for n in seen}
    gave = {n: 0 for n in seen}
    for owner, ds in deposits.items():
        for d in ds:
            addr, tag = d["address"], f"{owner}'s chunk {d['address'][:10]}"
            claims = claims_of.get(addr, [])
            state = key_state.get(addr, "?")
            bal = ledger.balance(d["asset"], addr)
            if len(claims) > 1:
                problems.append(f"{tag}: key released twice, claimed by {[(n, c['status']) for n, c in claims]}")
            if claims and state not in ("released", "exported"):
                problems.append(f"{tag} is claimed by {claims[0][0]} but its owner's enclave says {state}")
            if bal.confirmed >= d["amount"]:
                if any(c["status"] in SWEPT for _, c in claims):
                    problems.append(f"{tag} is reported claimed but still funded")
                elif state != "held":
                    problems.append(f"{tag}: its key left its owner's enclave ({state}) and nobody swept it")
                continue
            claimed = [(n, c) for n, c in claims if c["status"] in SWEPT]
            if not claimed:
                problems.append(f"{tag} left its address but no node's record claims it")
                continue
            n, c = claimed[0]
            if not (n != owner and (owner, n) in takers and c["status"] == "claimed"
                    or n == owner and c["status"] == "refunded"):
                problems.append(f"{tag} was swept by {n}, neither its taker nor its owner's refund")
            if ledger.confirmations(d["asset"], c["txid"]) <= 0:
                problems.append(f"{n} claims {tag} by {c['txid'][:10]}, which the ledger has not mined")
            if n != owner:
                got[n] += 1
                gave[owner] += 1
    for n in seen:
        if gave[n] - got[n] > 1:
            problems.append(f"{n} gave {gave[n]} chunks and received {got[n]}: more than one chunk lost")
    return problems, got
