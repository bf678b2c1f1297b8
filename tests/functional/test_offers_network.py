"""Offer sheets from real (simulated) enclaves reach every node's offer book.

2 bootstrap processes and 8 node processes, each node running the daemon's
offer stack (``node.daemon:offers_factory``: an enclave process, a SQLite
offer book, ``OffersProtocol``) through ``python -m node.runtime``.
"""

from __future__ import annotations

import pytest

from tests.functional.framework import Network

pytestmark = pytest.mark.network

OFFERS = "node.daemon:offers_factory"
KEYS = 2


def offers_status(status: dict) -> dict:
    for name, st in status.get("protocols", {}).items():
        if name.endswith("OffersProtocol"):
            return st
    return {}


def test_offer_sheets_from_enclaves_reach_every_book(tmp_path):
    with Network(tmp_path) as net:
        b1 = net.add_bootstrap("boot1")
        net.wait_ready([b1])
        b2 = net.add_bootstrap("boot2", bootnodes=[b1.addr])
        net.wait_ready([b2])
        nodes = [net.add_node(f"node{i}", bootnodes=[(b1, b2)[i % 2].addr], protocols=[OFFERS],
                              opts={"keys": str(KEYS), "republish": "2"}, extra=["--pex-interval", "2"])
                 for i in range(8)]
        net.wait_ready(nodes, timeout=60)
        want = KEYS * (len(nodes) - 1)  # every other node's offers (a node does not book its own)

        def books_full() -> bool:
            return all(offers_status(n.status()).get("offers_in_book", 0) >= want for n in nodes)

        took = net.wait_until(books_full, 60, f"every offer book holds {want} offers")
        print(f"[test] all offer books full after {took:.1f}s")
        for n in nodes:
            st = offers_status(n.status())
            assert st["offers_in_book"] == want, (n.name, st)
            assert st.get("reject", 0) == 0, (n.name, st)
            assert n.status()["driver_errors"] == 0
        for p in nodes + [b1, b2]:
            assert p.stop() == 0, p.name
