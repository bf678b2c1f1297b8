"""A swap between two real daemons on loopback, beside the py-libp2p stream round trip of the same run.

    python -m benchmarks.swap [--chunks 10] [--rtt-n 50] [--quick]

Starts a dev ledger server (``node.ledger.server serve``), a bootstrap node
and two ``keyswitch run`` daemons on 127.0.0.1 (one OS process each, as in
``tests/functional/test_swap.py``). A deposits ``--chunks`` BTC-REG chunks, B
deposits as many ETH-DEV chunks; the clock does not run while deposits
confirm and each book fills with the other's offers. Then it times, from the
``POST /v1/contracts`` on A to both sides listing the contract as ``done``
(polled every 20 ms; the figure the target is about ends earlier, when all keys are exchanged: the
later of the two enclaves taking the last key due to it, stamped by each daemon: ``keys_in_at`` of its
``GET /v1/contracts`` row, the protocol clock when its runner handed the key to its enclave): the proposal over
/keyswitch/contract/1 (the stdlib ``turns`` spec of the schedule), the responder's and the initiator's opens and
2 x chunks releases over /keyswitch/contract-run/1 (each release answered by an
ack; every received key is checked by the enclave, its funds are checked on
the dev ledger server before the next release, and it is swept in the
background to the owner's claim address; the server accepts the sweep into
its mempool at once: no block or confirmation is waited for; a contract is
done once its sweeps are). The rounds counted
are the contract protocol's request/response round trips: 1 open + 2 x chunks.

The anchor, measured in the same run on the same loopback: two fresh
py-libp2p hosts (``node.runtime.Node``, the stack the daemons run) in this
process; a one-shot stream round trip is ``node.runtime.streams.ask``: open a
stream on a protocol id, write a small frame, read the one-frame reply (the
same call the contract protocol makes for every message); median of
``--rtt-n`` before and ``--rtt-n`` after the swap. Target: wall <= 3 x rounds x RTT.

Where the time goes comes from the daemons themselves: what their ``GET /v1/status`` counters grew by during
the swap, both daemons summed (``enclave.calls``: each enclave call's round trip by kind; ``driver.protocols``:
the contract runner's handles, time under the driver's lock), printed beside one same-run enclave call
(``SubprocessEnclave.sign``) and one dev ledger HTTP call.
Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET = 3.0
ECHO = "/keyswitch-bench/echo/1"


# ------------------------------------------------------------ py-libp2p anchor
async def _stream_rtts(tmp: Path, n: int) -> list[float]:
    import trio

    from node.runtime import Node, NodeConfig
    from node.runtime.streams import ask, read_request, write_response

    async def echo(stream) -> None:
        data = await read_request(stream)
        await write_response(stream, data)

    async with trio.open_nursery() as nursery:
        a = await nursery.start(Node(NodeConfig(datadir=tmp / "rtt-a", net="swapbench", gossip=False,
                                                pex_interval=1e9, seed=1)).run)
        b = await nursery.start(Node(NodeConfig(datadir=tmp / "rtt-b", net="swapbench", gossip=False,
                                                pex_interval=1e9, seed=2)).run)
        b.host.set_stream_handler(ECHO, echo)
        await a.connect(b.listen_addrs[0])
        frame = bytes(64)
        for _ in range(5):  # warm-up: the first streams negotiate more
            await ask(a.host, b.peer_id, ECHO, frame)
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            got = await ask(a.host, b.peer_id, ECHO, frame)
            rtts.append(time.perf_counter() - t0)
            assert got == frame
        nursery.cancel_scope.cancel()
    return rtts


def stream_rtt(tmp: Path, n: int) -> list[float]:
    import trio

    return trio.run(_stream_rtts, tmp, n)


# ------------------------------------------------------------ the per-round costs besides the network
def ledger_rtts(url: str, n: int) -> list[float]:
    """One dev ledger HTTP call (``balance``) to the same ledger server, as a daemon's ledger client makes it."""
    from node.ledger.client import DevLedgerClient

    led = DevLedgerClient(url)
    led.balance("BTC-REG", "bench")
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        led.balance("BTC-REG", "bench")
        out.append(time.perf_counter() - t0)
    return out


def enclave_rtts(datadir: Path, n: int) -> list[float]:
    """One call into a simulated enclave process (``SubprocessEnclave.sign``, release-msg domain), as the daemons make them."""
    import os

    from node.tee.client import SubprocessEnclave

    enc = SubprocessEnclave(datadir)
    try:
        enc.sign("release-msg", os.urandom(32))
        out = []
        for _ in range(n):
            d = os.urandom(32)
            t0 = time.perf_counter()
            enc.sign("release-msg", d)
            out.append(time.perf_counter() - t0)
    finally:
        enc.close()
    return out


# ------------------------------------------------------------ the swap
class Api:
    def __init__(self, d: Path, peer: str) -> None:
        import httpx

        self.peer = peer
        self.c = httpx.Client(base_url=(d / "api.url").read_text().strip(), timeout=60,
                              headers={"Authorization": "Bearer " + (d / ".cookie").read_text().strip()})

    def get(self, path: str):
        return self.c.get(path).json()

    def post(self, path: str, body: dict):
        return self.c.post(path, json=body)


def until(pred, timeout: float, what: str, every: float = 0.2) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out: {what}")


def spent_between(before: dict, after: dict) -> dict[str, float]:
    """Seconds a daemon spent during the swap, from two ``/v1/status`` reads: "enclave" (its enclave calls' round
    trips), "contract" (its contract runner's handles, under the driver's lock: the enclave calls made there,
    records written, messages checked), "other" (every other protocol's handles)."""
    def grown(b: dict, a: dict, field: str, keys=None) -> float:
        return sum(row.get(field, 0.0) - b.get(k, {}).get(field, 0.0) for k, row in a.items()
                   if keys is None or keys(k))

    calls_b, calls_a = before["enclave"].get("calls", {}), after["enclave"].get("calls", {})
    hb, ha = before["driver"].get("protocols", {}), after["driver"].get("protocols", {})
    return {"enclave": grown(calls_b, calls_a, "call_s"),
            "contract": grown(hb, ha, "handle_s", lambda k: k == "ContractRun"),
            "other": grown(hb, ha, "handle_s", lambda k: k != "ContractRun")}


def swap_once(tmp: Path, chunks: int, log_level: str = "warning") -> dict:
    import socket  # noqa: F401  (kept light: the daemons do the work)

    from node.dev.localnet import init_datadir, spawn, stop_all, wait_for

    py = sys.executable
    procs = []
    try:
        (tmp / "ledger").mkdir()
        led = spawn([py, "-m", "node.ledger.server", "serve", "--db", str(tmp / "ledger/db.sqlite"),
                     "--block-interval", "0.5"], tmp / "ledger/out.log")
        procs.append(led)
        lurl = wait_for(tmp / "ledger/out.log", r"dev ledger listening on (\S+)", led, timeout=60)
        (tmp / "boot").mkdir()
        b = spawn([py, "-m", "bootstrap", "--datadir", str(tmp / "boot"), "--net", "swapbench"], tmp / "boot/out.log")
        procs.append(b)
        boot = wait_for(tmp / "boot/out.log", r"LISTEN (\S+)", b, timeout=60)
        dirs = [tmp / "A", tmp / "B"]
        for d in dirs:
            init_datadir(d)  # `keyswitch init`: run refuses a data directory never initialised
            procs.append(spawn([py, "-m", "node", "--datadir", str(d), "run", "--net", "swapbench",
                                "--bootnodes", boot, "--republish", "2", "--log-level", log_level], d / "out.log",
                               env={"KEYSWITCH_LEDGER_URL": lurl}))
        a, bb = [Api(d, wait_for(d / "out.log", r"ready (\S+)", p, timeout=90)) for d, p in zip(dirs, procs[2:])]
        assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": chunks}).status_code == 201
        assert bb.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": chunks}).status_code == 201
        until(lambda: a.get("/v1/status")["offers_in_book"] == chunks and bb.get("/v1/status")["offers_in_book"] == chunks,
              120, "each book holds the other's offers")

        def done() -> bool:
            ca, cb = a.get("/v1/contracts")["contracts"], bb.get("/v1/contracts")["contracts"]
            return bool(ca and cb) and all(c["state"] == "done" for c in ca + cb)

        before = [api.get("/v1/status") for api in (a, bb)]
        w0 = time.time()  # (the daemons stamp keys_in_at with the same wall clock: one machine)
        t0 = time.perf_counter()
        r = a.post("/v1/contracts", {"peer": bb.peer, "give": "BTC-REG", "take": "ETH-DEV", "chunks": chunks})
        t_post = time.perf_counter() - t0
        assert r.status_code in (200, 201), (r.status_code, r.text)
        until(done, 120, "both sides finish the swap", every=0.02)
        t_done = time.perf_counter() - t0
        after = [api.get("/v1/status") for api in (a, bb)]
        rows = {"A": a.get("/v1/contracts")["contracts"][0], "B": bb.get("/v1/contracts")["contracts"][0]}
        # all keys exchanged: each side's enclave took the last key due to it (stamped by the daemon, not polled)
        wall = max(rows[s]["keys_in_at"] for s in rows) - w0
        return {"wall": wall, "done": t_done, "post": t_post, "rows": rows, "agreed": r.json(),
                "spent": [spent_between(b0, a0) for b0, a0 in zip(before, after)],
                "ledger_rtts": ledger_rtts(lurl, 30), "enclave_rtts": enclave_rtts(tmp / "enc", 30)}
    finally:
        stop_all(procs)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.swap", description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--rtt-n", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="2 chunks, 20 round trips")
    args, _ = ap.parse_known_args(argv)  # under `python -m benchmarks NAME ...` argv holds the names
    if args.quick:
        args.chunks, args.rtt_n = 2, 20
    import logging
    logging.basicConfig(level=logging.ERROR)
    print(__doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory(prefix="ks-bench-swap-") as tmp:
        rtts = stream_rtt(Path(tmp), args.rtt_n)
        res = swap_once(Path(tmp), args.chunks)
        rtts += stream_rtt(Path(tmp) / "after", args.rtt_n)  # once before and once after the swap
    rtt = statistics.median(rtts)
    rounds = 1 + 2 * args.chunks
    per_round = res["wall"] / rounds
    ratio = res["wall"] / (rounds * rtt)
    outs = [res["rows"][s].get("outcome") or {} for s in ("A", "B")]
    claimed = sum(1 for o in outs for ch in o.get("chunks", []) if ch.get("status") == "claimed")
    print(f"swap: {args.chunks} chunks each way (BTC-REG <-> ETH-DEV), claim policy sweep (every received key swept "
          f"to the dev ledger server, no confirmation waited for); {claimed}/{2 * args.chunks} chunks claimed")
    print(f"rounds (release round trips)  {rounds:8d}     (1 open + {2 * args.chunks} releases, each acked)")
    print(f"swap wall time                {res['wall'] * 1e3:8.1f} ms  (POST /v1/contracts -> all keys exchanged: the "
          f"later of the two enclaves taking the last key due to it; the POST itself returned after "
          f"{res['post'] * 1e3:.1f} ms)")
    print(f"both sides done               {res['done'] * 1e3:8.1f} ms  (-> both list the contract done: the last "
          f"sweeps too, polled every 20 ms; not the issue's measure, shown for the whole picture)")
    print(f"time per round                {per_round * 1e3:8.1f} ms")
    print(f"py-libp2p stream RTT          {rtt * 1e3:8.2f} ms  (anchor, same run: median of {len(rtts)} one-shot "
          f"streams, p90 {sorted(rtts)[int(0.9 * len(rtts))] * 1e3:.2f} ms)")
    print(f"rounds x RTT                  {rounds * rtt * 1e3:8.1f} ms")
    spent = {s: {k: v * 1e3 for k, v in d.items()} for s, d in zip(("A", "B"), res["spent"])}
    kinds = ("enclave", "contract", "other")
    total = {k: spent["A"].get(k, 0.0) + spent["B"].get(k, 0.0) for k in kinds}
    for k, what in (("enclave", "every enclave call's round trip (contract_open, contract_release, contract_accept, "
                                "the messages' signatures, the sweeps' key exports)"),
                    ("contract", "the contract runner's handles under the driver's lock (the enclave calls made "
                                 "there, records written and fsynced, messages checked)"),
                    ("other", "every other protocol's handles (offers, agreement, outcomes, ...)")):
        print(f"  in {k:<8}                {total[k]:8.1f} ms  (A {spent['A'].get(k, 0.0):.1f} + B "
              f"{spent['B'].get(k, 0.0):.1f}: {what})")
    busy = total["contract"] + total["other"]
    print(f"  elsewhere                   {res['done'] * 1e3 - busy:8.1f} ms  (done minus the handles: streams, "
          f"ledger tasks (funds checks, sweeps) off the lock, both event loops; the sides' work mostly alternates, "
          f"so those parts add up)")
    enc, led = statistics.median(res["enclave_rtts"]), statistics.median(res["ledger_rtts"])
    print(f"enclave call (sign only)      {enc * 1e3:8.2f} ms  (same run: median SubprocessEnclave.sign round trip; "
          f"no journal write)")
    print(f"dev ledger HTTP call          {led * 1e3:8.2f} ms  (same run: median balance call to the same server)")
    met = ratio <= TARGET
    print(f"ratio wall / (rounds x RTT) {ratio:6.2f}x (target <= {TARGET:g}x): {'MET' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    if rc:  # only on a missed target: a plain return keeps `python -m benchmarks` running the others
        sys.exit(rc)
