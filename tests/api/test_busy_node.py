"""A node too busy to take an API action in time answers 429, and then the action never happens (issue #22).

The attack as it happened under load: the driver's one worker is held by a slow contract handle; POST
/v1/requests waits for the driver to take the request, answers 429 "did not take the request in time", and the
request stayed queued and was sent later, with nobody waiting for its result (the fidelity simulation counted
it "not sent" while the network answered it). An approval (POST /v1/contracts/approve) queued the same way was
answered 200 "approved" without having run, and ran later. Here: the real driver with a held worker, the real
HTTP API and ``NodeServices``, the requests protocol and the contract desk replaced by recorders.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from node.api.app import build_app, read_cookie, serve, write_cookie
from node.app.services import NodeServices
from node.protocols.base import Listeners
from tests.runtime.drivekit import Held, Plain, drained, started_driver

CONTRACT = "ab" * 32


class Rfp(Plain):
    """The requests protocol as ``NodeServices.choose`` uses it; records each request it starts."""

    def __init__(self) -> None:
        super().__init__()
        self.result_listeners, self.results = Listeners(), {}

    def request(self, asset, cents, contract, now, *, deadline, exclude):
        self.ran.append(f"request {asset} {cents}")
        return b"rid", []


@pytest.fixture
async def busy(tmp_path, nursery):
    held, rfp, run = Held(), Rfp(), Plain()
    driver = await started_driver(nursery, held, rfp, run)
    approved = []
    desk = SimpleNamespace(run=run, approve=lambda cid, message, now: approved.append((cid, message)) or [])
    stack = SimpleNamespace(rfp=rfp, desk=desk, request_deadline=1.0)
    svc = NodeServices(SimpleNamespace(driver=driver, peer_id="12D3KooBusy"), stack, clock=None, started_at=0.0)
    svc.take_timeout = 0.5
    cookie = write_cookie(tmp_path)
    url = await nursery.start(serve, build_app(svc, cookie))
    held.hold(driver)  # a slow contract handle holds the worker: everything queues behind it
    await held.held()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {read_cookie(tmp_path)}"},
                                 timeout=60) as client:
        yield SimpleNamespace(client=client, held=held, driver=driver, rfp=rfp, run=run, approved=approved)
        held.release()


async def test_a_request_answered_429_is_never_sent_later(busy):
    r = await busy.client.post("/v1/requests", json={"asset": "BTC-REG", "usd": 100})
    assert r.status_code == 429, r.text
    busy.held.release()
    await drained(busy.driver, busy.rfp)
    assert busy.rfp.ran == []  # before: "request BTC-REG 10000", started with nobody waiting
    assert "nothing was done" in r.json()["error"]  # and the answer says so


async def test_an_approval_not_taken_answers_429_and_never_runs(busy):
    r = await busy.client.post("/v1/contracts/approve", json={"contract": CONTRACT, "message": "release"})
    assert r.status_code == 429, r.text  # before: 200 "approved", though nothing had run
    busy.held.release()
    await drained(busy.driver, busy.run)
    assert busy.approved == []  # before: approved later, with nobody told
    r = await busy.client.post("/v1/contracts/approve", json={"contract": CONTRACT, "message": "release"})
    assert r.status_code == 200 and busy.approved == [(CONTRACT, "release")]  # once the node is free: it runs
