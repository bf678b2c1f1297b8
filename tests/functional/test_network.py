"""Real processes on 127.0.0.1: 2 bootstrap nodes, 8 nodes, an attacker, a crash.

Every node runs ``tests.functional.beacon`` (a tiny signed-gossip protocol
that exercises validation, timers, publish and stream request/response
through the real ``node.runtime`` driver). See framework.py for the harness.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.network

BEACON = "tests.functional.beacon:make"
FAST = ["--pex-interval", "2"]


def beacon(status: dict) -> dict:
    for name, st in status.get("protocols", {}).items():
        if name.endswith("BeaconProtocol"):
            return st
    return {}


def test_two_bootstraps_eight_nodes_attacker_and_restart(network):
    net = network
    b1, b2 = net.two_bootstraps()
    # each node knows only ONE bootstrap: finding the other half needs the
    # bootstraps to exchange their tables
    nodes = [net.add_node(f"node{i}", bootnodes=[(b1, b2)[i % 2].addr], protocols=[BEACON],
                          opts={"interval": "1"}, extra=FAST) for i in range(8)]
    net.wait_ready(nodes)
    ids = {n.peer_id for n in nodes}

    def everyone_heard_everyone() -> bool:
        return all(ids <= set(beacon(n.status()).get("seen", {})) for n in nodes)

    took = net.wait_until(everyone_heard_everyone, 45, "every node accepted a beacon from every node")
    print(f"[test] full gossip reach after {took:.1f}s")

    # each node asks every peer it connects to for an echo, concurrently with gossip: a node that connected
    # last may hear everyone before its echo answers are in (it waits for identify first)
    net.wait_until(lambda: all(beacon(n.status()).get("echo_ok", 0) >= 1 for n in nodes), 30,
                   "every node's echo request was answered (stream request/response works)")
    errors: dict[str, int] = {}
    for n in nodes:
        for why, k in beacon(n.status()).get("echo_errors", {}).items():
            errors[why] = errors.get(why, 0) + k
    print(f"[test] echo failures (the bootstraps speak no echo): {errors}")
    answered = sorted(ms for n in nodes for ms in beacon(n.status())["echo_ms"])
    print(f"[test] echo round trips: {len(answered)}, median {answered[len(answered) // 2]} ms, max {answered[-1]} ms")
    for n in nodes:
        st = n.status()
        assert len(st["peers"]) >= 2, (n.name, st["peers"])
        assert st["mesh"], n.name
        assert beacon(st)["echo_ok"] >= 1, (n.name, beacon(st))  # stream request/response works
        assert beacon(st)["rejects"] == {}, (n.name, beacon(st))
        assert st["driver_errors"] == 0
    # the bootstraps learned peers and hold no gossip state
    for b in (b1, b2):
        st = b.status()
        assert st["mesh"] == {} and not any(st["gossip"].values()), st["gossip"]
        assert len(st["peers"]) >= 4, st["peers"]
        assert st["peering"]["pex_served"] >= 4
    assert b1.peer_id in b2.status()["peers"]

    # ---- an attacker publishing forged and replayed beacons
    evil = net.add_node("evil", bootnodes=[b1.addr], protocols=[BEACON],
                        opts={"interval": "0.3", "evil": "1"}, extra=FAST)
    net.wait_ready([evil])

    def rejected_and_penalised() -> bool:
        rejecting = [n for n in nodes if beacon(n.status()).get("rejects", {}).get("bad tag", 0) >= 2]
        penalised = [n for n in nodes if n.status().get("scores", {}).get(evil.peer_id, 0) < 0]
        return len(rejecting) >= 1 and len(penalised) >= 1

    net.wait_until(rejected_and_penalised, 30, "honest nodes REJECT the forgeries and score the attacker down")
    for n in nodes:
        st = n.status()
        assert evil.peer_id not in beacon(st)["seen"], f"{n.name} accepted a forgery"
        # a forgery is never forwarded: only direct neighbours of the attacker see it
        if beacon(st).get("rejects"):
            assert evil.peer_id in st["peers"], f"{n.name} got a forgery from a non-attacker"
    evil.kill()

    # ---- a crash and a restart with the same identity
    victim = nodes[3]
    before = beacon(victim.status())["seen"]
    victim.kill()
    net.restart(victim)
    assert victim.peer_id == nodes[3].peer_id
    others = [n for n in nodes if n is not victim]

    def caught_up() -> bool:
        seen = beacon(victim.status()).get("seen", {})
        if not all(seen.get(o.peer_id, 0) > before.get(o.peer_id, 0) for o in others):
            return False
        mine = beacon(victim.status()).get("seen", {}).get(victim.peer_id, 0)
        return mine > 0 and all(beacon(o.status())["seen"].get(victim.peer_id, 0) >= mine for o in others)

    took = net.wait_until(caught_up, 40, "the restarted node rejoins through the bootstraps and catches up")
    print(f"[test] restarted node caught up after {took:.1f}s")

    # ---- graceful shutdown
    for p in nodes + [b1, b2]:
        assert p.stop() == 0, p.name
        assert "stopped" in p.log_text().splitlines(), p.name
