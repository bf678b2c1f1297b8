"""Attacks on the local HTTP API of a real running daemon (``keyswitch run`` in its own process), in raw HTTP.

The API binds loopback only and wants the cookie, but whoever holds the cookie (a script, a UI, an operator's
typo) can still send anything: an endless body, numbers out of every range, a sweep destination that is not an
address of the deposit's chain. Each must get a 4xx with a one-line reason, before anything is buffered,
signed or exported; ``/metrics`` on the API port must want the cookie like every other call.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlparse

import coincurve
import httpx
import psutil
import pytest

from node.assets import address_for
from tests.functional.framework import Daemon

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    mport = s.getsockname()[1]
    s.close()
    d = Daemon(tmp_path_factory.mktemp("api-attacks") / "node", "--metrics-port", str(mport))
    try:
        url = d.value("API listening on ")
        cookie = (d.datadir / ".cookie").read_text().strip()
        yield {"daemon": d, "url": url, "cookie": cookie, "murl": d.value("metrics on "),
               "auth": {"Authorization": f"Bearer {cookie}"}}
    finally:
        assert d.stop() == 0


def _connect(url: str) -> socket.socket:
    u = urlparse(url)
    return socket.create_connection((u.hostname, u.port), timeout=10)


def _response_ready(sock: socket.socket) -> bytes:
    """What the server has answered so far (b"" if nothing yet), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return b""
    except (ConnectionResetError, BrokenPipeError):
        return b"<reset>"
    finally:
        sock.setblocking(True)


def _wait_answer(sock: socket.socket, seconds: float = 5.0) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = _response_ready(sock)
        if got:
            return got
        time.sleep(0.05)
    return b""


def _hung_up_after(sock: socket.socket, chunk: bytes, budget: int) -> int | None:
    """Keep sending ``chunk``: the bytes sent when the server hung up, or None if it took ``budget`` bytes."""
    sent = 0
    sock.settimeout(5)
    while sent < budget:
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return sent
        sent += len(chunk)
    return None


# ----------------------------------------------------------------- bodies: the limit holds while reading
def test_a_declared_oversize_body_is_refused_before_it_is_read(live):
    """Content-Length 150 MB and not one byte of body sent: the 413 must come back at once (the old code
    waited for all 150 MB to buffer them), and the server must hang up rather than read on."""
    sock = _connect(live["url"])
    try:
        head = (f"POST /v1/deposits HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live['cookie']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {150 * 1000 * 1000}\r\n\r\n").encode()
        sock.sendall(head)
        answer = _wait_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), f"no 413 with the body unsent; answer {answer[:200]!r}"
        assert b"body over 65536 bytes" in answer and b"Content-Length" in answer, answer
        sent = _hung_up_after(sock, b"x" * 65536, budget=64 * MiB)
        assert sent is not None, "the server kept reading a body it had refused (64 MiB taken)"
    finally:
        sock.close()


def test_a_chunked_oversize_body_is_refused_as_soon_as_the_limit_is_passed(live):
    """No Content-Length (chunked): 80 KB sent and the body left open; the server must answer 413 then,
    not wait for the end of the body (the old code waited for it, however long)."""
    sock = _connect(live["url"])
    try:
        head = (f"POST /v1/deposits HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live['cookie']}\r\n"
                f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        sock.sendall(head)
        piece = b"x" * 16384
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
        for _ in range(5):  # 80 KB: past the 64 KiB limit, and the body not finished
            sock.sendall(chunk)
        answer = _wait_answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), f"no 413 after 80 KB of an open body; answer {answer[:200]!r}"
        assert b"body over 65536 bytes" in answer and b"reading stopped" in answer, answer
        sent = _hung_up_after(sock, chunk, budget=64 * MiB)
        assert sent is not None, "the server kept reading a body it had refused (64 MiB taken)"
    finally:
        sock.close()


def test_a_150_mb_body_does_not_grow_the_daemon(live):
    """The finding: 150 MB sent to the API cost the daemon +290 MiB RSS. Now: refused, next to nothing kept."""
    proc = psutil.Process(live["daemon"].proc.pid)
    before = proc.memory_info().rss
    blob = b"x" * MiB
    for declared in (True, False):
        sock = _connect(live["url"])
        try:
            head = (f"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {live['cookie']}\r\n"
                    + (f"Content-Length: {150 * MiB}\r\n" if declared else "Transfer-Encoding: chunked\r\n")
                    + "\r\n").encode()
            sock.sendall(head)
            for _ in range(150):
                try:
                    sock.sendall(blob if declared else b"%x\r\n" % len(blob) + blob + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server hung up: what we wanted
            if not declared:
                try:
                    sock.sendall(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            sock.settimeout(30)
            try:
                answer = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                answer = b"<reset>"
        finally:
            sock.close()
        grown = proc.memory_info().rss - before
        assert grown < 30 * MiB, f"the daemon grew by {grown / MiB:.0f} MiB on a 150 MB body (declared={declared})"
        assert answer.startswith(b"HTTP/1.1 413") or answer in (b"", b"<reset>"), answer[:200]
    # and it still answers
    assert httpx.get(live["url"] + "/v1/status", headers=live["auth"]).status_code == 200


# ----------------------------------------------------------------- numbers: every field has a range
HUGE = 10**30
NUMERIC_CASES = [
    # (path, body without the field, field, bad values)
    ("/v1/requests", {"asset": "BTC-REG"}, "usd", [1e308, -1e308, 1e300, 1e-300, -3, 0, 100000.5, 1e17, HUGE, -HUGE]),
    ("/v1/requests", {"asset": "BTC-REG", "usd": 100, "give": "ETH-DEV", "contract": "option"}, "premium_chunks",
     [0, -1, 5, HUGE, -HUGE, 1.5]),
    ("/v1/requests", {"asset": "BTC-REG", "usd": 100, "give": "ETH-DEV", "contract": "option"}, "expiry_blocks",
     [0, -1, 10_001, HUGE, -HUGE]),
    ("/v1/deposits", {"asset": "BTC-REG"}, "chunks", [0, -1, 1001, HUGE, -HUGE, 1.5]),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "take": "ETH-DEV"}, "chunks", [0, -1, 101, HUGE, -HUGE, 2.5]),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "take": "ETH-DEV"}, "refund_blocks", [0, -1, 100001, HUGE]),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "take": "ETH-DEV"}, "premium_chunks", [-1, 101, HUGE, -HUGE]),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "take": "ETH-DEV"}, "premium_blocks", [0, -1, 100001, HUGE]),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "take": "ETH-DEV"}, "expiry_blocks", [0, -1, 100001, HUGE]),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "kind": "escrow", "arbiter": "A",
                       "key_escrow": {"holders": ["H1", "H2"], "recovery": "R"}}, "k", [-1, 0, 1, 17, HUGE, -HUGE]),
]


def _with(body: dict, field: str, value) -> dict:
    b = json.loads(json.dumps(body))
    (b["key_escrow"] if field == "k" else b)[field] = value
    return b


@pytest.mark.parametrize("path, body, field, bad", NUMERIC_CASES, ids=[f"{c[0]}:{c[2]}" for c in NUMERIC_CASES])
def test_out_of_range_numbers_get_400_naming_the_field_and_its_range(live, path, body, field, bad):
    for value in bad:
        raw = json.dumps(_with(body, field, value)).encode()
        r = httpx.post(live["url"] + path, content=raw, headers=live["auth"], timeout=60)
        assert r.status_code == 400, (path, field, value, r.status_code, r.text)
        reason = r.json()["error"]
        assert field in reason and ".." in reason, (path, field, value, reason)
        assert "\n" not in reason and len(reason) < 300, reason


NONFINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]
NONFINITE_CASES = [
    ("/v1/requests", b'{"asset": "BTC-REG", "usd": %s}', "usd"),
    ("/v1/requests", b'{"asset": "BTC-REG", "usd": 9, "give": "ETH-DEV", "contract": "option", "expiry_blocks": %s}',
     "expiry_blocks"),
    ("/v1/deposits", b'{"asset": "BTC-REG", "chunks": %s}', "chunks"),
    ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "take": "ETH-DEV", "chunks": %s}', "chunks"),
    ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "take": "ETH-DEV", "refund_blocks": %s}', "refund_blocks"),
    ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "take": "ETH-DEV", "premium_chunks": %s}', "premium_chunks"),
    ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "take": "ETH-DEV", "premium_blocks": %s}', "premium_blocks"),
    ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "take": "ETH-DEV", "expiry_blocks": %s}', "expiry_blocks"),
    ("/v1/contracts", b'{"peer": "P", "give": "BTC-REG", "kind": "escrow", "key_escrow": {"holders": ["H1", "H2"], '
                      b'"recovery": "R", "k": %s}}', "k"),
]


@pytest.mark.parametrize("path, template, field", NONFINITE_CASES, ids=[f"{c[0]}:{c[2]}" for c in NONFINITE_CASES])
def test_nan_and_infinities_get_400_naming_the_field(live, path, template, field):
    """Python's json.dumps writes NaN and Infinity; a client that sends them learns which field, and its range."""
    for token in NONFINITE:
        r = httpx.post(live["url"] + path, content=template % token, headers=live["auth"], timeout=60)
        assert r.status_code == 400, (path, field, token, r.text)
        reason = r.json()["error"]
        assert field in reason and ".." in reason, (path, field, token, reason)


@pytest.mark.parametrize("limit", ["0", "-1", "10001", str(HUGE), "1e3", "NaN", "inf", "9" * 5000])
def test_offers_limit_out_of_range(live, limit):
    r = httpx.get(live["url"] + "/v1/offers", params={"limit": limit}, headers=live["auth"])
    assert r.status_code == 400 and "limit" in r.json()["error"] and "1..10000" in r.json()["error"], r.text


# ----------------------------------------------------------------- sweep: the destination is an address of the chain
def _pub(i: int) -> bytes:
    return coincurve.PrivateKey(bytes([i]) * 32).public_key.format()


def _flip_last(addr: str) -> str:
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l" if "1" in addr[:5] and not addr.startswith("0x") else \
        "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    last = addr[-1]
    return addr[:-1] + (alphabet[(alphabet.index(last) + 1) % len(alphabet)])


def _bad_eip55(addr: str) -> str:
    body = addr[2:]
    i = next(i for i, ch in enumerate(body) if ch.isalpha())
    return "0x" + body[:i] + body[i].swapcase() + body[i + 1:]


BTC_REG_HOME = address_for("BTC-REG", _pub(7))
ETH_DEV_HOME = address_for("ETH-DEV", _pub(7))
BAD_DESTINATIONS = {
    "BTC-REG": [
        ("bcrt1qhomeaddressforthetest", "bech32"),  # the old test's own destination: not an address at all
        (address_for("ETH-DEV", _pub(7)), "BTC-REG"),  # another asset's format
        (address_for("BTC", _pub(7)), "bc"),  # mainnet bech32: another network's HRP
        (address_for("BTC-TEST", _pub(7)), "tb"),  # testnet bech32
        (address_for("LTC", _pub(7)), "ltc"),  # Litecoin
        (address_for("BTC", _pub(7), kind="p2pkh"), "version"),  # mainnet base58: another network's version byte
        (address_for("DOGE", _pub(7)), "version"),
        (_flip_last(BTC_REG_HOME), "checksum"),  # one character wrong: bech32 checksum error
        (_flip_last(address_for("BTC-REG", _pub(7), kind="p2pkh")), "checksum"),  # base58check checksum error
        (BTC_REG_HOME.upper()[:10] + BTC_REG_HOME[10:], "case"),  # mixed case
        ("bcrt1" + "q" * 3000, "characters"),  # far too long
        ("", "empty"),
    ],
    "ETH-DEV": [
        (BTC_REG_HOME, "0x"),  # a Bitcoin address for ether
        (_bad_eip55(ETH_DEV_HOME), "EIP-55"),  # checksum (mixed case) error
        (ETH_DEV_HOME[:-1], "40 hex"),  # 39 hex digits
        (ETH_DEV_HOME + "0", "40 hex"),
        ("0x" + "g" * 40, "40 hex"),
        ("0x" + "0" * 40, "zero address"),  # the burn address
    ],
}


def test_sweep_refuses_a_destination_that_is_not_an_address_of_the_deposits_chain(live):
    url, auth = live["url"], live["auth"]
    made = {}
    for asset in BAD_DESTINATIONS:
        r = httpx.post(url + "/v1/deposits", json={"asset": asset, "chunks": 1}, headers=auth, timeout=120)
        assert r.status_code == 201, r.text
        made[asset] = r.json()["deposits"][0]
    exports = live["daemon"].datadir / "owner-exports"
    for asset, cases in BAD_DESTINATIONS.items():
        dep = made[asset]
        for to, why in cases:
            r = httpx.post(url + "/v1/sweep", json={"deposit": dep["pubkey"], "to": to}, headers=auth, timeout=60)
            assert r.status_code == 400, (asset, to[:80], r.status_code, r.text)
            reason = r.json()["error"]
            assert why in reason and "to" in reason, (asset, to[:80], reason)
            assert "\n" not in reason and len(reason) < 400, reason
            # nothing was exported or signed: no key file, the deposit's key still held by the enclave
            assert not exports.exists() or not list(exports.glob("*.key")), (asset, to[:80])
    rows = {d["pubkey"]: d for d in httpx.get(url + "/v1/deposits", headers=auth).json()["deposits"]}
    for asset, dep in made.items():
        assert rows[dep["pubkey"]]["key_state"] == "held", rows[dep["pubkey"]]
        assert rows[dep["pubkey"]]["status"] != "swept", rows[dep["pubkey"]]
    # the funds are still there: a sweep to a real address of the chain goes through
    for asset, home in (("BTC-REG", BTC_REG_HOME), ("ETH-DEV", ETH_DEV_HOME.lower())):
        r = httpx.post(url + "/v1/sweep", json={"deposit": made[asset]["pubkey"], "to": home}, headers=auth,
                       timeout=60)
        assert r.status_code == 200, (asset, r.text)
        # swept to the address in its canonical form (EIP-55 for ether: a dev ledger keys accounts by it)
        assert r.json()["to"] == (ETH_DEV_HOME if asset == "ETH-DEV" else home) and r.json()["txid"]


@pytest.mark.parametrize("deposit", ["02ab", "zz" * 33, "02" + "ab" * 32 + "00", ""])
def test_sweep_deposit_must_be_a_33_byte_hex_key(live, deposit):
    r = httpx.post(live["url"] + "/v1/sweep", json={"deposit": deposit, "to": BTC_REG_HOME}, headers=live["auth"])
    assert r.status_code == 400 and "deposit" in r.json()["error"] and "66" in r.json()["error"], r.text


# ----------------------------------------------------------------- /metrics on the API port wants the cookie
def test_metrics_on_the_api_port_needs_the_cookie(live):
    url = live["url"]
    r = httpx.get(url + "/metrics")
    assert r.status_code == 401 and "cookie" in r.json()["error"], (r.status_code, r.text[:200])
    r = httpx.get(url + "/metrics", headers={"Authorization": "Bearer " + "0" * 64})
    assert r.status_code == 401
    r = httpx.get(url + "/metrics", headers=live["auth"])
    assert r.status_code == 200 and "keyswitch_api_requests" in r.text
    # the separate metrics port (--metrics-port) stays as documented: no cookie, loopback only
    assert live["murl"].startswith("http://127.0.0.1:")
    assert httpx.get(live["murl"]).status_code == 200


def test_a_refusal_is_one_short_line_whatever_the_body_holds(live):
    """msgspec echoes an unknown field's name: a 60 KB name full of newlines must not become the reason."""
    name = "x\n" * 18000  # 54 KB once JSON-escaped: under the body limit
    r = httpx.post(live["url"] + "/v1/deposits", content=json.dumps({"asset": "BTC-REG", name: 1}).encode(),
                   headers=live["auth"])
    reason = r.json()["error"]
    assert r.status_code == 400 and "unknown field" in reason
    assert "\n" not in reason and len(reason) <= 500, (len(reason), reason[:100])


# ----------------------------------------------------------------- strings: the lengths the description states
@pytest.mark.parametrize("path, body, field", [
    ("/v1/revocations", {"kind": "class", "target": "t" * 81, "reason": "r"}, "target"),
    ("/v1/revocations", {"kind": "class", "target": "sgx:Nothing", "reason": "r" * 501}, "reason"),
    ("/v1/contracts", {"peer": "P", "give": "BTC-REG", "kind": "escrow", "arbiter": "a" * 129}, "arbiter"),
    ("/v1/requests", {"asset": "BTC-REG", "usd": 10, "contract": "c" * 129}, "contract"),
])
def test_strings_longer_than_described_get_400_naming_the_field(live, path, body, field):
    r = httpx.post(live["url"] + path, json=body, headers=live["auth"], timeout=60)
    assert r.status_code == 400, (path, field, r.status_code, r.text[:300])
    assert field in r.json()["error"] and ".." in r.json()["error"], r.text


@pytest.mark.parametrize("asset", ["x" * 5000, "", "btc-reg"])
def test_offers_asset_must_be_a_known_asset(live, asset):
    r = httpx.get(live["url"] + "/v1/offers", params={"asset": asset}, headers=live["auth"])
    assert r.status_code == 400 and "asset" in r.json()["error"] and "BTC-REG" in r.json()["error"], r.text[:300]
