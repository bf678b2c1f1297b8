"""The real engine's planning and bookkeeping, without starting processes (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulations.__main__ import main
from simulations.real import RealEngine
from simulations.scenario import load

SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "scenarios"


def test_caps_the_daemons_and_scales_a_long_schedule():
    sc = load(SCENARIOS / "baseline.toml")
    sc["adversaries"] = {}  # the real engine runs honest daemons only
    e = RealEngine(sc, max_wall=60)
    assert e.n == 20 and any("capped at 20" in n for n in e.notes)
    assert e.scale == pytest.approx(60 / sc["run"]["duration"]) and any("replayed" in n for n in e.notes)
    offering, chunk, sched = e._plan()
    assert len(offering) == round(sc["deposits"]["offering_share"] * 20)
    assert set(chunk) == set(offering)
    assert all(0 < t <= sc["run"]["duration"] for t, *_ in sched)
    assert all(sc["requests"]["usd_min"] <= usd <= sc["requests"]["usd_max"] for _, usd, _, _ in sched)
    assert {i for _, _, i, _ in sched} <= set(e.requesters)
    # the same seed plans the same run
    sc2 = load(SCENARIOS / "baseline.toml")
    sc2["adversaries"] = {}
    assert RealEngine(sc2)._plan() == (offering, chunk, sched)


def test_refuses_adversaries_with_a_clear_message(capsys):
    with pytest.raises(ValueError, match="honest daemons only"):
        RealEngine(load(SCENARIOS / "smoke.toml"))
    assert main(["run", str(SCENARIOS / "smoke.toml"), "--engine", "real", "--quiet"]) == 2
    assert "honest daemons only" in capsys.readouterr().err


def test_exposure_from_chosen_allocations_held_for_contract_seconds():
    sc = load(SCENARIOS / "fidelity.toml")
    e = RealEngine(sc)
    hold = sc["requests"]["contract_seconds"]
    e.decided = [
        {"t": 1.0, "node": 0, "ok": True, "per_device": {"a": 5000, "b": 5000}},
        {"t": 1.0 + hold / 2, "node": 1, "ok": True, "per_device": {"a": 5000}},  # overlaps: a holds 100 USD
        {"t": 1.0 + 3 * hold, "node": 0, "ok": True, "per_device": {"a": 10000}},  # after both released
        {"t": 2.0, "node": 2, "ok": False, "per_device": {}},
    ]
    peak, per_client = e.exposure()
    assert peak == {"a": 10000, "b": 5000}
    assert per_client == {"a": 10000, "b": 5000}


def test_daemon_cpu_counts_the_child_processes():
    import os
    import signal
    import subprocess
    import sys
    import time

    from simulations.real import _tree_cpu_s

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys\n"
         f"c = subprocess.Popen([sys.executable, '-c', {burn.format(s=0.4)!r}])\nprint(c.pid, flush=True)\n"
         + burn.format(s=0.2)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while _tree_cpu_s(parent.pid) < 0.55 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _tree_cpu_s(parent.pid) >= 0.55  # 0.2 s of its own + 0.4 s of its child's
        assert _tree_cpu_s(child) < _tree_cpu_s(parent.pid)
    finally:
        os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
    assert _tree_cpu_s(parent.pid) == 0.0  # gone


def test_an_api_that_does_not_answer_counts_as_not_full(tmp_path):
    import socket

    from simulations.real import _Api, _book_count

    with socket.socket() as sk:  # a port nobody listens on
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    (tmp_path / "api.url").write_text(f"http://127.0.0.1:{port}\n")
    (tmp_path / ".cookie").write_text("x\n")
    assert _book_count(_Api(tmp_path)) == -1


def test_a_request_a_busy_daemon_answered_429_is_asked_again_and_counted_not_sent_only_after_every_try():
    """A daemon's 429 means it did not take the request and nothing was sent (docs/operating.md): the engine asks
    again, as a user would; a request refused every time is raised (counted not sent), never retried forever."""
    from simulations.real import BUSY_TRIES, Busy, post_asking_again

    class Api:
        def __init__(self, busy: int) -> None:
            self.busy, self.posts = busy, []

        def post(self, path, body, timeout):
            self.posts.append((path, body))
            if len(self.posts) <= self.busy:
                raise Busy("POST /v1/requests: 429 the node did not take the request in time")
            return {"request_id": "r1"}

    told: list[Busy] = []
    api = Api(busy=2)
    assert post_asking_again(api, "/v1/requests", {"usd": 1}, timeout=1, on_busy=told.append, pause=0) == {
        "request_id": "r1"}
    assert len(api.posts) == 3 and len(told) == 2 and api.posts[0] == api.posts[2]
    always = Api(busy=10 ** 6)
    with pytest.raises(Busy):
        post_asking_again(always, "/v1/requests", {"usd": 1}, timeout=1, on_busy=told.append, pause=0)
    assert len(always.posts) == BUSY_TRIES
