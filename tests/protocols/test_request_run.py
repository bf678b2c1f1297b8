"""From a request to contracts (node.protocols.request_run), pure: allocation to one swap per provider, a
refuser and a withholder that do not stop the others, the shortfall asked for once more from other providers,
the final report and its exit code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.protocols.request_run import (
    EXIT_COMPLETE, EXIT_NO_ALLOCATION, EXIT_SHORT, Allocated, Ask, Finished, RequestRun, ResumeSwap, StartSwap,
    SwapAgreed, SwapEnded, SwapRefused, option_terms_refusal,
)
from node.risk.types import Candidate

ME = "me"


def chunk(owner: str, i: int, cents: int = 5_000) -> Candidate:
    return Candidate(bytes([i]) * 32, owner.encode().ljust(32, b"\0"), owner, "sim", "BTC-REG", f"{owner}-a{i}",
                     10_000, cents, 10_000.0)


def run(target: int = 30_000) -> tuple[RequestRun, list]:
    r = RequestRun("rid", "BTC-REG", "ETH-DEV", target, ME)
    return r, r.start(0.0)


def swaps(cmds) -> dict[str, StartSwap]:
    return {c.peer: c for c in cmds if isinstance(c, StartSwap)}


def deliver(r: RequestRun, s: StartSwap, now: float, upto: int | None = None, state: str = "done"):
    """The provider agrees and its swap ends with its first ``upto`` chunks received (all by default)."""
    got = s.offers if upto is None else s.offers[:upto]
    lost = 0 if upto is None or state == "done" else 1
    return r.handle(SwapAgreed(s.peer), now) + r.handle(
        SwapEnded(s.peer, state, tuple(c.address for c in got), len(got) + lost, lost, 5_000 * lost), now)


def test_one_swap_per_provider_and_complete_when_all_deliver():
    r, cmds = run()
    assert cmds == [Ask(30_000, frozenset({ME}))]
    offers = tuple(chunk(p, i) for p in ("p1", "p2", "p3") for i in range(2))
    starts = swaps(r.handle(Allocated(True, offers, proposals=5), 1.0))
    assert sorted(starts) == ["p1", "p2", "p3"]
    assert all(len(s.offers) == 2 and {c.owner_id for c in s.offers} == {s.peer} for s in starts.values())
    assert r.handle(SwapAgreed("p1"), 2.0) == []
    out = deliver(r, starts["p1"], 3.0) + deliver(r, starts["p2"], 3.5)
    assert out == [] and not r.done  # p3 still running
    out = deliver(r, starts["p3"], 4.0)
    assert len(out) == 1 and isinstance(out[0], Finished)
    rep = out[0].report
    assert rep["state"] == "complete" and rep["exit_code"] == EXIT_COMPLETE and rep["ok"]
    assert rep["obtained_cents"] == 30_000 and rep["shortfall_cents"] == 0 and rep["lost"] == 0
    assert rep["asks"] == 1 and rep["proposals"] == 5 and rep["seconds"] == 4.0
    assert {p["peer"]: p["received_cents"] for p in rep["providers"]} == {"p1": 10_000, "p2": 10_000, "p3": 10_000}


def test_a_withholder_and_a_refuser_do_not_stop_the_others_and_the_shortfall_is_asked_once_from_others():
    r, _ = run()
    offers = tuple(chunk(p, i) for p in ("p1", "p2", "w", "x") for i in range(2))[:7]  # x: one chunk
    starts = swaps(r.handle(Allocated(True, offers), 1.0))
    assert r.handle(SwapRefused("x", "risk: device cap"), 1.5) == []
    assert deliver(r, starts["p1"], 2.0) == [] and deliver(r, starts["p2"], 2.0) == []
    # w releases its first chunk, then withholds the second: we lost the one chunk we gave after it
    again = deliver(r, starts["w"], 31.0, upto=1, state="withheld")
    assert again == [Ask(5_000, frozenset({ME, "w", "x"}))]  # the shortfall, never from the refuser or withholder
    assert r.report()["state"] == "collecting" and not r.done
    # an answer from a provider left out, had the allocation still held it, is not used
    starts2 = swaps(r.handle(Allocated(True, (chunk("w", 9), chunk("p4", 0))), 34.0))
    assert list(starts2) == ["p4"]
    out = deliver(r, starts2["p4"], 36.0)
    rep = out[-1].report
    assert rep["state"] == "complete" and rep["exit_code"] == EXIT_COMPLETE
    assert rep["obtained_cents"] == 30_000 and rep["lost"] == 1 and rep["lost_cents"] == 5_000 and rep["asks"] == 2
    rows = {(p["peer"], p["ask"]): p for p in rep["providers"]}
    assert rows[("w", 1)]["state"] == "withheld" and rows[("w", 1)]["received"] == 1 and rows[("w", 1)]["lost"] == 1
    assert rows[("x", 1)]["state"] == "refused" and "device cap" in rows[("x", 1)]["reason"]
    assert rows[("p4", 2)]["received_cents"] == 5_000


def test_the_shortfall_is_asked_only_once_then_the_report_says_short():
    r, _ = run(10_000)
    starts = swaps(r.handle(Allocated(True, (chunk("w", 0), chunk("w", 1))), 1.0))
    assert isinstance(deliver(r, starts["w"], 30.0, upto=0, state="withheld")[0], Ask)
    starts = swaps(r.handle(Allocated(True, (chunk("p", 0),)), 31.0))
    out = r.handle(SwapEnded("p", "failed", (), 1, 1, 5_000, "peer silent"), 60.0)
    rep = out[-1].report
    assert rep["state"] == "short" and rep["exit_code"] == EXIT_SHORT and rep["shortfall_cents"] == 10_000
    assert "short after 2 asks" in rep["reason"]
    assert r.handle(Allocated(True, (chunk("q", 0),)), 61.0) == []  # ended: nothing more happens


def test_no_allocation_ends_at_once_with_the_reason_and_its_own_exit_code():
    r, _ = run()
    out = r.handle(Allocated(False, (), "cannot cover 300.00 USD: device cap kept out ..."), 3.0)
    rep = out[-1].report
    assert rep["state"] == "no-allocation" and rep["exit_code"] == EXIT_NO_ALLOCATION
    assert "device cap" in rep["reason"] and rep["providers"] == []


def test_our_own_offers_are_never_swapped_with_ourselves():
    r, _ = run(5_000)
    out = r.handle(Allocated(True, (chunk(ME, 0),)), 1.0)
    assert out[-1].report["state"] == "no-allocation"


def test_a_short_second_allocation_is_reported_with_its_reason():
    r, _ = run(10_000)
    starts = swaps(r.handle(Allocated(True, (chunk("a", 0), chunk("b", 0))), 1.0))
    deliver(r, starts["a"], 2.0)
    r.handle(SwapRefused("b", "b refused: value"), 2.5)
    rep = r.handle(Allocated(False, (), "the book holds nothing more"), 6.0)[-1].report
    assert rep["state"] == "short" and rep["exit_code"] == EXIT_SHORT and rep["obtained_cents"] == 5_000
    assert "asked for again: the book holds nothing more" in rep["reason"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        RequestRun("r", "BTC-REG", "BTC-REG", 100, ME)
    with pytest.raises(ValueError):
        RequestRun("r", "BTC-REG", "ETH-DEV", 0, ME)
    r, _ = run()
    swaps(r.handle(Allocated(True, (chunk("a", 0),)), 1.0))
    with pytest.raises(ValueError):
        r.handle(SwapEnded("a", "running"), 2.0)
    assert r.handle(SwapEnded("stranger", "done", ("stranger-a0",)), 2.0) == []  # not a provider of this run


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_order_of_outcomes_ends_once_with_a_true_report(data):
    """Whatever each provider does (deliver, refuse, withhold after k chunks), in any order: the run asks at
    most twice, ends exactly once, counts only chunks it asked for, loses at most one chunk per withholder,
    and its exit code matches what it obtained."""
    n = data.draw(st.integers(1, 6))
    per = data.draw(st.integers(1, 3))
    r, _ = run(n * per * 5_000)
    finished = []
    for ask in range(2):
        peers = [f"a{ask}p{i}" for i in range(data.draw(st.integers(0 if ask else 1, 4)))]
        out = r.handle(Allocated(bool(peers), tuple(chunk(p, i) for p in peers for i in range(per)), "none"), ask)
        finished += [c for c in out if isinstance(c, Finished)]
        starts = swaps(out)
        for peer in data.draw(st.permutations(sorted(starts))):
            s = starts[peer]
            what = data.draw(st.sampled_from(["done", "refused", "withheld"]))
            if what == "refused":
                out = r.handle(SwapRefused(peer, "no"), ask + 0.5)
            elif what == "done":
                out = deliver(r, s, ask + 0.5)
            else:
                out = deliver(r, s, ask + 0.5, upto=data.draw(st.integers(0, per - 1)), state="withheld")
            finished += [c for c in out if isinstance(c, Finished)]
        if r.done:
            break
    assert len(finished) == 1 and r.done and r.asks <= 2
    rep = finished[0].report
    assert rep["obtained_cents"] == sum(p["received_cents"] for p in rep["providers"])
    assert all(p["received_cents"] <= p["usd_cents"] for p in rep["providers"])  # only what was asked of it
    assert all(p["lost"] <= 1 for p in rep["providers"])
    assert (rep["exit_code"] == EXIT_COMPLETE) == (rep["obtained_cents"] >= r.target_cents)
    assert rep["exit_code"] in (EXIT_COMPLETE, EXIT_SHORT, EXIT_NO_ALLOCATION)


# ------------------------------------------------------------------ across a daemon restart
def restarted(r: RequestRun) -> RequestRun:
    """What the daemon stores after every change, read back by a new process (through JSON, as stored)."""
    import json

    return RequestRun.from_state(json.loads(json.dumps(r.to_state())))


def test_a_stored_run_reads_back_as_it_was_and_its_report_is_the_same():
    r, _ = run()
    offers = tuple(chunk(p, i) for p in ("p1", "p2", "w") for i in range(2))
    starts = swaps(r.handle(Allocated(True, offers, notes=("a note",), proposals=4), 1.0))
    deliver(r, starts["p1"], 2.0)
    r.handle(SwapAgreed("p2", 5_000), 2.5)
    deliver(r, starts["w"], 31.0, upto=1, state="withheld")
    back = restarted(r)
    assert back.report() == r.report() and back.to_state() == r.to_state()
    assert back.providers == r.providers


def test_after_a_restart_each_swap_not_ended_is_found_again_and_the_run_goes_on():
    r, _ = run()
    offers = tuple(chunk(p, i) for p in ("p1", "p2", "p3") for i in range(2))
    starts = swaps(r.handle(Allocated(True, offers), 1.0))
    deliver(r, starts["p1"], 2.0)
    r.handle(SwapAgreed("p2", 4_900), 2.5)  # p2 agreed, p3 had not answered: the daemon dies here
    back = restarted(r)
    cmds = back.resume(40.0)
    assert cmds == [ResumeSwap("p2", starts["p2"].offers, True, 4_900), ResumeSwap("p3", starts["p3"].offers, False, 0)]
    assert back.report()["restarts"] == 1 and back.report()["state"] == "running"
    assert back.handle(SwapRefused("p3", "the daemon restarted before this swap was proposed"), 41.0) == []
    again = back.handle(SwapEnded("p2", "done", tuple(c.address for c in starts["p2"].offers), 2), 42.0)
    assert again == [Ask(10_000, frozenset({ME, "p3"}))]  # the shortfall, asked once more without p3


def test_after_a_restart_an_ask_in_flight_is_asked_again_and_an_ended_run_does_nothing():
    r, cmds = run()
    back = restarted(r)
    assert back.resume(5.0) == cmds  # the proposals collected before the restart were lost with it
    starts = swaps(back.handle(Allocated(True, (chunk("p1", 0),)), 6.0))
    assert deliver(back, starts["p1"], 7.0) == [Ask(25_000, frozenset({ME}))]
    out = back.handle(Allocated(False, reason="no proposals"), 8.0)
    assert back.done and isinstance(out[-1], Finished) and back.report()["state"] == "short"
    ended = restarted(back)
    assert ended.resume(9.0) == [] and ended.report() == back.report()


def test_a_stored_state_that_does_not_read_is_refused():
    with pytest.raises(ValueError, match="not a stored request run"):
        RequestRun.from_state({"request_id": "x"})
    with pytest.raises(ValueError, match="not a stored request run"):
        RequestRun.from_state({**run()[0].to_state(), "providers": [{"peer": "p"}]})


# ------------------------------------------------------------------ options (request --contract option)
def option_run(target: int = 15_000, premium: int = 1, expiry: int = 100) -> tuple[RequestRun, list]:
    r = RequestRun("rid", "BTC-REG", "ETH-DEV", target, ME, kind="option", premium_chunks=premium,
                   expiry_blocks=expiry)
    return r, r.start(0.0)


@pytest.mark.parametrize("premium, expiry, why", [(0, 100, "premium_chunks must be 1..4"),
                                                  (5, 100, "premium_chunks must be 1..4"),
                                                  (1, 0, "expiry_blocks must be 1..10000"),
                                                  (1, 10_001, "expiry_blocks must be 1..10000")])
def test_option_terms_out_of_their_bounds_are_refused_with_the_range(premium, expiry, why):
    assert why in option_terms_refusal("ETH-DEV", premium, expiry)
    with pytest.raises(ValueError, match=why.split("..")[0]):
        option_run(premium=premium, expiry=expiry)
    with pytest.raises(ValueError, match="runs swap or option contracts, not 'escrow'"):
        RequestRun("rid", "BTC-REG", "ETH-DEV", 5_000, ME, kind="escrow")


def test_an_option_request_allocates_as_swaps_and_obtains_what_was_written_a_refuser_covered_once():
    r, cmds = option_run()
    assert cmds == [Ask(15_000, frozenset({ME}))]
    starts = swaps(r.handle(Allocated(True, tuple(chunk(p, 0) for p in ("p1", "p2", "x"))), 1.0))
    assert sorted(starts) == ["p1", "p2", "x"]
    assert r.handle(SwapRefused("x", "this node writes no options"), 1.5) == []
    for n, p in enumerate(("p1", "p2")):
        r.handle(SwapAgreed(p, 5_000, f"{n}" * 64), 2.0)
    assert r.report()["providers"][0]["contract"] == "0" * 64
    r.handle(SwapEnded("p1", "done", tuple(c.address for c in starts["p1"].offers), 1), 3.0)
    again = r.handle(SwapEnded("p2", "done", tuple(c.address for c in starts["p2"].offers), 1), 3.5)
    assert again == [Ask(5_000, frozenset({ME, "x"}))]  # the refuser's share, asked once more without it
    cover = swaps(r.handle(Allocated(True, (chunk("p3", 0),)), 4.0))["p3"]
    r.handle(SwapAgreed("p3", 5_000, "3" * 64), 4.5)
    out = r.handle(SwapEnded("p3", "done", (cover.offers[0].address,), 1), 5.0)
    rep = out[-1].report
    assert rep["state"] == "complete" and rep["exit_code"] == EXIT_COMPLETE and rep["obtained_cents"] == 15_000
    assert rep["contract"] == "option" and rep["premium_chunks"] == 1 and rep["expiry_blocks"] == 100
    assert rep["lost"] == 0 and [p["contract"] for p in rep["providers"] if p["state"] == "done"] == [
        "0" * 64, "1" * 64, "3" * 64]
    assert "premium_chunks" not in run()[0].report()  # (a swap request's report has no option terms)


def test_an_option_request_survives_a_restart_with_its_terms_and_contract_ids():
    r, _ = option_run(premium=2, expiry=50)
    starts = swaps(r.handle(Allocated(True, (chunk("p1", 0), chunk("p2", 0))), 1.0))
    r.handle(SwapAgreed("p1", 5_000, "a" * 64), 2.0)  # p1 agreed (its contract id known); p2 had not answered
    back = restarted(r)
    assert (back.kind, back.premium_chunks, back.expiry_blocks) == ("option", 2, 50)
    assert back.resume(9.0) == [ResumeSwap("p1", starts["p1"].offers, True, 5_000, "a" * 64),
                                ResumeSwap("p2", starts["p2"].offers, False, 0, "")]
