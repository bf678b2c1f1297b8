"""Local API throughput, daemon start-to-ready time and idle memory.

Starts a real daemon (``keyswitch run``) whose offer book holds 100,000
offers, then measures, one client on one connection, requests per second for
``/v1/status`` and offer-book queries, beside the anchor: an empty round trip
(``/healthz``) on the same server. Also prints start-to-ready time and the
idle resident memory of the daemon and its enclave process.

    python -m benchmarks.api [--offers 100000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path


def fill_book(path: Path, n: int) -> None:
    import hashlib

    from node.stores.offerbook import OfferBook

    book = OfferBook(path)
    rows = []
    for i in range(n):
        oid = hashlib.sha256(i.to_bytes(8, "big")).digest()
        origin = f"12D3KooBench{i % 500:04d}"
        rows.append((oid, origin, oid[:32], "sim", ("BTC-REG", "ETH-DEV", "LTC")[i % 3], f"addr{i}",
                     b"\x02" + oid, 50_000 + i, 5000 + (i % 97), "100000", 0.0, 4e9))
    with book.db:
        book.db.executemany("INSERT INTO offers VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    book.close()


def rss_kib(pid: int) -> int:
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
    except (OSError, AttributeError):
        return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rate(client, url: str, seconds: float) -> tuple[float, float]:
    n, t0 = 0, time.perf_counter()
    lat = []
    while time.perf_counter() - t0 < seconds:
        s = time.perf_counter()
        r = client.get(url)
        lat.append(time.perf_counter() - s)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
        n += 1
    lat.sort()
    return n / (time.perf_counter() - t0), lat[len(lat) // 2] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offers", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    import httpx

    with tempfile.TemporaryDirectory(prefix="ks-bench-api-") as tmp:
        d = Path(tmp) / "node"
        from node.dev.localnet import init_datadir, spawn

        init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
        t = time.perf_counter()
        fill_book(d / "offers.sqlite", a.offers)
        print(f"offer book filled with {a.offers:,} offers in {time.perf_counter() - t:.1f} s")
        log = Path(tmp) / "out.log"
        t0 = time.perf_counter()
        proc = spawn([sys.executable, "-m", "node", "--datadir", str(d), "run"], log)
        try:
            while "ready " not in log.read_text():
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise SystemExit(f"daemon did not become ready:\n{log.read_text()[-2000:]}")
                time.sleep(0.02)
            ready = time.perf_counter() - t0
            url = re.search(r"API listening on (\S+)", log.read_text()).group(1)
            time.sleep(2.0)
            mem = rss_kib(proc.pid)
            enc = sum(rss_kib(c) for c in children(proc.pid))
            cookie = (d / ".cookie").read_text().strip()
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {cookie}"}) as c:
                rows = [
                    ("empty round trip /healthz (anchor)", "/healthz"),
                    ("/v1/status", "/v1/status"),
                    ("/v1/offers?limit=100", "/v1/offers?limit=100"),
                    ("/v1/offers?asset=ETH-DEV&limit=100", "/v1/offers?asset=ETH-DEV&limit=100"),
                ]
                results = [(name, *rate(c, path, a.seconds)) for name, path in rows]
            anchor = results[0][1]
            print(f"\ndaemon start-to-ready: {ready:.2f} s   idle RSS: daemon {mem / 1024:.0f} MiB, "
                  f"enclave process {enc / 1024:.0f} MiB")
            print(f"\n{'endpoint':42} {'req/s':>8} {'p50 ms':>8} {'vs anchor':>10}")
            for name, r, p50 in results:
                print(f"{name:42} {r:8.0f} {p50:8.2f} {r / anchor:9.2f}x")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
