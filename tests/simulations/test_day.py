"""The day scenario (issue 8's benchmark): its stated rates, a short prefix at full size, offers kept as the
daemon keeps them, and the extrapolation the benchmark prints."""

from __future__ import annotations

import copy
from pathlib import Path

from simulations.__main__ import extrapolate
from simulations.engine import Engine
from simulations.scenario import load

SCEN = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"


def test_day_scenario_states_a_day_of_activity():
    sc = load(SCEN / "day.toml")
    net, dep, q = sc["network"], sc["deposits"], sc["requests"]
    assert sc["run"]["duration"] == 86_400.0 and net["nodes"] == 10_000
    # one request per honest node per day (the comment says so), within rounding of the rate
    assert abs(q["rate"] * 86_400 - net["nodes"]) / net["nodes"] < 0.01
    # offers renewed at half their lifetime, the lifetime the daemon gives them (node.app.deposits.OFFER_TTL), and
    # re-announced as the daemon does by default
    from node.config import BY_KEY
    from node.app.deposits import OFFER_TTL
    from node.protocols.offers import REPUBLISH_INTERVAL, REPUBLISH_MAX

    assert dep["offer_ttl"] == OFFER_TTL and dep["keep_offers"] is True
    assert dep["republish"] == REPUBLISH_INTERVAL and dep["republish_max"] == REPUBLISH_MAX
    assert BY_KEY["network.republish_max"].default == REPUBLISH_MAX
    # 4 departures per node per day
    assert abs(sc["churn"]["leave_rate"] * 86_400 - 4) < 0.01


def test_a_prefix_of_the_day_runs_at_full_size():
    sc = load(SCEN / "day.toml")
    sc["run"]["duration"] = 30.0
    eng = Engine(sc)
    eng.run()
    s = eng.summary()
    assert s["nodes"] == 10_055 and s["full_nodes"] == 100
    assert s["gossip"]["sheets_published"] >= s["publishers"] == 100  # every publisher's first sheet
    assert s["gossip"]["coverage_mean"] > 0.95 and s["gossip"]["verdict_mismatch"] == 0
    assert s["requests"]["sent"] >= 1 and s["spam"]["forwarded"] == 0


def test_keep_offers_repeats_the_offers_until_half_their_lifetime():
    base = load(SCEN / "smoke.toml")
    for keep in (True, False):
        sc = copy.deepcopy(base)
        sc["deposits"]["keep_offers"] = keep
        eng = Engine(sc)
        node = next(n for n in eng.nodes if n.enclave is not None)
        node.offers.own = eng._own_sheet(node)
        first = list(node.offers.own.offers)
        eng.now += 60.0  # the price path moves: a re-priced offer is another offer
        again = eng._own_sheet(node).offers
        assert (again == first) is keep
        if keep:
            eng.now += sc["deposits"]["offer_ttl"] / 2  # half the lifetime gone: renewed
            assert all(a.expiry > f.expiry for a, f in zip(eng._own_sheet(node).offers, first))


def test_extrapolation_takes_the_later_rate():
    # build 10 s, then 1 s of wall per 100 simulated s after a first tenth that cost 20 s
    row = {"simulated_s": 1000.0, "wall_s": 39.0, "build_s": 10.0,
           "samples": [[0.0, 10.0], [100.0, 30.0], [500.0, 34.0], [1000.0, 39.0]]}
    assert abs(extrapolate(row, 86_400.0) - (30.0 + 0.01 * (86_400.0 - 100.0))) < 1e-6
