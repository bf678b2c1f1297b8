"""``ProtocolDriver.call``: an awaited call is taken by the driver's worker in time, or withdrawn and never run.

The bug (issues #19, #22): the API posted a call, waited a few seconds for the driver's one worker (busy with a
slow contract handle) to take it, answered "not taken" (HTTP 429), and the call stayed queued and ran later with
nobody waiting (a request abandoned and still sent). Driven here as it happened: a worker held by a slow handle,
a call queued behind it whose time runs out, then the worker freed.
"""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

from node.protocols.base import Notify
from node.runtime.calls import AwaitedCall, NotTaken, StillRunning
from tests.polling import eventually
from tests.runtime.drivekit import Held, Plain, drained, started_driver


def _record(proto: Plain, what: str):
    def fn(now: float):
        proto.ran.append(what)
        return what, [Notify("ran", {"what": what})]

    return fn


@pytest.mark.parametrize("on_worker", [False, True], ids=["trio-thread protocol", "worker protocol"])
async def test_a_call_not_taken_in_time_is_withdrawn_and_never_runs(nursery, on_worker):
    held, plain = Held(), Plain()
    driver = await started_driver(nursery, held, plain)
    target = held if on_worker else plain
    held.hold(driver)
    await held.held()
    with pytest.raises(NotTaken):
        await driver.call(target, _record(plain, "late"), timeout=0.2)
    held.release()
    await drained(driver, target)
    assert plain.ran == [] and not driver.notifications  # neither it nor its commands, ever
    calls = driver.stats()["calls"]  # what an operator sees in /v1/status when the API answered 429
    assert calls["withdrawn"] == 1 and calls["ended"] == 1 and calls["wait_max_s"] >= 0.2
    assert await driver.call(target, _record(plain, "next"), timeout=10) == "next"  # the driver goes on
    assert plain.ran == ["next"] and [n.detail["what"] for n in driver.notifications] == ["next"]


async def test_a_call_cancelled_by_its_caller_while_queued_never_runs(nursery):
    held, plain = Held(), Plain()
    driver = await started_driver(nursery, held, plain)
    held.hold(driver)
    await held.held()
    with trio.move_on_after(0.2) as scope:  # the caller's own deadline (e.g. an HTTP client gone)
        await driver.call(plain, _record(plain, "cancelled"), timeout=30)
    assert scope.cancelled_caught
    async with trio.open_nursery() as n:  # cancelled from outside, by another task
        n.start_soon(functools.partial(driver.call, plain, _record(plain, "cancelled too"), timeout=30))
        await trio.testing.wait_all_tasks_blocked()  # (it is queued)
        n.cancel_scope.cancel()
    held.release()
    await drained(driver, plain)
    assert plain.ran == []


async def test_a_call_taken_returns_its_value_and_raises_its_error_on_the_callers_side(nursery):
    held, plain = Held(), Plain()
    driver = await started_driver(nursery, held, plain)
    held.hold(driver)
    await held.held()
    async with trio.open_nursery() as n:  # queued behind the held worker, taken once it is freed
        got = []

        async def ask():
            got.append(await driver.call(plain, _record(plain, "waited"), timeout=30))

        n.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()  # (it is queued)
        held.release()
    assert got == ["waited"] and plain.ran == ["waited"]

    def refuse(now: float):
        raise ValueError("refused by the protocol")

    errors = driver.errors
    with pytest.raises(ValueError, match="refused by the protocol"):
        await driver.call(plain, refuse, timeout=10)
    assert driver.errors == errors  # the caller's to answer, not a driver error


async def test_a_call_taken_but_not_ended_in_time_says_it_runs(nursery):
    held = Held()
    driver = await started_driver(nursery, held)
    ran = []

    def slow(now: float):
        held.entered.set()
        held.gate.wait(60)
        ran.append(now)
        return "done", []

    with pytest.raises(StillRunning):
        await driver.call(held, slow, timeout=0.3)
    assert held.entered.is_set()  # taken: a "not taken" answer would be false
    assert driver.stats()["calls"]["taken"] == 1
    held.release()
    await drained(driver, held)
    assert len(ran) == 1


async def test_a_call_taken_at_its_deadline_is_reported_taken_not_withdrawn():
    """The race decided once, under the call's lock: the worker takes the call and ends it, and the caller's
    deadline passes before the wake-ups reach it. The caller finds the call ended: its value, not NotTaken."""
    c = AwaitedCall(lambda now: ("value", []))
    assert c.take()  # (the worker's side; the wake-ups are still queued for the trio loop)
    c.run(0.0)
    assert await c.result(0) == "value"
    d = AwaitedCall(lambda now: ("value", []))
    assert d.take()  # taken, not yet ended: "still running", never "not taken"
    with pytest.raises(StillRunning):
        await d.result(0)
    e = AwaitedCall(lambda now: ("value", []))
    with pytest.raises(NotTaken):
        await e.result(0)
    assert not e.take()  # the worker, later: skips it


async def test_a_full_queue_refuses_a_call_at_once(nursery):
    held, plain = Held(), Plain()
    driver = await started_driver(nursery, held, plain)
    held.hold(driver)
    await held.held()
    for _ in range(10_000):  # the queue's room, all taken while the worker is held
        driver.submit(plain, lambda now: [])
    assert driver.stats()["queued"] == 10_000
    with pytest.raises(NotTaken, match="queue is full"):
        await driver.call(plain, _record(plain, "no room"), timeout=10)
    held.release()
    await eventually(lambda: driver.stats()["queued"] == 0, what="the queue emptied")
    await drained(driver, plain)
    assert plain.ran == []
