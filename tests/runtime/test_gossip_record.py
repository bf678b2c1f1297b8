"""GossipSub builds no signed peer record for the RPCs that go without it (``node.runtime.gossiprecord``)."""

from __future__ import annotations

import logging
import traceback

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub

from node.runtime import gossiprecord
from tests.runtime.hostkit import T, Probe, cfg, line, run_host, wait_for

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


async def test_recent_messages_replayed_to_a_new_peer_reach_it(tmp_path, caplog):
    """py-libp2p replays its recent messages to a newly connected subscriber with a direct write
    (``GossipSub.send_recent_messages``), not through the queue that drops an empty record. With ``gossiprecord``
    its ``senderRecord`` was set to b"": present but empty, and the receiver's pubsub dropped the whole RPC as an
    invalid record ("Received an invalid-signed-record, ignoring the incoming msg"). ``KsPubsub.write_msg``
    clears the field whenever it is present."""
    caplog.set_level(logging.ERROR, logger="libp2p")
    async with trio.open_nursery() as n:
        probes = [Probe(), Probe()]
        a, b = [await n.start(run_host, cfg(tmp_path, x), [p]) for x, p in zip("ab", probes)]
        for i in range(3):
            await a.publish(T, b"early-%d" % i)  # in a's message cache, with no one to send them to
        await b.connect(a.listen_addrs[0])
        await wait_for(lambda: len(probes[1].got) == 3, what="b gets a's recent messages replayed on connecting")
        assert sorted(d for d, _ in probes[1].got) == [b"early-0", b"early-1", b"early-2"]
        assert not [r for r in caplog.records if "invalid-signed-record" in r.getMessage()]
        a.stop()
        b.stop()
