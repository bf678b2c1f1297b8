"""Schemathesis against a real daemon: every operation in the OpenAPI description, generated inputs."""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from node.api.openapi import SPEC
from tests.functional.framework import Daemon

schema = schemathesis.openapi.from_dict(SPEC)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    old = os.environ.get("KEYSWITCH_RISK_REQUEST_DEADLINE")
    os.environ["KEYSWITCH_RISK_REQUEST_DEADLINE"] = "0.2"  # requests decide fast: many are generated
    try:
        d = Daemon(tmp_path_factory.mktemp("schema") / "node")
    finally:
        if old is None:
            del os.environ["KEYSWITCH_RISK_REQUEST_DEADLINE"]
        else:
            os.environ["KEYSWITCH_RISK_REQUEST_DEADLINE"] = old
    yield d.value("API listening on "), (d.datadir / ".cookie").read_text().strip()
    assert d.stop() == 0


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_errors(case, live):
    url, cookie = live
    headers = {"Authorization": f"Bearer {cookie}"}
    if case.method == "POST":
        # actions answer with documented statuses (202 a request to contracts started, 409 refused, 429 busy,
        # 504 no decision in time);
        # everything about them must conform, and malformed bodies must get 4xx
        from schemathesis.checks import not_a_server_error

        response = case.call(base_url=url, headers=headers, timeout=120)  # 1,000 deposits on a loaded machine
        case.validate_response(response, excluded_checks=[not_a_server_error])
        assert response.status_code in (200, 201, 202, 400, 401, 404, 405, 409, 413, 429, 501, 504), response.text
        return
    case.call_and_validate(base_url=url, headers=headers)


def _numbers(node, path="$"):
    """Every integer/number schema in the description: (path, schema)."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            yield path, node
        for k, v in node.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{path}[{i}]")


def test_the_description_states_the_range_of_every_number():
    """Each number a client may send has a minimum and a maximum, and they are the ones the API enforces."""
    from node.api.limits import FLOAT_RANGES, INT_RANGES

    found = list(_numbers(SPEC["paths"]))
    assert len(found) >= len(INT_RANGES) + len(FLOAT_RANGES)
    stated = set()
    for path, s in found:
        assert "minimum" in s and "maximum" in s, f"{path} states no range"
        assert s["minimum"] <= s["maximum"], path
        stated.add((s["type"], s["minimum"], s["maximum"]))
    for lo, hi in INT_RANGES.values():
        assert ("integer", lo, hi) in stated, (lo, hi)
    for lo, hi in FLOAT_RANGES.values():
        assert ("number", lo, hi) in stated, (lo, hi)
    assert SPEC["paths"]["/metrics"]["get"]["security"] == [{"cookie": []}]
    assert SPEC["paths"]["/v1/sweep"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["to"]["maxLength"] > 0

