"""Fidelity: ``simulations/scenarios/fidelity.toml`` in both engines, outcome metrics compared.

The scenario: 20 non-bootstrap nodes (20 real daemons), half of them offering 2 chunks of $50, three
requesters asking $200-400 at 0.5 requests/s for 30 s, at most 25% of a request from one device.

Tolerances, and why:

* **Offers reach every book in both.** Virtual: mean coverage 1.0 (no loss in the scenario). Real:
  every daemon's book holds every other daemon's offers (``full_books == daemons``), within the wait.
  Gossip is loss-free on loopback and the model has no loss, so nothing less is acceptable.
* **Share of requests answered ok: within 0.25.** Both engines run the same allocator on the same
  book; a difference can come only from proposals missing the deadline on a loaded 2-core machine
  (the real daemons) and from the two engines drawing *different* request amounts (the same
  distribution, not the same draws: about 10 requests each, so one request is 0.1 of the share).
  Virtual requests sent before the books are full (first ``WARMUP`` s) are left out, because the
  real engine starts its schedule only once every book is full; the virtual run is twice the
  scenario's duration so that about 20 requests are decided (it stops with the last ones open).
* **Mean overshoot within one chunk ($50).** Overshoot is set by chunk granularity (the allocator
  cannot take part of a $50 chunk); the amounts differ per draw, so only the chunk size bounds the gap.
* **Proposals sent per request in the same range** (a separate test). Virtual:
  every other full node proposes (19) to each requester's first request, ~16 after (responder
  sortition). Real: proposals arriving before the deadline; the tolerance
  is at least half the virtual mean and at most n - 1. Measured, this holds only on a quiet machine.
  With a 3 s deadline every real daemon sent a proposal for every request (``proposals_out`` =
  ``requests_in``, none declined) but the clients received almost none in time (0-2 a request): the
  senders logged ``send failed: timeout after 10s`` (opening a stream to a client they were not
  connected to, 20 daemons on 2 loaded cores) and the clients refused the late ones (``no open
  request with this id``); the clients still chose from their own books, so ok share and overshoot
  agree. With the scenario's 10 s deadline, four runs gave 6.6, 0.7, 0 and 19 proposals a request
  against 19 (in the first, of 342 sent: 118 in time, 114 late, 166 send timeouts; in the last, on
  a quieter machine, all 342 in time): the gap is load-dependent. The summed daemon counters are in
  ``summary.json`` (``real.rfp_counters_summed``) to see where proposals are lost. The virtual
  model's one sampled latency per stream message is the simplification this exposes. So the test
  compares what the responders *decide* (proposals sent per request, load-independent) and prints the
  share that arrived in time.
* **No device over its class cap at one client** in either engine.

Real-engine cost here: ~20 daemons + bootstrap + ledger, about 2 minutes on 2 shared cores;
``KS_TIMEOUT_FACTOR`` scales the daemons' request deadline and every wait.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.dev.localnet import timeout_factor

from simulations.__main__ import run_real
from simulations.engine import Engine
from simulations.scenario import load

pytestmark = pytest.mark.network
SCENARIO = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "fidelity.toml"
FACTOR = timeout_factor()
WARMUP = 6.0  # virtual sheets are first published within min(5 s, republish); + a margin
OK_SHARE_MARGIN = 0.25
CHUNK_CENTS = 5_000


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> dict:
    """One run of the scenario in each engine (the real one is the expensive part: ~2 min)."""
    sc = load(SCENARIO)
    # the virtual run stops at `duration` with the last requests undecided (the real driver waits for
    # them): run it twice as long so that enough are decided; shares and means are compared, not counts
    sc["run"]["duration"] *= 2
    virt = Engine(sc)
    virt.run()
    deadline = sc["requests"]["deadline"]
    v_dec = [r for r in virt.m.decided if r["t"] >= WARMUP + deadline]
    v_ok = [r for r in v_dec if r["ok"]]
    out = run_real(SCENARIO, out=tmp_path_factory.mktemp("fidelity") / "real", quiet=True)
    rs = json.loads((out / "summary.json").read_text())
    v = {"summary": virt.summary(), "decided": len(v_dec),
         "ok_share": len(v_ok) / len(v_dec) if v_dec else None,
         "overshoot_mean": sum(r["overshoot_cents"] for r in v_ok) / len(v_ok) if v_ok else None,
         "proposals_mean": sum(r["proposals"] for r in v_dec) / len(v_dec) if v_dec else None}
    print("[fidelity] virtual:", {k: x for k, x in v.items() if k != "summary"})
    print("[fidelity] real:", {k: rs["requests"][k] for k in ("ok_share", "overshoot_cents_mean",
                                                               "proposals_per_request_mean", "decided", "not_sent",
                                                               "asked_again_busy")},
          rs["gossip"]["book_latency_s"], rs["real"]["rfp_counters_summed"])
    return {"virtual": v, "real": rs, "out": out}


def test_real_run_writes_the_same_layout(both):
    for name in ("scenario.toml", "seed", "run.json", "events.jsonl", "summary.json", "report.md", "report.html",
                 "requests_over_time.png", "gossip_latency.png", "exposure_per_device.png"):
        assert (both["out"] / name).stat().st_size > 0, name
    assert both["real"]["real"]["daemons"] == 20


def test_outcomes_agree_within_tolerances(both):
    v, rs = both["virtual"], both["real"]
    vs, rq, n = v["summary"], rs["requests"], rs["real"]["daemons"]
    assert v["decided"] >= 5, "the virtual run decided too few requests after warm-up to compare"
    # every offer reaches every full node's book, in both
    assert vs["gossip"]["coverage_mean"] == 1.0
    assert rs["gossip"]["full_books"] == n and rs["gossip"]["coverage_mean"] == 1.0
    # requests answered ok
    assert rq["decided"] >= 5 and rq["not_sent"] == 0
    assert abs(rq["ok_share"] - v["ok_share"]) <= OK_SHARE_MARGIN, (rq["ok_share"], v["ok_share"])
    # overshoot within one chunk
    if v["overshoot_mean"] is not None or rq["overshoot_cents_mean"] is not None:
        assert v["overshoot_mean"] is not None and rq["overshoot_cents_mean"] is not None
        assert abs(rq["overshoot_cents_mean"] - v["overshoot_mean"]) <= CHUNK_CENTS, \
            (rq["overshoot_cents_mean"], v["overshoot_mean"])
    # caps hold in both
    assert vs["exposure"]["honest"]["devices_over_their_class_cap_at_one_client"] == 0
    assert rs["exposure"]["honest"]["devices_over_their_class_cap_at_one_client"] == 0
    assert rs["exposure"]["honest"]["devices_used"] >= 4  # $200+ at most 25% a device: 4+ devices per choice


def test_proposals_per_request_in_the_same_range(both):
    """What the model decides, the real responders decide: proposals *sent* per request (the responders'
    ``proposals_out`` over the requests they received, each request reaching every other daemon) is in the
    virtual range. How many of those reach the client before its deadline depends on the machine's load
    (module docstring), so that figure is printed, and only bounded by what was sent."""
    v, rs = both["virtual"], both["real"]
    n, c = rs["real"]["daemons"], rs["real"]["rfp_counters_summed"]
    assert c["requests_in"] > 0, c
    requests = c["requests_in"] / (n - 1)  # full books everywhere (checked above): every request reaches n - 1
    sent = c["proposals_out"] / requests
    got = rs["requests"]["proposals_per_request_mean"]
    print(f"[fidelity] proposals a request: virtual {v['proposals_mean']:.1f}, real sent {sent:.1f}, "
          f"real in time {got:.1f} (load-dependent)")
    assert 0.5 * v["proposals_mean"] <= sent <= n - 1, (sent, v["proposals_mean"])
    assert c["proposals_in"] <= c["proposals_out"], c  # a client never counts a proposal nobody sent
    assert 0 <= got <= n - 1, (got, n)
