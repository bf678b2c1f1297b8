"""The virtual engine runs the daemon's re-announcement back-off and the pull on (re)connect, with the same
OffersProtocol code."""

from __future__ import annotations

import copy
from pathlib import Path

from simulations.engine import Engine
from simulations.scenario import load

SMOKE = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "smoke.toml"


def quiet_smoke(**deposits) -> dict:
    sc = copy.deepcopy(load(SMOKE))
    sc["adversaries"] = {}
    sc["requests"]["rate"] = 0.0
    sc["network"]["loss"] = 0.0
    sc["deposits"].update(deposits)
    return sc


def test_an_unchanged_sheet_is_re_announced_after_the_base_then_twice_as_late_up_to_the_cap():
    sc = quiet_smoke(keep_offers=True, republish=10.0, republish_max=40.0)
    sc["run"]["duration"] = 300.0
    sheets: dict[int, list[float]] = {}
    eng = Engine(sc, log=lambda r: sheets.setdefault(r["src"], []).append(r["t"]) if r["ev"] == "sheet" else None)
    eng.run()
    assert sheets and set(sheets) == {n.idx for n in eng.nodes if n.enclave is not None}
    for src, ts in sheets.items():
        gaps = [round(b - a, 6) for a, b in zip(ts, ts[1:])]
        assert gaps == [10, 20, 40, 40, 40, 40, 40, 40], (src, gaps)  # first sheet within 5 s; cap 40 s
    s = eng.summary()["gossip"]
    assert s["sheets_changed"] == len(sheets) and s["sheets_reannounced"] == 8 * len(sheets)
    assert s["sheets_published"] == 9 * len(sheets)


def test_re_pricing_every_tick_is_a_change_each_time_so_there_is_no_back_off():
    sc = quiet_smoke(keep_offers=False, republish=30.0)
    sc["run"]["duration"] = 200.0
    s = Engine(sc)
    s.run()
    g = s.summary()["gossip"]
    assert g["sheets_reannounced"] == 0 and g["sheets_changed"] == g["sheets_published"] > 0


def _offline_then_back(pull: bool) -> tuple[Engine, int]:
    """A full node offline from the start (it misses every first sheet) comes back at 60 s; nothing is
    re-announced within the run (republish 1 h), so only the pull can fill its book."""
    sc = quiet_smoke(keep_offers=True, republish=3600.0, republish_max=3600.0)
    sc["run"]["duration"] = 90.0
    eng = Engine(sc)
    x = next(n.idx for n in eng.nodes if n.full and n.idx not in eng.requesters and n.enclave is None)
    eng.nodes[x].alive = eng._alive[x] = False
    eng.nodes[x].offers.pull = pull
    eng.push(eng.t0 + 60.0, "rejoin", (x,))
    eng.run()
    return eng, x


def test_a_full_node_that_comes_back_pulls_the_sheets_it_missed_from_its_mesh_peers():
    eng, x = _offline_then_back(pull=True)
    node = eng.nodes[x]
    others = [n.book.count(now=eng.now) for n in eng.nodes if n.full and n.idx != x and n.enclave is None]
    want = max(others)
    assert want > 0 and node.book.count(now=eng.now) == want
    st = node.offers.pull_stats
    assert st["asked"] == sum(1 for j in eng.adj[x] if eng.nodes[j].alive) and st["accepted"] > 0
    assert node.offers.stats["reject"] == 0
    pull = eng.summary()["gossip"]["pull"]
    assert pull["asked"] == st["asked"] and pull["accepted"] == st["accepted"]
    # without the pull it would still be empty: nothing was re-announced
    eng2, x2 = _offline_then_back(pull=False)
    assert x2 == x and eng2.nodes[x2].book.count(now=eng2.now) == 0


def test_the_sheet_signature_memo_is_the_engines_own_and_the_process_keeps_the_real_check():
    """The engine's full nodes share one memo of the pure sheet-signature check (each sheet verified once
    per run); nothing outside the engine sees it, so a test that runs after a simulation checks for real."""
    import node.tee.client as tc

    real = tc.verify_offer_sheet_sig
    sc = quiet_smoke(keep_offers=True)
    sc["run"]["duration"] = 30.0
    a, b = Engine(sc), Engine(copy.deepcopy(sc))
    a.run()
    assert tc.verify_offer_sheet_sig is real
    full = [n.offers for n in a.nodes if n.full and n.offers is not None and n.offers.attestations is not None]
    assert full and all(o.verify_sig is a._verify_sheet_sig for o in full)
    assert a._verify_sheet_sig is not b._verify_sheet_sig
    assert a.summary()["gossip"]["sheets_published"] > 0
