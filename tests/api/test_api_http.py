"""The HTTP layer of the local API: auth, strict bodies, every route, loopback only.

The services behind it here are a small recording object, because this file
tests the HTTP translation; tests/api/test_daemon*.py run the same API over a
real node.
"""

import httpx
import pytest
import trio

from node.api.app import build_app, read_cookie, serve, write_cookie
from node.api.openapi import SPEC
from node.metrics import NodeMetrics
from tests.api.recording import Recording


@pytest.fixture
async def api(tmp_path, nursery):
    cookie = write_cookie(tmp_path)
    svc = Recording()
    metrics = NodeMetrics()
    url = await nursery.start(serve, build_app(svc, cookie, metrics=metrics))
    assert url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {read_cookie(tmp_path)}"}) as c:
        yield c, svc, metrics, url


async def test_every_get_route_answers_with_cookie(api):
    c, svc, metrics, _ = api
    for path, key in [("/v1/peers", "peers"), ("/v1/offers", "offers"), ("/v1/deposits", "deposits"),
                      ("/v1/contracts", "contracts"), ("/v1/reputation", "devices")]:
        r = await c.get(path)
        assert r.status_code == 200, (path, r.text)
        assert isinstance(r.json()[key], list)
    assert (await c.get("/v1/status")).json()["peer_id"] == "12D3KooTest"
    r = await c.get("/v1/offers", params={"asset": "ETH", "limit": 2})
    assert [o["asset"] for o in r.json()["offers"]] == ["ETH", "ETH"] and svc.calls[-1] == ("offers", "ETH", 2)
    assert "keyswitch_api_requests" in (await c.get("/metrics")).text


async def test_without_or_with_wrong_cookie_is_401(api):
    _, _, _, url = api
    async with httpx.AsyncClient(base_url=url) as anon:
        for path in SPEC["paths"]:
            r = await anon.get(path)
            assert r.status_code in (401, 405), path
        r = await anon.get("/v1/status", headers={"Authorization": "Bearer " + "0" * 64})
        assert r.status_code == 401 and "cookie" in r.json()["error"]
        assert (await anon.get("/openapi.json")).json()["openapi"].startswith("3.")


@pytest.mark.parametrize(
    "path, body, reason",
    [
        ("/v1/deposits", b"{not json", "not JSON"),
        ("/v1/deposits", b'{"asset": 5}', "Expected `str`"),
        ("/v1/deposits", b'{"asset": "BTC", "extra": 1}', "unknown field"),
        ("/v1/deposits", b'{"asset": "BTC", "chunks": 0}', "chunks must be"),
        ("/v1/deposits", b'{"asset": "NOPE"}', "unknown asset"),
        ("/v1/requests", b'{"asset": "BTC", "usd": -3}', "usd must be"),
        ("/v1/requests", b'{"usd": 3}', "missing required field"),
        ("/v1/sweep", b"[]", "Expected `object`"),
        ("/v1/deposits", b"x" * 70000, "body over"),
        ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "kind": "escrow", "key_escrow": {"holders": ["H1", "H2"], '
                          b'"k": 3, "recovery": "R"}}', "k must be 2..2"),
        ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "kind": "escrow", "key_escrow": {"holders": ["H1"], '
                          b'"k": 2, "recovery": "R"}}', "2..16 peer ids, got 1"),
        ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "kind": "option", "key_escrow": {"holders": ["H", "H"], '
                          b'"k": 2, "recovery": "R"}}', "must be distinct"),
        ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "kind": "option", "key_escrow": {"holders": ["H", "I"], '
                          b'"k": 2}}', "missing required field `recovery`"),
        ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "take": "ETH-DEV", "key_escrow": {"holders": ["H", "I"], '
                          b'"k": 2, "recovery": "R"}}', "not a swap"),
        ("/v1/escrow/recover", b'{"contract": "xyz"}', "64-hex-digit"),
    ],
)
async def test_malformed_bodies_get_4xx_with_reason(api, path, body, reason):
    c, *_ = api
    r = await c.post(path, content=body)
    assert 400 <= r.status_code < 500
    assert reason in r.json()["error"]


async def test_actions(api):
    c, svc, *_ = api
    r = await c.post("/v1/deposits", json={"asset": "BTC", "chunks": 3})
    assert r.status_code == 201 and svc.calls[-1] == ("deposit", "BTC", 3)
    r = await c.post("/v1/requests", json={"asset": "ETH", "usd": 100})
    assert r.status_code == 201 and r.json()["contract"] == "swap"
    r = await c.post("/v1/sweep", json={"deposit": "02" + "ab" * 32, "to": "bcrt1q..."})
    assert r.status_code == 200  # (the address format is the node's check: it knows the deposit's asset)


async def test_key_escrow_terms_reach_the_node_and_recovery_is_asked_by_contract_id(api):
    c, svc, *_ = api
    ke = {"holders": ["H1", "H2", "H3"], "k": 2, "recovery": "R"}
    r = await c.post("/v1/contracts", json={"peer": "P", "give": "BTC-REG", "kind": "escrow", "arbiter": "A",
                                            "key_escrow": ke})
    assert r.status_code == 201 and svc.calls[-1][:2] == ("contract", "escrow")
    assert svc.calls[-1][2]["key_escrow"] == ke and svc.calls[-1][2]["arbiter"] == "A"
    r = await c.post("/v1/contracts", json={"peer": "P", "give": "BTC-REG", "kind": "escrow", "arbiter": "A"})
    assert r.status_code == 201 and "key_escrow" not in svc.calls[-1][2]
    r = await c.post("/v1/escrow/recover", json={"contract": "ab" * 32})
    assert r.status_code == 200 and svc.calls[-1] == ("recover", "ab" * 32)
    assert set((await c.get("/v1/escrow")).json()) == {"holding", "recovery_node_of", "recoveries"}


async def test_bad_query_parameter(api):
    c, *_ = api
    r = await c.get("/v1/offers", params={"limit": "lots"})
    assert r.status_code == 400 and "limit" in r.json()["error"]


async def test_unknown_query_parameters_are_refused(api):
    c, *_ = api
    r = await c.get("/v1/offers", params={"assett": "BTC"})
    assert r.status_code == 400 and "unknown query parameter(s): 'assett'; known: asset, limit" in r.json()["error"]
    r = await c.get("/v1/status", params={"x": "1"})
    assert r.status_code == 400


async def test_a_request_to_contracts_answers_final_or_at_once_and_its_report_long_polls(api):
    c, svc, *_ = api
    body = {"asset": "BTC-REG", "usd": 300, "give": "ETH-DEV"}
    r = await c.post("/v1/requests", json=body)
    assert r.status_code == 201 and r.json()["done"] and svc.calls[-1] == ("request", "BTC-REG", "ETH-DEV", True)
    r = await c.post("/v1/requests", json={**body, "wait": False})
    assert r.status_code == 202 and not r.json()["done"] and svc.calls[-1][-1] is False
    r = await c.get("/v1/requests/r1", params={"version": 7})
    assert r.status_code == 200 and r.json()["version"] == 8 and svc.calls[-1][:3] == ("report", "r1", 7)
    assert svc.calls[-1][3] <= 30  # a bounded long poll
    assert (await c.get("/v1/requests/r1")).json()["version"] == 0  # no version: the report as it is (-1)
    for bad in ("--5", "x", "-2", "1e3", "123456789"):
        r = await c.get("/v1/requests/r1", params={"version": bad})
        assert r.status_code == 400 and "version must be" in r.json()["error"], bad
    r = await c.get("/v1/requests/nope")
    assert r.status_code == 404 and "no request" in r.json()["error"]
    r = await c.get("/v1/requests/bad%20id")
    assert r.status_code == 400 and "request id" in r.json()["error"]
    r = await c.get("/v1/requests/r1", params={"other": 1})
    assert r.status_code == 400 and "unknown query parameter" in r.json()["error"]


async def test_an_option_request_carries_its_terms_and_terms_out_of_range_are_refused(api):
    c, svc, *_ = api
    body = {"asset": "BTC-REG", "usd": 150, "give": "ETH-DEV", "contract": "option"}
    r = await c.post("/v1/requests", json={**body, "premium_chunks": 2, "expiry_blocks": 500})
    assert r.status_code == 201 and svc.calls[-1][-2:] == ("option", {"premium_chunks": 2, "expiry_blocks": 500})
    r = await c.post("/v1/requests", json=body)  # the defaults: one premium chunk, 100 blocks
    assert r.status_code == 201 and svc.calls[-1][-1] == {"premium_chunks": 1, "expiry_blocks": 100}
    n = len(svc.calls)
    for field, bad in (("premium_chunks", 5), ("premium_chunks", 0), ("expiry_blocks", 10_001)):
        r = await c.post("/v1/requests", json={**body, field: bad})
        assert r.status_code == 400 and field in r.json()["error"], (field, bad, r.text)
    assert len(svc.calls) == n  # nothing started
