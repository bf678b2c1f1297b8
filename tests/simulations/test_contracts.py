"""The simulator's real-contract mode (``requests.contracts = "real"``, ``simulations/contracts.py``): every
contract is the swap as a contract (stdlib ``turns``) run over /keyswitch/contract-run/1 between the devices'
in-process enclaves, and the figures of the summary are checked here against what the contract code itself
recorded (enclave journals and contract states, the runners' contract records, the ledger)."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.criteria import verdict
from simulations.engine import Engine
from simulations.scenario import load, validate

SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"
_runs: dict[str, Engine] = {}

SMALL = {
    "run": {"name": "real-small", "seed": 5, "duration": 40.0},
    "network": {"nodes": 16, "bootstrap": 1, "full_nodes": 10},
    "deposits": {"offering_share": 0.8, "chunks_per_node": 4, "chunk_usd": [50], "keep_offers": True},
    "requests": {"rate": 0.3, "usd_min": 100, "usd_max": 200, "requesters": 2, "contracts": "real"},
}


def run(name: str, raw: dict | None = None) -> Engine:
    if name not in _runs:
        eng = Engine(validate(raw) if raw is not None else load(SCENARIOS / f"{name}.toml"))
        eng.run()
        _runs[name] = eng
    return _runs[name]


def released_by(node, r) -> list[int]:
    """The chunk indexes of ours a runner's enclave released to the peer in contract run ``r`` (its own view)."""
    return [m.index for m in node.enclave.contract_status(r.cid).moved if m.giver == r.me != m.receiver]


def released_by_protocols(eng: Engine) -> int:
    """Releases each side's ContractRun counts as its own (its enclave's view of the contract)."""
    return sum(len(released_by(n, r)) for n in eng.nodes if n.runner is not None for r in n.runner.runs.values())


def client_contract(eng: Engine, cid: str):
    deal = eng.contracts.deals[cid]
    return eng.nodes[deal.client].runner.runs[cid]


def client_gave(eng: Engine, cid: str) -> int:
    """USD cents of the client's chunks its enclave released in contract ``cid``."""
    deal = eng.contracts.deals[cid]
    mine = [rd.chunk.pubkey for rd in deal.schedule.rounds if rd.giver == 0]
    return sum(deal.cents[mine[i]] for i in released_by(eng.nodes[deal.client], client_contract(eng, cid)))


def test_honest_swaps_every_round_is_a_release_record_of_the_enclaves():
    eng = run("small", SMALL)
    s = eng.summary()["contracts"]
    assert s["started"] > 10 and s["ended"] > 10
    assert s["by_status"] == {"claimed": s["ended"]}
    # each round of each contract is one release record journaled by the giver's enclave, and nothing else is
    # (a contract still running when the run ends counts the rounds its two sides released so far)
    running = sum(len(released_by(n, r)) for cid, d in eng.contracts.deals.items() if d.outcome is None
                  for n in (eng.nodes[d.client], eng.nodes[d.device]) for r in [n.runner.runs.get(cid)]
                  if r is not None)
    assert s["release_records"] == s["rounds_of_claimed_contracts"] + running
    assert s["release_records"] == s["release_notes"] == released_by_protocols(eng)
    assert s["honest_losses_cents"] == 0 and eng.m.fees["contracts"] == s["ended"]
    for cid, deal in eng.contracts.deals.items():
        if deal.outcome is None:
            continue
        c = client_contract(eng, cid)
        assert c.rec.state == "done" and {x.status for x in c.rec.claims} == {"claimed"}
        for rd in deal.schedule.rounds:  # every deposit of the swap was swept by its taker: nothing left at its address
            assert eng.ledger.balance(rd.chunk.asset, rd.chunk.address).confirmed == 0


def test_same_seed_same_summary():
    again = Engine(validate(SMALL))
    again.run()
    assert json.dumps(again.summary(), sort_keys=True) == json.dumps(run("small", SMALL).summary(), sort_keys=True)


def test_a_withholders_host_stops_sending_releases_and_its_clients_lose_at_most_one_chunk():
    raw = {**SMALL, "run": {**SMALL["run"], "name": "real-withholder", "duration": 90.0},
           "requests": {**SMALL["requests"], "round_timeout": 20.0, "requesters": 2},
           "adversaries": {"withholder": {"nodes": 2}}}
    eng = run("withholder", raw)
    s = eng.summary()["contracts"]
    assert s["by_status"].get("withheld", 0) > 0 and s["withheld_releases_dropped"] > 0
    lost = 0
    for cid, deal in eng.contracts.deals.items():
        if deal.outcome is None or deal.outcome["status"] != "withheld":
            continue
        assert eng.role[deal.device] == "withholder"
        c = client_contract(eng, cid)
        assert c.rec.state == "withheld"
        mine = [deal.cents[rd.chunk.pubkey] for rd in deal.schedule.rounds if rd.giver == 0]
        loss = sum(mine[:deal.outcome["released"]]) - sum(
            deal.cents[bytes.fromhex(x["deposit_pub"])] for x in deal.outcome["chunks"] if x["status"] == "claimed")
        assert 0 < loss <= max(mine)  # the one-chunk bound of the swap schedule
        lost += loss
    assert lost == s["honest_losses_cents"] == eng.m.fees["honest_losses_cents"]
    by_kind = eng.summary()["reputation_at_requesters"]["by_kind"]
    assert by_kind["withholder"] < by_kind["honest"]


def test_security_scenario_figures_come_from_the_release_code():
    eng = run("security")
    summ = eng.summary()
    s = summ["contracts"]
    assert s["release_records"] == s["release_notes"] == released_by_protocols(eng)
    assert s["second_releases"] >= 1 and s["by_status"].get("double-spent", 0) >= 1
    # honest clients' losses, recomputed from the clients' own contract records: what each gave minus what
    # it claimed; a double-spent chunk is one whose sweep found the funds gone (the ledger names the spend)
    lost = unreported = 0
    for cid, deal in eng.contracts.deals.items():
        if deal.outcome is None:
            continue
        c = client_contract(eng, cid)
        gave = client_gave(eng, cid)
        rounds = deal.schedule.rounds  # (a step of the contract is a round of the schedule)
        got = sum(deal.cents[rounds[x.round].chunk.pubkey] for x in c.rec.claims if x.status == "claimed")
        lost += max(0, gave - got)
        unreported += max(0, gave - got) if c.outcome.status == "failed" else 0  # (no report names it)
        for x in c.rec.claims:
            if x.status == "double-spent":
                assert eng.role[deal.device] == "broken_tee"
                chunk = rounds[x.round].chunk
                spends = [e.txid for e in eng.ledger.watch([chunk.address])[0] if e.kind == "spend"]
                assert spends and spends[-1] in x.detail
    assert lost == s["honest_losses_cents"] == summ["fees"]["honest_losses_cents"] > 0
    # each broken device a victim's sweep caught is a cheater in every other full node's view
    caught = {x["device"] for x in eng.m.double_spends}
    assert len(caught) == s["broken"]["double_spend_found"] >= 1
    for n in eng.nodes:
        if n.device_id.hex() in caught:
            assert all(f.engine.reputation.is_cheater(n.device_id) for f in eng.nodes if f.full and f is not n)
    assert s["broken"]["isolate_all_s_max"] is not None
    # the verdict reads these figures (it may fail: a victim whose enclave refuses the twice-released key, or
    # finds its funds short, ends "failed", and no report names the device: docs/simulations.md)
    rows = {r["criterion"]: r for r in verdict(summ, eng.sc["criteria"])}
    assert rows["contracts.honest_losses_unreported_cents_max"]["value"] == s["honest_losses_unreported_cents"]
    assert s["honest_losses_unreported_cents"] == unreported
    assert rows["contracts.broken.not_isolated_max"]["value"] == s["broken"]["not_isolated"] == 0
