"""Interoperability with a second libp2p implementation: a js-libp2p gossipsub node in a daemon network.

The js node (tests/interop/jsnode/node.mjs: libp2p 2.x, @chainsafe/libp2p-gossipsub 14, noise, yamux,
tcp, identify, ping; pinned in its package-lock.json and installed into .tools/jslibp2p by
``make test`` / ``scripts/jslibp2p.sh``) is stock: no validator, it relays what it receives.

Topology: a dev ledger and a bootstrap node (``ledger_and_boot``), the js node (which dials the
bootstrap node), and two ``keyswitch run`` daemons A and B whose ONLY bootnode is the js node. A and B
never connect to each other, so every sheet one gets from the other went through the js node.

Checked: the js node is grafted into the offers mesh (``/keyswitch/<net>/offers/1``) of both daemons
and they into its; it receives A's and B's sheets; A's book gets B's offers and B's book A's (relayed
by the js node). Then the js node publishes garbage, a tampered copy of A's sheet and a replay of it
on the offers topic: both daemons refuse them (their counters, on /metrics), their books hold the
same offers, and they stay up and answering.

Skips (saying why) when node or the npm packages are not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from node.localnet import free_port, init_datadir, spawn, stop_all, wait_for
from tests.functional.framework import FACTOR, Api, ledger_and_boot

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
JSNODE = ROOT / "tests" / "interop" / "jsnode" / "node.mjs"
MODULES = ROOT / ".tools" / "jslibp2p" / "node_modules"
NET = "jsinterop"
OFFERS_TOPIC = f"/keyswitch/{NET}/offers/1"
BUDGET = 85.0  # seconds for the whole test at KS_TIMEOUT_FACTOR=1


def _js_available() -> str:
    """'' when the js node can run here, else why not."""
    if shutil.which("node") is None:
        return "node (Node.js 20) is not installed"
    if not (MODULES / "libp2p" / "package.json").exists() or not (MODULES / "@chainsafe" / "libp2p-gossipsub").exists():
        return f"js-libp2p packages not installed in {MODULES} (run scripts/jslibp2p.sh; it needs npm and the registry)"
    out = subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0 or int(out.stdout.strip() or 0) < 20:
        return f"Node.js 20 or newer needed, found {out.stdout.strip() or out.stderr.strip()[:80]}"
    return ""


class JsNode:
    """The js-libp2p node process: JSON lines out (its log file), JSON commands in (stdin)."""

    def __init__(self, workdir: Path, args: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(JSNODE, workdir / "node.mjs")
        (workdir / "node_modules").symlink_to(MODULES, target_is_directory=True)
        self.log = workdir / "out.log"
        self._err = open(workdir / "err.log", "wb")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["node", str(workdir / "node.mjs"), *args], cwd=workdir,
                                         stdin=subprocess.PIPE, stdout=out, stderr=self._err)
        self.peer = ""
        self.addr = ""

    def events(self, kind: str | None = None) -> list[dict]:
        evs = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if kind is None or ev.get("event") == kind:
                evs.append(ev)
        return evs

    def send(self, **cmd) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def mesh(self, topic: str) -> set[str]:
        ms = self.events("mesh")
        return set(ms[-1]["mesh"].get(topic, [])) if ms else set()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="stop")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()

    def tail(self) -> str:
        return (self.log.read_text(errors="replace")[-3000:] + "\n--- stderr ---\n"
                + (self.log.parent / "err.log").read_text(errors="replace")[-2000:])


def until(pred, timeout: float, what: str, deadline: float) -> float:
    """Poll ``pred`` every 0.25 s; fail after ``timeout`` x KS_TIMEOUT_FACTOR s or at the test's deadline."""
    t0 = time.monotonic()
    end = min(t0 + timeout * FACTOR, deadline)
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {time.monotonic() - t0:.0f}s: {what}")
        time.sleep(0.25)


def gossip_counts(mport: int) -> dict[tuple[str, str], float]:
    """keyswitch_gossip_messages_total{direction="in"} of one daemon: (result, reason) -> count."""
    text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).text
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("keyswitch_gossip_messages_total{") and 'direction="in"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            out[(labels["result"], labels["reason"])] = float(line.rsplit(" ", 1)[1])
    return out


def total(counts: dict[tuple[str, str], float], result: str) -> float:
    return sum(n for (r, _), n in counts.items() if r == result)


def test_js_libp2p_node_is_grafted_relays_sheets_between_two_daemons_and_its_garbage_is_refused(tmp_path):
    why = _js_available()
    if why:
        pytest.skip(why)
    deadline = time.monotonic() + BUDGET * FACTOR
    procs: list[subprocess.Popen] = []
    js: JsNode | None = None
    dirs = [tmp_path / "A", tmp_path / "B"]
    ok = False
    try:
        lurl, boot = ledger_and_boot(tmp_path, NET, procs)
        js = JsNode(tmp_path / "js", ["--listen", "/ip4/127.0.0.1/tcp/0", "--topic", OFFERS_TOPIC, "--follow",
                                      "--dial", boot])
        until(lambda: js.events("listening") or js.proc.poll() is not None, 20, "the js node listens", deadline)
        assert js.proc.poll() is None, f"the js node exited:\n{js.tail()}"
        (lst,) = js.events("listening")
        js.peer, js.addr = lst["peer"], lst["addrs"][0]
        assert js.addr.endswith("/p2p/" + js.peer), lst

        # two daemons whose only bootnode is the js node: no bootstrap node in common, no direct connection
        mports = [free_port(), free_port()]
        for d, mport in zip(dirs, mports):
            init_datadir(d)
            procs.append(spawn([sys.executable, "-m", "node", "--datadir", str(d), "run", "--net", NET,
                                "--bootnodes", js.addr, "--republish", "2", "--metrics-port", str(mport)],
                               d / "out.log", env={"KEYSWITCH_LEDGER_URL": lurl}))
        a, b = [Api(d, wait_for(d / "out.log", r"ready (\S+)", p, timeout=60 * FACTOR))
                for d, p in zip(dirs, procs[2:])]
        assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 2}).status_code == 201
        assert b.post("/v1/deposits", {"asset": "ETH-DEV", "chunks": 2}).status_code == 201

        # ---- grafted: the js node in both daemons' offers mesh, both daemons in the js node's
        def grafted() -> bool:
            return ({a.peer, b.peer} <= js.mesh(OFFERS_TOPIC)
                    and all(any(p["peer"] == js.peer and p["in_offer_mesh"] for p in api.get("/v1/peers")["peers"])
                            for api in (a, b)))

        took = until(grafted, 40, "the js node and both daemons grafted into each other's offers mesh", deadline)
        print(f"[interop] grafted after {took:.1f}s")

        # ---- the js node receives A's and B's sheets; A's book gets B's offers and B's book A's, through it
        def sheets_from(origin: str) -> list[dict]:
            return [m for m in js.events("message") if m["topic"] == OFFERS_TOPIC and m["from"] == origin]

        took = until(lambda: sheets_from(a.peer) and sheets_from(b.peer), 30,
                     "the js node receives A's and B's sheets", deadline)
        print(f"[interop] js node received both daemons' sheets after {took:.1f}s")
        took = until(lambda: a.get("/v1/status")["offers_in_book"] == 2 and b.get("/v1/status")["offers_in_book"] == 2,
                     40, "A's book holds B's 2 offers and B's book A's 2, relayed by the js node", deadline)
        print(f"[interop] both books full after {took:.1f}s")
        for api, other in ((a, b), (b, a)):
            peers = {p["peer"] for p in api.get("/v1/peers")["peers"]}
            assert other.peer not in peers, f"{api.peer} connected to {other.peer} directly: not a relay test"
            assert {o["origin"] for o in api.get("/v1/offers")["offers"]} == {other.peer}
        # every sheet A holds from B came from the js node: the daemons' only connected peer is it
        assert all(api.get("/v1/status")["peers"] == 1 for api in (a, b))
        before = {api.peer: gossip_counts(m) for api, m in zip((a, b), mports)}
        for api in (a, b):
            assert total(before[api.peer], "reject") == 0, (api.peer, before[api.peer])

        # ---- the js node publishes garbage, a tampered sheet of A's and a replay of A's sheet
        sheet = bytes.fromhex(sheets_from(a.peer)[-1]["hex"])
        tampered = bytearray(sheet)
        tampered[len(tampered) // 2] ^= 0x01
        hostile = [os.urandom(64), b"\xff" * 300, bytes(tampered)]
        for payload in hostile:
            js.send(cmd="publish", topic=OFFERS_TOPIC, hex=payload.hex())
        js.send(cmd="publish", topic=OFFERS_TOPIC, hex=sheet.hex())  # a replay, signed anew by the js node
        until(lambda: len(js.events("published")) >= 4, 10, "the js node published its 4 messages", deadline)
        for ev in js.events("published"):
            assert {a.peer, b.peer} <= set(ev["recipients"]), ev

        seen: dict = {}

        def refused() -> bool:
            for api, m in zip((a, b), mports):
                seen[api.peer] = gossip_counts(m)
            # the 2 garbage payloads rejected as malformed, and all 4 hostile messages refused (REJECT) or
            # dropped (IGNORE: the replay, and the tampered copy where the daemon already holds that sheet)
            return all(c.get(("reject", "malformed"), 0) >= 2
                       and (total(c, "reject") + total(c, "ignore")
                            - total(before[p], "reject") - total(before[p], "ignore")) >= len(hostile) + 1
                       for p, c in seen.items())

        try:
            took = until(refused, 20, f"both daemons refuse the js node's {len(hostile) + 1} hostile messages",
                         deadline)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; counters before {before}, now {seen}") from None
        print(f"[interop] hostile messages refused after {took:.1f}s")
        for api, m in zip((a, b), mports):
            after = gossip_counts(m)
            print(f"[interop] {api.peer} gossip in: {sorted(after.items())}")
            # only the hostile messages were rejected, for what they are
            rejected = {reason for (r, reason), n in after.items() if r == "reject" and n}
            assert rejected <= {"malformed", "bad signature"}, (api.peer, after)
            assert total(after, "reject") <= len(hostile), (api.peer, after)
        # A sees the replay of its own sheet as its own; B as a sheet it already holds
        assert gossip_counts(mports[0]).get(("ignore", "our own sheet"), 0) >= 1, gossip_counts(mports[0])
        assert gossip_counts(mports[1]).get(("ignore", "duplicate"), 0) >= 1, gossip_counts(mports[1])
        # nothing hostile entered a book: each still holds exactly the other's 2 offers, and they stay up
        for api, other in ((a, b), (b, a)):
            st = api.get("/v1/status")
            assert st["ready"] and st["offers_in_book"] == 2 and st["own_offers"] == 2, st
            assert {o["origin"] for o in api.get("/v1/offers")["offers"]} == {other.peer}
        # KNOWN GAP (issue #23, items 1-2; runtime work on branch gossip): after these 3-4 invalid messages the
        # daemons' score of the js node is below the publish threshold, and with the heartbeat slowed by py-libp2p's
        # adaptive gossip it stays there for minutes: A does not send its next sheet to its only peer. Observed
        # here for a fixed 6 s and printed, not asserted, so that the fix can turn it into "forgiven within T".
        n_a = len(sheets_from(a.peer))
        assert a.post("/v1/deposits", {"asset": "BTC-REG", "chunks": 1}).status_code == 201
        end = min(time.monotonic() + 6, deadline)
        while time.monotonic() < end and b.get("/v1/status")["offers_in_book"] < 3:
            time.sleep(0.5)
        print(f"[interop] after the penalty, in 6 s: js node got {len(sheets_from(a.peer)) - n_a} new sheet(s) "
              f"from A; B's book holds {b.get('/v1/status')['offers_in_book']} offers (3 = A's new one relayed)")
        for d, p in zip(dirs, procs[2:]):
            assert p.poll() is None, f"{d.name} died:\n{(d / 'out.log').read_text(errors='replace')[-3000:]}"
            log = (d / "out.log").read_text(errors="replace")
            assert "Traceback" not in log and "raised" not in log, log[-3000:]
        assert js.proc.poll() is None, js.tail()
        ok = True
    finally:
        if js is not None:
            js.close()
        stop_all(procs)
        if not ok:
            if js is not None:
                print(f"===== js node =====\n{js.tail()}")
            for d in dirs:
                if (d / "out.log").exists():
                    print(f"===== {d.name} =====\n{(d / 'out.log').read_text(errors='replace')[-4000:]}")
