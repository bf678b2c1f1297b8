"""Offer gossip on real processes: 2 bootstrap nodes, 8 nodes with enclaves, a forger, a crash.

Every node runs the real offers stack (``node.dev.factory:offers_factory``: a
simulated enclave process, a SQLite offer book, ``OffersProtocol``) and offers
2 attested chunks. See framework.py for the harness.
"""

from __future__ import annotations

import time

import pytest

from tests.functional.framework import FAST, OFFERS, offers

pytestmark = pytest.mark.network

KEYS = 2


def test_offers_reach_every_book_forgeries_do_not_and_a_restart_catches_up(network):
    net = network
    b1, b2 = net.two_bootstraps()
    nodes = [net.add_node(f"node{i}", bootnodes=[(b1, b2)[i % 2].addr], protocols=[OFFERS],
                          opts={"republish": "1", "republish_max": "2", "keys": str(KEYS)}, extra=FAST)
             for i in range(8)]
    net.wait_ready(nodes, timeout=60)
    want = 7 * KEYS

    def every_book_full() -> bool:
        return all(offers(n.status()).get("offers_in_book", 0) == want for n in nodes)

    took = net.wait_until(every_book_full, 60, f"every node's book holds the other nodes' {want} offers")
    print(f"[test] every book full after {took:.1f}s")
    for n in nodes:
        assert offers(n.status()).get("reject", 0) == 0, (n.name, offers(n.status()))

    # ---- a forger: bad signature, another device's quote, replayed old sheet
    evil = net.add_node("evil", bootnodes=[b1.addr], protocols=["tests.functional.forger:make"],
                        opts={"republish": "0.5", "keys": "2"}, extra=FAST)
    net.wait_ready([evil], timeout=60)

    def forgeries_rejected() -> bool:
        reasons: dict = {}
        for n in nodes:
            for k, v in offers(n.status()).get("reasons", {}).get("reject", {}).items():
                reasons[k] = reasons.get(k, 0) + v
        return (reasons.get("bad signature", 0) >= 1
                and reasons.get("untrusted or forged quote", 0) >= 1)

    took = net.wait_until(forgeries_rejected, 40, "honest nodes REJECT the bad signature and the foreign quote")
    print(f"[test] forgeries rejected after {took:.1f}s")
    net.wait_until(lambda: offers(evil.status()).get("sent", {}).get("replay", 0) >= 2, 20, "replays sent")
    for n in nodes:
        st = n.status()
        o = offers(st)
        # the forger's only valid sheet may be held; nothing forged ever is
        assert o["offers_in_book"] in (want, want + 2), (n.name, o)
        if o.get("reject", 0):
            assert evil.peer_id in st["peers"], f"{n.name} got a forgery from a non-attacker: forwarded"
    evil.kill()

    # ---- a crash and a restart with the same identity and book
    victim = nodes[3]
    seq_before = offers(nodes[0].status()).get("seq", 0)
    victim.kill()
    net.restart(victim, timeout=60)

    def caught_up() -> bool:
        o = offers(victim.status())
        return o.get("offers_in_book", 0) >= want and o.get("accept", 0) >= 7
    took = net.wait_until(caught_up, 60, "the restarted node rejoins and its book catches up")
    print(f"[test] restarted node caught up after {took:.1f}s")
    # and gossip goes on past the restart: node 0 re-announces (every 2 s at most: republish_max) and the
    # restarted node accepts those re-announcements, not only what its pulls on connect brought
    accepted = offers(victim.status())["accept"]
    net.wait_until(lambda: offers(nodes[0].status())["seq"] > seq_before
                   and offers(victim.status())["accept"] > accepted, 20,
                   "node 0 re-announces its sheet and the restarted node accepts it over gossip")

    t0 = time.monotonic()
    for p in nodes + [b1, b2]:
        assert p.stop() == 0, p.name
    print(f"[test] graceful stop of 10 processes took {time.monotonic() - t0:.1f}s")
