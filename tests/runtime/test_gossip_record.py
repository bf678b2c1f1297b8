"""GossipSub builds no signed peer record for the RPCs that go without it (``node.runtime.gossiprecord``)."""

from __future__ import annotations

import traceback

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub

from node.runtime import gossiprecord
from tests.runtime.test_runtime import T, line, wait_for

pytestmark = pytest.mark.network


async def forwarded_with_addrs_read(tmp_path, count: int) -> tuple[int, list[bytes], object]:
    """a - b - c; a publishes ``count`` messages that b forwards to c: how often b's gossipsub read b's own
    addresses meanwhile (what building the record costs; identify and a stream's hello read them too, and are
    not counted), what c got, and the record b holds of a (from a's hello)."""
    async with trio.open_nursery() as n:
        (a, b, c), (_, _, pc) = await line(n, tmp_path)
        calls = []
        get_addrs = b.host.get_addrs

        def counting():
            if any(f.filename.endswith("pubsub/gossipsub.py") for f in traceback.extract_stack()):
                calls.append(1)
            return get_addrs()

        b.host.get_addrs = counting
        for i in range(count):
            await a.publish(T, b"ok-%d" % i)
        await wait_for(lambda: len(pc.got) == count, what="c gets every message through b")
        record = b.host.get_peerstore().get_peer_record(ID.from_base58(a.peer_id))
        got = [d for d, _ in pc.got]
        for x in (a, b, c):
            x.stop()
    return len(calls), got, record


async def test_a_forwarded_message_costs_no_record_and_the_hello_still_carries_it(tmp_path):
    assert gossipsub.env_to_send_in_RPC is gossiprecord._none_for_gossip
    reads, got, record = await forwarded_with_addrs_read(tmp_path, 20)
    assert sorted(got) == sorted(b"ok-%d" % i for i in range(20))
    assert reads == 0
    assert record is not None  # a's record reached b in the hello of a's stream


async def test_without_it_every_forwarded_message_read_the_addresses(tmp_path):
    """The comparison: py-libp2p's own reference reads the forwarder's addresses for each message."""
    from libp2p.peer.peerstore import env_to_send_in_RPC

    gossipsub.env_to_send_in_RPC = env_to_send_in_RPC
    try:
        reads, got, _ = await forwarded_with_addrs_read(tmp_path, 20)
    finally:
        gossiprecord.install()
    assert len(got) == 20 and reads >= 20
