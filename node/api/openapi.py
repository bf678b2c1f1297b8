"""OpenAPI 3.0 description of the local control API (served at /openapi.json).

Every number states its range (minimum and maximum) from ``node.api.limits``, the table the API's checks
use; bodies larger than ``MAX_BODY`` get a 413. ``tests/daemon/test_api_schema.py`` checks both.
"""

from __future__ import annotations

from node.api.limits import (MAX_ADDRESS, MAX_BODY, MAX_MULTIADDR, MAX_PEER_ID, STR_RANGES, float_schema,
                             int_schema)
from node.assets import ASSETS

_ASSETS = sorted(ASSETS)
_obj = {"type": "object"}
_err = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}


def _list(name: str) -> dict:
    return {"type": "object", "required": [name], "properties": {name: {"type": "array", "items": _obj}}}


def _get(summary: str, schema: dict, params: list | None = None) -> dict:
    op = {
        "summary": summary,
        "security": [{"cookie": []}],
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}},
                      "401": _err, "400": _err},
    }
    if params:
        op["parameters"] = params
    return op


def _post(summary: str, body: dict, code: str = "201") -> dict:
    return {
        "summary": summary,
        "security": [{"cookie": []}],
        "requestBody": {"required": True, "description": f"JSON, at most {MAX_BODY} bytes (else 413)",
                        "content": {"application/json": {"schema": body}}},
        "responses": {code: {"description": "done", "content": {"application/json": {"schema": _obj}}},
                      "400": _err, "401": _err, "404": _err, "409": _err, "413": _err, "429": _err, "501": _err,
                      "504": _err,
                      "503": _err},
    }


SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "Keyswitch node local API", "version": "1"},
    "servers": [{"url": "http://127.0.0.1"}],
    "components": {"securitySchemes": {"cookie": {"type": "http", "scheme": "bearer",
                                                  "description": "contents of <datadir>/.cookie"}}},
    "paths": {
        "/v1/status": {"get": _get("Node status", _obj)},
        "/v1/peers": {
            "get": _get("Connected peers: address, direction, ping latency, agent, mesh state, bootstrap, score",
                        _list("peers")),
            "post": _post("Dial a peer (keyswitch connect): 409 for an address this node cannot dial (not "
                          "/ip4 or /ip6 with /p2p/<peer id>, its own) or when the dial fails, 504 when it takes "
                          "too long", {
                "type": "object", "additionalProperties": False, "required": ["multiaddr"],
                "properties": {"multiaddr": {"type": "string", "minLength": 1, "maxLength": MAX_MULTIADDR}}},
                          "200"),
        },
        "/v1/balance": {"get": _get("Where claimed funds went: each key received in a contract (claimed and "
                                    "swept to an owner address, kept in the enclave, or lost to a double spend) "
                                    "and totals per asset and destination",
                                    {"type": "object", "required": ["claims", "totals"]})},
        "/v1/offers": {"get": _get("Offer book", _list("offers"), [
            {"name": "asset", "in": "query", "required": False, "schema": {"type": "string", "enum": _ASSETS}},
            {"name": "limit", "in": "query", "required": False, "schema": int_schema("limit")},
        ])},
        "/v1/deposits": {
            "get": _get("This node's deposits", _list("deposits")),
            "post": _post("Create and fund deposit chunks", {
                "type": "object", "additionalProperties": False, "required": ["asset"],
                "properties": {"asset": {"type": "string", "enum": _ASSETS},
                               "chunks": int_schema("deposits.chunks")}}),
        },
        "/v1/contracts": {
            "get": _get("Contracts", _list("contracts")),
            "post": _post("Propose a contract to a peer, agreed over /keyswitch/contract/1: a swap (the stdlib "
                          "turns contract), an escrow (peer = payee), an option (peer = writer) or a ring "
                          "(legs; peer is ignored), each run over /keyswitch/contract-run/1", {
                "type": "object", "additionalProperties": False, "required": ["give"],
                "properties": {"peer": {"type": "string", "minLength": 1, "maxLength": MAX_PEER_ID},
                               "give": {"type": "string", "enum": _ASSETS},
                               "take": {"type": "string", "enum": _ASSETS},
                               "chunks": int_schema("contracts.chunks"),
                               "kind": {"type": "string", "enum": ["swap", "escrow", "option", "ring"]},
                               "legs": {"type": "array", "minItems": 2, "maxItems": 8, "items": {
                                   "type": "object", "additionalProperties": False, "required": ["peer", "asset"],
                                   "properties": {"peer": {"type": "string", "minLength": 1, "maxLength": MAX_PEER_ID},
                                                  "asset": {"type": "string", "enum": _ASSETS}}}},
                               "arbiter": {"type": "string", "maxLength": STR_RANGES["arbiter"][1]},
                               "refund_blocks": int_schema("refund_blocks"),
                               "premium_chunks": int_schema("premium_chunks"),
                               "premium_blocks": int_schema("premium_blocks"),
                               "expiry_blocks": int_schema("expiry_blocks"),
                               "key_escrow": {
                                   "type": "object", "additionalProperties": False,
                                   "required": ["holders", "k", "recovery"],
                                   "description": "escrow / option: our chunks' keys in Shamir shares held by "
                                                  "these nodes, k of which rebuild a key in the recovery node's "
                                                  "enclave when the contract refunds it (node.contracts.desk.escrow)",
                                   "properties": {
                                       "holders": {"type": "array", "minItems": 2, "maxItems": 16, "uniqueItems": True,
                                                   "items": {"type": "string", "minLength": 1, "maxLength": MAX_PEER_ID}},
                                       "k": int_schema("key_escrow.k"),
                                       "recovery": {"type": "string", "minLength": 1, "maxLength": MAX_PEER_ID}}}}}),
        },
        "/v1/escrow": {"get": _get("Key escrow: shares held for others, contracts this node is the recovery "
                                   "node of, recoveries", {"type": "object", "required": [
                                       "holding", "recovery_node_of", "recoveries"]})},
        "/v1/escrow/recover": {"post": _post("Recovery node: bring the owner's key-escrowed chunks of a contract "
                                             "home (asks the holders until the contract refunds them)", {
            "type": "object", "additionalProperties": False, "required": ["contract"],
            "properties": {"contract": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}, "200")},
        "/v1/contracts/approve": {"post": _post("Sign an approval for a contract (an escrow arbiter's \"release\", "
                                                "an option buyer's \"exercise\")", {
            "type": "object", "additionalProperties": False, "required": ["contract", "message"],
            "properties": {"contract": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "message": {"type": "string", "minLength": 1, "maxLength": 64}}}, "200")},
        "/v1/requests": {"post": _post("Request chunks of an asset worth usd from the network's risk engines "
                                       "(the allocation); with give, also swap each chosen provider's chunks "
                                       "against this node's chunks of give, concurrently (contract option: buy "
                                       "an option on them from each provider instead, paying premium_chunks per "
                                       "option, exercisable for expiry_blocks) (201: the final report; "
                                       "202 with wait false: the report so far, see GET /v1/requests/{rid})", {
            "type": "object", "additionalProperties": False, "required": ["asset", "usd"],
            "properties": {"asset": {"type": "string", "enum": _ASSETS},
                           "usd": float_schema("usd"),
                           "contract": {"type": "string", "maxLength": STR_RANGES["contract"][1]},
                           "give": {"type": "string", "enum": _ASSETS},
                           "wait": {"type": "boolean"},
                           "premium_chunks": int_schema("request.premium_chunks"),
                           "expiry_blocks": int_schema("request.expiry_blocks")},
            # with give, what runs is one swap or one option per provider: any other contract kind (escrow: no
            # arbiter across providers) is refused (400, saying why); the option terms are read for option only
            "if": {"required": ["give"]}, "then": {"properties": {"contract": {"enum": ["", "swap", "option"]}}}})},
        "/v1/requests/{rid}": {"get": _get("A request to contracts: its report (providers, obtained, lost, "
                                           "exit_code); with version, once it changed since (at most 20 s)", _obj, [
            {"name": "rid", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9A-Za-z]{1,32}$"}},
            {"name": "version", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": -1, "maximum": 99_999_999}}])},
        "/v1/sweep": {"post": _post("Withdraw one of this node's deposits: the enclave exports its key to the "
                                    "owner and the funds are swept to ``to``, which must be an address of the "
                                    "deposit's chain (its asset's format, network and checksum; else 400, before "
                                    "anything is exported or signed)", {
            "type": "object", "additionalProperties": False, "required": ["deposit", "to"],
            "properties": {"deposit": {"type": "string", "pattern": "^[0-9a-f]{66}$"},
                           "to": {"type": "string", "minLength": 1, "maxLength": MAX_ADDRESS}}}, "200")},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (the cookie is needed here as everywhere on this port; "
                       "--metrics-port serves them without one, on loopback)",
            "security": [{"cookie": []}],
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": _err, "400": _err}}},
        "/v1/reputation": {"get": _get("Local reputation of known devices", _list("devices"))},
        "/v1/gossip": {"get": _get("Gossip validation counters per topic (accept, reject, ignore, sent)",
                                   _list("topics"))},
        "/v1/dashboard/link": {"post": {
            "summary": "A one-time dashboard login link (120 s, one use); Bearer cookie only (not the session)",
            "security": [{"cookie": []}],
            "responses": {"201": {"description": "url and expires_in",
                                  "content": {"application/json": {"schema": _obj}}}, "401": _err}}},
        "/v1/revocations": {"post": _post("Issue a revocation notice signed by this node (applied here at once)", {
            "type": "object", "additionalProperties": False, "required": ["kind", "target", "reason"],
            "properties": {"kind": {"type": "string", "enum": ["class", "device"]},
                           "target": {"type": "string", "minLength": STR_RANGES["target"][0],
                                      "maxLength": STR_RANGES["target"][1]},
                           "reason": {"type": "string", "minLength": STR_RANGES["reason"][0],
                                      "maxLength": STR_RANGES["reason"][1]}}})},
    },
}
SPEC["paths"]["/v1/requests/{rid}"]["get"]["responses"]["404"] = _err  # an id this node does not know (or forgot)
SPEC["paths"]["/v1/requests"]["post"]["responses"]["202"] = {  # with give and wait false: the report so far
    "description": "a request to contracts started (give, wait false): its report so far",
    "content": {"application/json": {"schema": _obj}}}
