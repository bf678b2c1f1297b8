"""The local control API: JSON over HTTP on 127.0.0.1, cookie-authenticated.

As bitcoind does, the daemon writes a random cookie to ``<datadir>/.cookie``
(mode 0600) at start and deletes it at stop; a client proves it may read the
data directory by sending ``Authorization: Bearer <cookie>``. Every call but
``/openapi.json`` and ``/healthz`` needs it, ``/metrics`` on this port included
(the separate ``--metrics-port`` app, ``build_metrics_app``, serves metrics
without a cookie, on loopback only).

Bodies are read in pieces and refused (413) as soon as they pass ``MAX_BODY``
bytes, or at once when their Content-Length says so; the rest is never read.
They are decoded strictly (msgspec): unknown fields, wrong types and missing
fields give a 400 with the reason. Every number has a range
(``node.api.limits``, stated in the OpenAPI description too): out of it, or
NaN or infinite, is a 400 whose reason names the field and the range. A sweep's
destination must be an address of its deposit's chain (``node.api.addresses``),
checked before the enclave exports the key. Nothing a client sends can crash
the node.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
import msgspec
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.api.limits import (MAX_ADDRESS, MAX_BODY, MAX_MULTIADDR, MAX_PEER_ID, check_float, check_int, check_str,
                             range_text)
from node.api.openapi import SPEC
from node.api.services import ApiError, Services
from node.fsutil import atomic_write

COOKIE_FILE = ".cookie"
__all__ = ["MAX_BODY", "build_app", "build_metrics_app", "read_cookie", "serve", "write_cookie"]


def write_cookie(datadir: Path) -> str:
    token = secrets.token_hex(32)
    atomic_write(Path(datadir) / COOKIE_FILE, token.encode(), durable=False)  # a new one at every start
    return token


def read_cookie(datadir: Path) -> str:
    return (Path(datadir) / COOKIE_FILE).read_text().strip()


class DepositBody(msgspec.Struct, forbid_unknown_fields=True):
    asset: str
    chunks: int = 1


class RequestBody(msgspec.Struct, forbid_unknown_fields=True):
    asset: str
    usd: float
    contract: str = "swap"
    give: str = ""  # with it: swap the chosen providers' chunks against ours of ``give`` (node.app.requestdesk)
    wait: bool = True  # with give: answer once every contract ended (else at once; GET /v1/requests/{id})
    premium_chunks: int = 1  # with give and contract option: our chunks of give paid as each option's premium
    expiry_blocks: int = 100  # with give and contract option: each option is exercisable this many blocks of asset


class KeyEscrowBody(msgspec.Struct, forbid_unknown_fields=True):
    holders: list[str]  # peer ids of the nodes holding the shares of our chunks' keys
    k: int  # how many of them rebuild a key
    recovery: str  # peer id of our recovery node: its enclave gets the shares back at the time-lock


class Leg(msgspec.Struct, forbid_unknown_fields=True):
    peer: str  # a ring party after us, in ring order
    asset: str  # the asset of its chunks, given to the next party (the last gives to us)


class ContractBody(msgspec.Struct, forbid_unknown_fields=True):
    give: str
    peer: str = ""  # every kind but ring
    take: str = ""
    chunks: int = 1
    kind: str = "swap"  # swap | escrow (peer = payee) | option (peer = writer) | ring (legs)
    legs: list[Leg] = []  # ring: the other parties in ring order (we give to the first; the last gives to us)
    arbiter: str = ""  # escrow: the peer whose signed "release" pays the payee
    refund_blocks: int = 100  # escrow: back to us this many blocks of ``give`` from now
    premium_chunks: int = 1  # option: how many of our ``give`` chunks are the premium
    premium_blocks: int = 20  # option: the premium is due within this many blocks of ``take``
    expiry_blocks: int = 100  # option: exercise within this many blocks of ``take``
    key_escrow: KeyEscrowBody | None = None  # escrow / option: our chunks' keys in k-of-n shares (node.contracts.desk.escrow)


class RecoverBody(msgspec.Struct, forbid_unknown_fields=True):
    contract: str


class ApproveBody(msgspec.Struct, forbid_unknown_fields=True):
    contract: str
    message: str


class RevokeBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    target: str
    reason: str


class ConnectBody(msgspec.Struct, forbid_unknown_fields=True):
    multiaddr: str  # /ip4/<ip>/tcp/<port>/p2p/<peer id> (keyswitch connect)


class SweepBody(msgspec.Struct, forbid_unknown_fields=True):
    deposit: str  # the hex public key of one of this node's deposits
    to: str  # an address of the deposit's chain (node.api.addresses)


#: POST /v1/contracts: each number's JSON path -> its range in node.api.limits
CONTRACT_NUMBERS = {"chunks": "contracts.chunks", "refund_blocks": "refund_blocks", "premium_chunks": "premium_chunks",
                    "premium_blocks": "premium_blocks", "expiry_blocks": "expiry_blocks", "key_escrow.k": "key_escrow.k"}


REPORT_WAIT = 20.0  # s GET /v1/requests/{id}?version=N waits for news at most
MAX_REASON = 500  # characters of an error reason: one line, whatever a client's field names held


def _err(status: int, reason: str) -> JSONResponse:
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON - 1] + "…"
    return JSONResponse({"error": reason}, status_code=status)


class _NonFinite:
    def __init__(self, token: str):
        self.token = token


def _nonfinite_fields(raw: bytes) -> list[tuple[str, str]]:
    """Where a body msgspec refused as not JSON holds NaN / Infinity / -Infinity (which Python's json.dumps
    writes): [(path, token)], paths as ``key_escrow.k``. Only ever called on a body of at most MAX_BODY bytes."""
    import json

    try:
        obj = json.loads(raw, parse_constant=_NonFinite)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return []
    found: list[tuple[str, str]] = []

    def walk(v, path: str, depth: int) -> None:
        if depth > 32 or len(found) >= 4:
            return
        if isinstance(v, _NonFinite):
            found.append((path or "$", v.token))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else str(k), depth + 1)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]", depth + 1)

    walk(obj, "", 0)
    return found


def build_app(services: Services, cookie: str, *, metrics=None) -> Starlette:
    """The ASGI app. ``metrics`` (a ``NodeMetrics``) adds ``/metrics`` (cookie required, as everywhere on
    this port) and request counts."""

    from node.api import dashboard as dash

    sessions = dash.Sessions()

    def authorised(request: Request) -> bool:
        got = request.headers.get("authorization", "")
        if got.startswith("Bearer "):
            return hmac.compare_digest(got[7:].strip().encode(), cookie.encode())
        # the dashboard's session cookie: reads only (GET), from a loopback Host (node.api.dashboard)
        return (request.method == "GET" and dash.host_ok(request.headers.get("host"))
                and sessions.valid(request.cookies.get(dash.SESSION_COOKIE)))

    def endpoint(fn, *, auth: bool = True, query: frozenset[str] = frozenset()):
        async def handler(request: Request) -> Response:
            unknown = sorted(set(request.query_params.keys()) - query)
            if auth and not authorised(request):
                resp: Response = _err(401, "missing or wrong cookie: send 'Authorization: Bearer <datadir/.cookie>'")
            elif unknown:
                resp = _err(400, f"unknown query parameter(s): {', '.join(map(repr, unknown))}"
                                 + (f"; known: {', '.join(sorted(query))}" if query else ""))
            else:
                try:
                    resp = await fn(request)
                except ApiError as exc:
                    resp = _err(exc.status, exc.reason)
            if metrics is not None:
                metrics.api_requests.labels(path=request.url.path, status=str(resp.status_code)).inc()
            return resp

        return handler

    async def read_body(request: Request) -> bytes:
        """The body, read piece by piece: 413 as soon as it passes MAX_BODY bytes (or at once when its
        Content-Length says it will), without reading, let alone keeping, the rest."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()) or len(declared) > 20:
                raise ApiError(400, f"Content-Length {declared[:24]!r} is not a byte count")
            if int(declared) > MAX_BODY:
                raise ApiError(413, f"body over {MAX_BODY} bytes (Content-Length: {int(declared)}); none of it read")
        buf = bytearray()
        try:
            async for piece in request.stream():
                buf += piece
                if len(buf) > MAX_BODY:
                    raise ApiError(413, f"body over {MAX_BODY} bytes; reading stopped at {len(buf)}")
        except ClientDisconnect:
            raise ApiError(400, "the client went away before the body was complete") from None
        return bytes(buf)

    async def body_of(request: Request, typ, ranges: dict[str, str] | None = None):
        """The decoded body. ``ranges`` maps a JSON path (``key_escrow.k``) to its entry in node.api.limits,
        so that a number msgspec refuses (wrong type, too large for any integer, 1e400) gets its range too."""
        ranges = ranges or {}
        raw = await read_body(request)
        try:
            return msgspec.json.decode(raw or b"null", type=typ)
        except msgspec.ValidationError as exc:
            msg = str(exc)
            path = msg.rsplit("- at `$.", 1)[-1].rstrip("`") if "- at `$." in msg else ""
            hint = f"; {range_text(ranges[path])}" if path in ranges else ""
            raise ApiError(400, f"invalid body: {msg}{hint}") from None
        except msgspec.DecodeError as exc:
            bad = _nonfinite_fields(raw)
            if bad:
                path, token = bad[0]
                hint = f"; {range_text(ranges[path])}" if path in ranges else ""
                raise ApiError(400, f"invalid body: {path} is {token}, which is not a JSON number{hint}") from None
            raise ApiError(400, f"body is not JSON: {exc}") from None

    def limit_of(request: Request) -> int:
        raw = request.query_params.get("limit", "100")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
            raise ApiError(400, f"{range_text('limit')}, got {raw[:24]!r}")
        return check_int("limit", int(raw))

    async def status(request):
        return JSONResponse(services.status())

    async def peers(request):
        if request.method == "POST":  # keyswitch connect: dial a peer
            from node.config import peer_address_problem

            b = await body_of(request, ConnectBody)
            if not 1 <= len(b.multiaddr) <= MAX_MULTIADDR:
                raise ApiError(400, f"multiaddr: 1..{MAX_MULTIADDR} characters, got {len(b.multiaddr)}")
            why = peer_address_problem(b.multiaddr, "peer address")
            if why is not None:  # (a string of the right length: 409, as a peer id that is none in a contract)
                raise ApiError(409, f"multiaddr {b.multiaddr!r}: {why}")
            return JSONResponse(await services.connect(b.multiaddr))
        return JSONResponse({"peers": services.peers()})

    async def balance(request):
        return JSONResponse(services.balance())

    async def offers(request):
        from node.assets import ASSETS

        asset = request.query_params.get("asset")  # absent: every asset; present, it must be one
        if asset is not None and asset not in ASSETS:
            raise ApiError(400, f"asset must be one of {', '.join(sorted(ASSETS))}, got {asset[:24]!r}")
        return JSONResponse({"offers": services.offers(asset, limit_of(request))})

    async def deposits(request):
        if request.method == "POST":
            b = await body_of(request, DepositBody, {"chunks": "deposits.chunks"})
            check_int("deposits.chunks", b.chunks)
            return JSONResponse(await services.deposit(b.asset, b.chunks), status_code=201)
        return JSONResponse({"deposits": services.deposits()})

    async def contracts(request):
        if request.method == "POST":
            b = await body_of(request, ContractBody, CONTRACT_NUMBERS)
            # every number of every kind in range, used by the kind or not
            check_int("contracts.chunks", b.chunks)
            for name in ("refund_blocks", "premium_chunks", "premium_blocks", "expiry_blocks"):
                check_int(name, getattr(b, name))
            if b.key_escrow is not None:
                check_int("key_escrow.k", b.key_escrow.k)
            check_str("arbiter", b.arbiter)
            if b.kind == "ring":
                if b.key_escrow is not None:
                    raise ApiError(409, "key_escrow applies to an escrow or an option, not a ring")
                if not 2 <= len(b.legs) <= 8:  # (too few is schema-valid: legs may be absent for other kinds)
                    raise ApiError(409 if len(b.legs) < 2 else 400,
                                   "a ring names 2..8 legs (peer and asset, in ring order)")
                legs = [(x.peer, x.asset) for x in b.legs]
                if any(not 1 <= len(p) <= MAX_PEER_ID for p, _ in legs):
                    raise ApiError(400, "a leg's peer must be a peer id (1..128 characters)")
                return JSONResponse(await services.contract(legs[0][0], b.give, "", b.chunks, "ring",
                                                            {"legs": legs, "refund_blocks": b.refund_blocks}),
                                    status_code=201)
            if not b.peer:  # (the schema cannot say "required unless kind is ring")
                raise ApiError(409, f"a {b.kind} needs peer (the peer id of the other party)")
            if len(b.peer) > MAX_PEER_ID:
                raise ApiError(400, "peer must be a peer id (1..128 characters)")
            if b.kind == "swap":
                if b.key_escrow is not None:
                    raise ApiError(409, "key_escrow applies to an escrow or an option, not a swap")
                if not b.take:
                    raise ApiError(409, "a swap needs take (the asset to receive)")
                return JSONResponse(await services.contract(b.peer, b.give, b.take, b.chunks), status_code=201)
            terms = {"arbiter": b.arbiter, "refund_blocks": b.refund_blocks, "premium_chunks": b.premium_chunks,
                     "premium_blocks": b.premium_blocks, "expiry_blocks": b.expiry_blocks}
            if b.key_escrow is not None:
                terms["key_escrow"] = key_escrow_terms(b.key_escrow)
            return JSONResponse(await services.contract(b.peer, b.give, b.take, b.chunks, b.kind, terms),
                                status_code=201)
        return JSONResponse({"contracts": services.contracts()})

    def key_escrow_terms(ke: KeyEscrowBody) -> dict:
        from node.contracts.spec import MAX_ESCROW_HOLDERS

        if not 2 <= len(ke.holders) <= MAX_ESCROW_HOLDERS:
            raise ApiError(400, f"key_escrow.holders: 2..{MAX_ESCROW_HOLDERS} peer ids, got {len(ke.holders)}")
        if not all(1 <= len(h) <= MAX_PEER_ID for h in [*ke.holders, ke.recovery]):
            raise ApiError(400, "key_escrow: holders and recovery are peer ids (1..128 characters)")
        if len(set(ke.holders)) != len(ke.holders):
            raise ApiError(400, "key_escrow.holders must be distinct")
        if not 2 <= ke.k <= len(ke.holders):
            raise ApiError(409, f"key_escrow.k must be 2..{len(ke.holders)} (the number of holders), got {ke.k}")
        return {"holders": list(ke.holders), "k": ke.k, "recovery": ke.recovery}

    async def escrow(request):
        return JSONResponse(services.escrow())

    async def escrow_recover(request):
        b = await body_of(request, RecoverBody)
        if len(b.contract) != 64 or any(ch not in "0123456789abcdef" for ch in b.contract):
            raise ApiError(400, "contract is a 64-hex-digit id (lower case)")
        return JSONResponse(await services.escrow_recover(b.contract))

    async def approve(request):
        b = await body_of(request, ApproveBody)
        if len(b.contract) != 64 or not 1 <= len(b.message) <= 64:
            raise ApiError(400, "contract is a 64-hex-digit id; message 1..64 characters")
        return JSONResponse(await services.approve(b.contract, b.message))

    async def requests_(request):
        b = await body_of(request, RequestBody, {"usd": "usd", "premium_chunks": "request.premium_chunks",
                                                  "expiry_blocks": "request.expiry_blocks"})
        check_float("usd", b.usd)
        check_str("contract", b.contract)
        check_int("request.premium_chunks", b.premium_chunks)  # (read for give with contract option only)
        check_int("request.expiry_blocks", b.expiry_blocks)
        if not b.give:
            return JSONResponse(await services.request(b.asset, b.usd, b.contract), status_code=201)
        terms = {"premium_chunks": b.premium_chunks, "expiry_blocks": b.expiry_blocks} \
            if b.contract.strip().lower() == "option" else None
        out = await services.request(b.asset, b.usd, b.contract, b.give, b.wait, terms)
        return JSONResponse(out, status_code=201 if out["done"] else 202)

    async def request_get(request):
        """A request to contracts' report; ``?version=N``: once it changed since N (a long poll, at most
        ``REPORT_WAIT`` seconds)."""
        rid = request.path_params["rid"]
        if not (1 <= len(rid) <= 32 and rid.isascii() and rid.isalnum()):
            raise ApiError(400, "a request id is 1..32 letters and digits")
        raw = request.query_params.get("version", "-1")
        if not (raw == "-1" or (raw.isascii() and raw.isdigit() and len(raw) <= 8)):
            raise ApiError(400, f"version must be an integer in -1..99999999, got {raw[:24]!r}")
        return JSONResponse(await services.request_report(rid, int(raw), REPORT_WAIT))

    async def sweep(request):
        b = await body_of(request, SweepBody)
        if len(b.deposit) != 66 or any(ch not in "0123456789abcdef" for ch in b.deposit):
            raise ApiError(400, f"deposit must be 66 lower-case hex digits (the 33-byte public key of one of this "
                                f"node's deposits), got {len(b.deposit)} characters")
        if not 1 <= len(b.to) <= MAX_ADDRESS:
            raise ApiError(400, "to: the destination address is empty" if not b.to else
                           f"to: a destination address has 1..{MAX_ADDRESS} characters, got {len(b.to)}")
        # the address format of the deposit's asset is checked by the node (Services.sweep), which knows the
        # asset, before the enclave is asked for anything
        return JSONResponse(await services.sweep(b.deposit, b.to))

    async def revocations(request):
        b = await body_of(request, RevokeBody)
        if b.kind not in ("class", "device"):
            raise ApiError(400, "kind must be 'class' or 'device'")
        check_str("target", b.target)
        check_str("reason", b.reason)
        return JSONResponse(await services.revoke(b.kind, b.target, b.reason), status_code=201)

    async def reputation(request):
        return JSONResponse({"devices": services.reputation()})

    async def openapi(request):
        return JSONResponse(SPEC)

    async def healthz(request):
        return JSONResponse({"ok": True})

    async def gossip(request):
        """The gossip validation counters (``keyswitch_gossip_messages``) summed per topic: accept / reject /
        ignore (received) and sent."""
        topics: dict[str, dict] = {}
        if metrics is not None:
            for fam in metrics.gossip.collect():
                for smp in fam.samples:
                    if not smp.name.endswith("_total"):
                        continue
                    t = smp.labels.get("topic", "")
                    row = topics.setdefault(t, {"topic": t, "accept": 0, "reject": 0, "ignore": 0, "sent": 0})
                    res = smp.labels.get("result", "")
                    key = "sent" if smp.labels.get("direction") == "out" else res
                    if key in row:
                        row[key] += int(smp.value)
        return JSONResponse({"topics": [topics[t] for t in sorted(topics)]})

    async def dashboard_link(request):
        """A one-time login link for the dashboard (``keyswitch dashboard``): Bearer cookie only."""
        if not request.headers.get("authorization", "").startswith("Bearer "):
            raise ApiError(401, "a dashboard link needs the Bearer cookie (run: keyswitch dashboard)")
        token = sessions.new_link()
        base = str(request.base_url).rstrip("/")
        return JSONResponse({"url": f"{base}/dashboard/login?token={token}", "expires_in": int(dash.LINK_TTL)},
                            status_code=201)

    def html_response(body: str, status: int = 200, headers: dict | None = None) -> Response:
        h = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
             "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
             "X-Content-Type-Options": "nosniff"}
        return Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=h | (headers or {}))

    def dashboard_page() -> str:
        import json as _json

        from node.assets import ASSETS

        return dash.page(_json.dumps({k: {"decimals": a.decimals} for k, a in ASSETS.items()}))

    def dashboard_guard(request: Request) -> Response | None:
        if not dash.host_ok(request.headers.get("host")):
            return html_response(dash.refusal_page(
                f"refused: Host {request.headers.get('host', '')[:64]!r} is not this node's loopback address; "
                "open the link exactly as keyswitch dashboard printed it"), 403)
        return None

    async def dashboard_login(request):
        bad = dashboard_guard(request)
        if bad is not None:
            return bad
        sid = sessions.redeem(request.query_params.get("token", "")[:128])
        if sid is None:
            return html_response(dash.refusal_page("this link was already used or has expired (links last "
                                                   f"{int(dash.LINK_TTL)} s and open once)"), 401)
        cookie_hdr = (f"{dash.SESSION_COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; "
                      f"Max-Age={int(dash.SESSION_TTL)}")
        return html_response(dashboard_page(), 200, {"Set-Cookie": cookie_hdr})

    async def dashboard_index(request):
        bad = dashboard_guard(request)
        if bad is not None:
            return bad
        if not sessions.valid(request.cookies.get(dash.SESSION_COOKIE)):
            return html_response(dash.refusal_page("no dashboard session: this browser has not opened a "
                                                   "login link, or its session ended"), 401)
        return html_response(dashboard_page())

    async def dashboard_static(request):
        bad = dashboard_guard(request)
        if bad is not None:
            return bad
        if not sessions.valid(request.cookies.get(dash.SESSION_COOKIE)):
            return Response("no dashboard session", status_code=401, media_type="text/plain")
        name = request.url.path.rsplit("/", 1)[-1]
        types = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
        if name not in types:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(dash.static(name), media_type=types[name],
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    async def metrics_ep(request):
        from node.metrics import CONTENT_TYPE

        return Response(metrics.render(), media_type=CONTENT_TYPE)

    routes = [
        Route("/v1/status", endpoint(status)),
        Route("/v1/peers", endpoint(peers), methods=["GET", "POST"]),
        Route("/v1/balance", endpoint(balance)),
        Route("/v1/offers", endpoint(offers, query=frozenset({"asset", "limit"}))),
        Route("/v1/deposits", endpoint(deposits), methods=["GET", "POST"]),
        Route("/v1/contracts", endpoint(contracts), methods=["GET", "POST"]),
        Route("/v1/contracts/approve", endpoint(approve), methods=["POST"]),
        Route("/v1/escrow", endpoint(escrow)),
        Route("/v1/escrow/recover", endpoint(escrow_recover), methods=["POST"]),
        Route("/v1/requests", endpoint(requests_), methods=["POST"]),
        Route("/v1/requests/{rid}", endpoint(request_get, query=frozenset({"version"}))),
        Route("/v1/sweep", endpoint(sweep), methods=["POST"]),
        Route("/v1/revocations", endpoint(revocations), methods=["POST"]),
        Route("/v1/reputation", endpoint(reputation)),
        Route("/v1/gossip", endpoint(gossip)),
        Route("/v1/dashboard/link", endpoint(dashboard_link), methods=["POST"]),
        Route("/dashboard", endpoint(dashboard_index, auth=False)),
        Route("/dashboard/login", endpoint(dashboard_login, auth=False, query=frozenset({"token"}))),
        Route("/dashboard/app.js", endpoint(dashboard_static, auth=False)),
        Route("/dashboard/style.css", endpoint(dashboard_static, auth=False)),
        Route("/openapi.json", endpoint(openapi, auth=False)),
        Route("/healthz", endpoint(healthz, auth=False)),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", endpoint(metrics_ep)))  # the cookie, as every call on this port
    return Starlette(routes=routes)


async def serve(app, *, port: int = 0, task_status=None) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until cancelled.

    Started with ``nursery.start(serve, app, port=...)``, it reports the bound
    URL (``http://127.0.0.1:PORT``). Cancelling the enclosing scope closes the
    listening socket and open connections. Binds loopback only, always.
    """
    import trio
    from hypercorn.config import Config as HConfig
    from hypercorn.trio import serve as hserve

    cfg = HConfig()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = 2.0
    status = task_status or trio.TASK_STATUS_IGNORED

    class _Relay:
        def started(self, binds: list[str]) -> None:
            status.started(binds[0])

    await hserve(app, cfg, task_status=_Relay())  # type: ignore[arg-type]


def build_metrics_app(metrics) -> Starlette:
    """A separate app serving only ``/metrics`` (``--metrics-port``); no cookie, loopback only."""
    from node.metrics import CONTENT_TYPE

    async def metrics_ep(request):
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics_ep)])
