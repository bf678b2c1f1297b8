"""The pull on connect on real processes: sheets are re-announced only every 10 min here (far longer than
any wait below), so a node whose book is empty (a restart that lost it) can catch up only by asking the
peers it connects to (``/keyswitch/<net>/sheets/1``).

1 bootstrap node and 4 nodes running the real offers stack (``node.dev.factory:offers_factory``), 2 chunks each.
"""

from __future__ import annotations

import pytest

from tests.functional.framework import FAST, OFFERS, offers

pytestmark = pytest.mark.network

KEYS = 2
SLOW = {"republish": "600", "republish_max": "3600", "keys": str(KEYS)}


def test_a_restarted_node_with_an_empty_book_catches_up_by_pulling_not_by_waiting(network):
    net = network
    boot = net.add_bootstrap("boot")
    net.wait_ready([boot])
    nodes = [net.add_node(f"node{i}", bootnodes=[boot.addr], protocols=[OFFERS], opts=SLOW, extra=FAST)
             for i in range(4)]
    net.wait_ready(nodes, timeout=60)
    want = 3 * KEYS

    # every node published once, at its start: its peers got the sheet by gossip if they were in its
    # mesh by then, else by pulling it when they connected
    took = net.wait_until(lambda: all(offers(n.status()).get("offers_in_book", 0) == want for n in nodes), 60,
                          f"every node's book holds the other nodes' {want} offers")
    print(f"[test] every book full after {took:.1f}s")
    seqs = {n.name: offers(n.status())["seq"] for n in nodes}
    for n in nodes:
        o = offers(n.status())
        assert o["pull"]["asked"] >= 1 and o["reject"] == 0, (n.name, o)
        assert o["next_interval"] == 600  # nothing re-announced yet

    # ---- a crash that loses the book: restarted with the same identity and an empty offers.sqlite
    victim = nodes[3]
    victim.kill()
    for f in victim.datadir.glob("offers.sqlite*"):
        f.unlink()
    net.restart(victim, timeout=60)
    took = net.wait_until(lambda: offers(victim.status()).get("offers_in_book", 0) == want, 30,
                          "the restarted node's empty book catches up through the pull")
    print(f"[test] restarted node caught up after {took:.1f}s")
    o = offers(victim.status())
    assert o["pull"]["asked"] >= 1 and o["pull"]["accepted"] == 3 and o["accept"] == 3, o
    # nobody re-announced anything meanwhile: the sheets it holds are the ones first published
    for n in nodes[:3]:
        assert offers(n.status())["seq"] == seqs[n.name], n.name
        assert offers(n.status())["pull"]["served"] >= 1
    for p in nodes + [boot]:
        assert p.stop() == 0, p.name
