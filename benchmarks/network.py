"""Gossip on loopback: batched offer sheets against raw py-libp2p messages.

``python -m benchmarks.network [--sizes 5,10,20] [--offers 100] [--rounds 3]``

For each N it starts N real py-libp2p nodes (TCP + Noise + Yamux, gossipsub)
on 127.0.0.1 in one trio process, wires them into a seeded random graph
(a ring plus random chords, degree ~4), waits for the gossipsub meshes, then
measures, on the same nodes and graph:

* **raw latency**: every node publishes one small message at the same
  moment; publish-to-delivery latency p50/p99 at every other node
  (py-libp2p's gossipsub through our node, no application validator);
* **raw throughput**: every node publishes 50 small messages back-to-back;
  messages delivered per second network-wide (the gossipsub per-topic rate
  limit is lifted for this phase so the library, not our setting, is measured);
* **sheets**: every node publishes one signed sheet of ``--offers`` offers at
  the same moment, through the full path (``ProtocolDriver``, the sans-IO
  protocol's ``validate`` — decode, hash list, one secp256k1 verify — and
  ``handle`` putting the offers in a book); time until every book holds every
  offer, offers delivered per second, publish-to-book p50/p99.

The anchor is the raw figures of the same run: targets are offer throughput
>= 100x the raw message rate at N=20 and sheet p99 <= 1.5x raw p99.
The sheet format here is a stand-in with the same shape and verification
cost as ``node.protocols.offers`` sheets (one signature over a hash list).
All N nodes share one Python process (one core), so absolute latencies are
pessimistic; the ratios are what the targets are about.
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import tempfile
import time
from pathlib import Path

import coincurve
import msgspec
import trio

from node import wire
from node.crypto import sha256, sign_digest, tagged_hash, verify_digest
from node.protocols.base import GossipReceived, Validation, topic
from node.runtime import Node, NodeConfig
from node.runtime.driver import ProtocolDriver

NET = "bench"
RAW = topic(NET, "raw", 1)
SHEETS = topic(NET, "sheets", 1)


class Offer(msgspec.Struct, array_like=True, frozen=True):
    asset: str
    address: str
    amount: int
    usd_cents: int
    expiry: float


class Sheet(msgspec.Struct, array_like=True, frozen=True):
    version: int
    origin: str
    seq: int
    offers: list[Offer]
    signer: bytes
    sig: bytes


def sheet_digest(origin: str, seq: int, offers: list[Offer]) -> bytes:
    leaves = b"".join(sha256(wire.encode(o)) for o in offers)
    return tagged_hash("keyswitch/bench-sheet", origin.encode(), seq.to_bytes(8, "big"), sha256(leaves))


def make_sheet(key: coincurve.PrivateKey, origin: str, seq: int, n: int, rng: random.Random) -> bytes:
    offers = [Offer("BTC", "bc1q" + "".join(rng.choice("023456789acdefghjklmnpqrstuvwxyz") for _ in range(38)),
                    rng.randrange(10**5, 10**7), 5000, 1e10) for _ in range(n)]
    d = sheet_digest(origin, seq, offers)
    return wire.encode(Sheet(1, origin, seq, offers, key.public_key.format(), sign_digest(key, d)))


def validate_sheet(data: bytes, latest: dict[str, int]) -> Validation:
    """Decode, check the one signature over the hash list, drop stale sequences."""
    try:
        s = wire.decode(data, Sheet, max_size=1 << 20)
    except wire.WireError as exc:
        return Validation.reject(exc.reason)
    if not verify_digest(s.signer, sheet_digest(s.origin, s.seq, s.offers), s.sig):
        return Validation.reject("bad signature")
    if s.seq <= latest.get(s.origin, -1):
        return Validation.ignore("stale sequence")
    return Validation.accept()


class SheetBook:
    """The sans-IO side: validate a sheet (decode, hash list, one verify), book its offers."""

    topics = (SHEETS,)
    stream_protocols = ()

    def __init__(self, sent: dict, arrivals: list) -> None:
        self.book: dict[tuple[str, str], Offer] = {}
        self.sent, self.arrivals = sent, arrivals
        self.latest: dict[str, int] = {}
        self.last_arrival = 0.0

    def validate(self, topic_, data, from_peer, now):
        return validate_sheet(data, self.latest)

    def handle(self, event, now):
        if isinstance(event, GossipReceived):
            s = wire.decode(event.data, Sheet, max_size=1 << 20)
            self.latest[s.origin] = s.seq
            for o in s.offers:
                self.book[(s.origin, o.address)] = o
            self.last_arrival = time.perf_counter()
            self.arrivals.append(self.last_arrival - self.sent[(s.origin, s.seq)])
        return []


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def wait(pred, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.01)
        return True
    return False


async def bench(n: int, offers: int, rounds: int, seed: int, tmp: Path, raw_burst: int, sheet_burst: int) -> dict:
    rng = random.Random(seed)
    res: dict = {"n": n}
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for i in range(n):
            cfg = NodeConfig(datadir=tmp / f"n{n}-{i}", net=NET, target_peers=2, pex_interval=1e9,
                             gossip_rate_limit=1e6, seed=seed + i)
            nodes.append(await nursery.start(Node(cfg).run))
        for i in range(n):  # ring + one random chord per node
            for j in {(i + 1) % n, rng.randrange(n)} - {i}:
                await nodes[i].connect(nodes[j].listen_addrs[0])
        for x in nodes:
            await x.pubsub.subscribe(RAW)
        await wait(lambda: all(x.mesh_peers(RAW) for x in nodes), 20)
        await trio.sleep(1.5)
        pairs = n * (n - 1)

        # ---------------------------------------------------------------- raw
        sent: dict[tuple[int, int], float] = {}
        lat: list[float] = []
        got = [0]
        last_t = [0.0]

        async def reader(x: Node) -> None:
            async for d in x.pubsub.deliveries:
                origin, seq = struct.unpack(">H I", d.data[:6])
                last_t[0] = time.perf_counter()
                lat.append(last_t[0] - sent[(origin, seq)])
                got[0] += 1

        async def raw_pub(i: int, x: Node, first: int, count: int) -> None:
            for k in range(count):
                sent[(i, first + k)] = time.perf_counter()
                await x.publish(RAW, struct.pack(">H I", i, first + k) + bytes(58))

        async def raw_phase(first: int, count: int) -> float:
            target = got[0] + pairs * count
            t0 = time.perf_counter()
            async with trio.open_nursery() as pn:
                for i, x in enumerate(nodes):
                    pn.start_soon(raw_pub, i, x, first, count)
            await wait(lambda: got[0] >= target, 30)
            return last_t[0] - t0  # until the last delivery (a lost message does not count the timeout)

        with trio.CancelScope() as readers:
            async with trio.open_nursery() as rn:
                for x in nodes:
                    rn.start_soon(reader, x)
                times = []
                for r in range(rounds):
                    times.append(await raw_phase(r * 10, 1))
                    await trio.sleep(0.3)
                res["raw_p50"], res["raw_p99"] = pct(lat, 0.5), pct(lat, 0.99)
                res["raw_oneshot_msgs_per_s"] = pairs / statistics.median(times)
                res["raw_delivered_frac"] = len(lat) / (rounds * pairs)
                c0 = got[0]
                el = await raw_phase(1000, raw_burst)
                res["raw_msgs_per_s"] = (got[0] - c0) / el
                res["raw_burst_delivered_frac"] = (got[0] - c0) / (pairs * raw_burst)
                readers.cancel()

        # -------------------------------------------------------------- sheets
        for x in nodes:  # back to the configured forwarding limit
            x.router.max_messages_per_topic_per_second = 40.0
        sent2: dict[tuple[str, int], float] = {}
        arrivals: list[float] = []
        books = [SheetBook(sent2, arrivals) for _ in nodes]
        for x, b in zip(nodes, books):
            await nursery.start(ProtocolDriver(x, [b]).run)
        await wait(lambda: all(x.mesh_peers(SHEETS) for x in nodes), 20)
        await trio.sleep(1.5)
        keys = [coincurve.PrivateKey(sha256(b"bench key %d" % i)) for i in range(n)]

        async def sheet_pub(i: int, x: Node, data: list[bytes], seqs: list[int]) -> None:
            for d, q in zip(data, seqs):
                sent2[(x.peer_id, q)] = time.perf_counter()
                await x.publish(SHEETS, d)

        async def sheet_phase(seqs: list[int]) -> float:
            data = [[make_sheet(keys[i], x.peer_id, q, offers, rng) for q in seqs] for i, x in enumerate(nodes)]
            last = seqs[-1]
            t0 = time.perf_counter()
            async with trio.open_nursery() as pn:
                for i, x in enumerate(nodes):
                    pn.start_soon(sheet_pub, i, x, data[i], seqs)
            # every book has every other node's latest sheet (its own it has from the start)
            await wait(lambda: all(sum(1 for q in b.latest.values() if q >= last) >= n - 1 for b in books), 30)
            res["sheet_bytes"] = len(data[0][0])
            return max(b.last_arrival for b in books) - t0

        times = []
        for r in range(1, rounds + 1):
            times.append(await sheet_phase([r]))
        res["sheet_p50"], res["sheet_p99"] = pct(arrivals, 0.5), pct(arrivals, 0.99)
        res["sheet_time_all_books"] = statistics.median(times)
        res["oneshot_offers_per_s"] = pairs * offers / res["sheet_time_all_books"]
        res["sheet_delivered_frac"] = len(arrivals) / (rounds * pairs)
        a0 = len(arrivals)
        el = await sheet_phase(list(range(100, 100 + sheet_burst)))
        res["offers_per_s"] = (len(arrivals) - a0) * offers / el
        nursery.cancel_scope.cancel()  # drivers and nodes
    return res


def bench_procs(n: int, offers: int, rounds: int, seed: int, tmp: Path, raw_burst: int, sheet_burst: int) -> dict:
    """The same measurements with one OS process per node (see benchmarks/_netproc.py)."""
    import json

    from benchmarks._netproc import end_offset
    from tests.functional.framework import Network

    res: dict = {"n": n}
    with Network(tmp, net=NET, seed=seed) as net:
        boot = net.add_bootstrap("boot")
        net.wait_ready([boot])
        start = time.time() + 10 + 1.0 * n
        opts = {"start": f"{start:.3f}", "n": str(n), "rounds": str(rounds), "offers": str(offers),
                "raw_burst": str(raw_burst), "sheet_burst": str(sheet_burst)}
        nodes = [net.add_node(f"n{i}", bootnodes=[boot.addr], protocols=["benchmarks._netproc:make"],
                              opts={**opts, "index": str(i)},
                              extra=["--target-peers", "4", "--pex-interval", "2", "--gossip-rate-limit", "1000000",
                                     "--status-interval", "1"]) for i in range(n)]
        net.wait_ready(nodes, timeout=start - time.time())
        net.wait_until(lambda: all(nd.status().get("mesh", {}).get(SHEETS) for nd in nodes),
                       max(1.0, start - time.time()), "meshes formed before the schedule starts")
        time.sleep(max(0.0, start + end_offset(rounds, raw_burst, sheet_burst, n) - time.time()))
        sts = []
        for nd in nodes:
            st = nd.status()
            sts.append(next(v for k, v in st["protocols"].items() if k.endswith("BenchNode")))
        res["degree"] = statistics.mean(len(nd.status()["peers"]) for nd in nodes) - 1  # minus the bootstrap
    published: dict[str, float] = {}
    for st in sts:
        published.update(st["published"])

    def measure(kind: str, seqs: range) -> tuple[list[float], float, int]:
        lat, last, count = [], 0.0, 0
        first = min(published[k] for k in published if k.startswith(kind + ":") and int(k.rsplit(":", 1)[1]) in seqs)
        for st in sts:
            for k, t in st["arrived"].items():
                kk, _, q = k.split(":")
                if kk == kind and int(q) in seqs and k in published:
                    lat.append(t - published[k])
                    last = max(last, t)
                    count += 1
        return lat, last - first, count

    pairs = n * (n - 1)
    lat_r, times_r, lat_s, times_s = [], [], [], []
    for r in range(1, rounds + 1):
        lt, el, _ = measure("raw", range(r, r + 1))
        lat_r += lt
        times_r.append(el)
        lt, el, _ = measure("sheet", range(r, r + 1))
        lat_s += lt
        times_s.append(el)
    res["raw_p50"], res["raw_p99"] = pct(lat_r, 0.5), pct(lat_r, 0.99)
    res["raw_delivered_frac"] = len(lat_r) / (rounds * pairs)
    res["raw_oneshot_msgs_per_s"] = pairs / statistics.median(times_r)
    res["sheet_p50"], res["sheet_p99"] = pct(lat_s, 0.5), pct(lat_s, 0.99)
    res["sheet_delivered_frac"] = len(lat_s) / (rounds * pairs)
    res["sheet_time_all_books"] = statistics.median(times_s)
    res["oneshot_offers_per_s"] = pairs * offers / res["sheet_time_all_books"]
    _, el, cnt = measure("raw", range(1000, 1000 + raw_burst))
    res["raw_msgs_per_s"] = cnt / el
    res["raw_burst_delivered_frac"] = cnt / (pairs * raw_burst)
    _, el, cnt = measure("sheet", range(100, 100 + sheet_burst))
    res["offers_per_s"] = cnt * offers / el
    res["sheet_bytes"] = len(make_sheet(coincurve.PrivateKey(sha256(b"x")), "x" * 52, 1, offers, random.Random(0)))
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.network", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,10,20")
    ap.add_argument("--offers", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw-burst", type=int, default=10, help="raw messages per node in the throughput phase")
    ap.add_argument("--sheet-burst", type=int, default=3, help="sheets per node in the throughput phase")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--procs", action="store_true",
                    help="one OS process per node (python -m node.runtime) instead of one trio process")
    args = ap.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.ERROR)
    print(__doc__.split("\n\n")[0])
    print(f"mode: {'one OS process per node' if args.procs else 'all nodes in one trio process (one core)'}")
    print(f"seed={args.seed} offers/sheet={args.offers} rounds={args.rounds} "
          f"raw burst={args.raw_burst}/node sheet burst={args.sheet_burst}/node\n")
    print("one-shot: every node publishes one message (raw) or one sheet at once; "
          "latency = publish -> delivered (raw) / -> in the book (sheets)")
    print("saturated: every node publishes a burst; rate = deliveries network-wide per second\n")
    hdr = (f"{'N':>3} | {'raw p50':>8} {'raw p99':>8} {'sheet p50':>9} {'sheet p99':>9} {'p99 x':>6} | "
           f"{'all books':>9} {'raw 1shot':>9} {'offers 1shot':>12} | {'raw msg/s':>9} {'offers/s':>9} {'thru x':>7}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            if args.procs:
                r = bench_procs(n, args.offers, args.rounds, args.seed, Path(tmp), args.raw_burst, args.sheet_burst)
            else:
                r = trio.run(bench, n, args.offers, args.rounds, args.seed, Path(tmp), args.raw_burst,
                             args.sheet_burst)
        rows.append(r)
        print(f"{n:>3} | {r['raw_p50'] * 1e3:>6.1f}ms {r['raw_p99'] * 1e3:>6.1f}ms {r['sheet_p50'] * 1e3:>7.1f}ms "
              f"{r['sheet_p99'] * 1e3:>7.1f}ms {r['sheet_p99'] / r['raw_p99']:>5.2f}x | "
              f"{r['sheet_time_all_books'] * 1e3:>7.0f}ms {r['raw_oneshot_msgs_per_s']:>7.0f}/s "
              f"{r['oneshot_offers_per_s']:>10.0f}/s | {r['raw_msgs_per_s']:>9.0f} {r['offers_per_s']:>9.0f} "
              f"{r['offers_per_s'] / r['raw_msgs_per_s']:>6.0f}x", flush=True)
        if min(r["raw_delivered_frac"], r["raw_burst_delivered_frac"], r["sheet_delivered_frac"]) < 1:
            print(f"    delivered: raw {r['raw_delivered_frac']:.3f}, raw burst {r['raw_burst_delivered_frac']:.3f}, "
                  f"sheets {r['sheet_delivered_frac']:.3f}")
    last = rows[-1]
    thru = last["offers_per_s"] / last["raw_msgs_per_s"]
    thru1 = last["oneshot_offers_per_s"] / last["raw_oneshot_msgs_per_s"]
    p99x = last["sheet_p99"] / last["raw_p99"]
    print(f"\nsheet size {last['sheet_bytes']} bytes for {args.offers} offers")
    print(f"targets at N={last['n']}:")
    print(f"  offer throughput >= 100x raw message rate: saturated {thru:.0f}x "
          f"({'met' if thru >= 100 else 'NOT met'}), one-shot {thru1:.0f}x ({'met' if thru1 >= 100 else 'NOT met'})")
    print(f"  sheet publish-to-book p99 <= 1.5x raw p99: {p99x:.2f}x ({'met' if p99x <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
