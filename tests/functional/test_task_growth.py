"""Issue #22: a daemon's pubsub tasks end with the peer they served, over the real wire on 127.0.0.1 (a dev ledger,
a bootstrap node, daemon A; the bootstrap node runs no gossipsub, so A's pubsub tasks are those of the peer below).

A peer that dials A twice at once (two connections, as two nodes dialling each other at once make, or a hostile
peer on purpose), lets A register it, then hangs up, ROUNDS times. py-libp2p registered it with pubsub once per
connection, the second overwriting the first, whose sending task (and its parent) then waited for ever: after 8
rounds A kept 2 and 6 sending tasks (two runs), each with its parent, for a peer long gone, and the soak saw up
to 12 sending tasks in a daemon with 6 peers
(``node.runtime.pubsubpeers`` has the cause and the fix). Once the peer is gone, A's pubsub sending and
registering tasks (``task_groups`` in ``GET /v1/status``) must all end."""

from __future__ import annotations

import time

import pytest
import trio

from tests.functional.framework import FACTOR, until

pytestmark = pytest.mark.network

ROUNDS = 8
#: the task groups (``trio_task_groups``: name > where it waits) that serve one pubsub peer
PEER_TASKS = ("handle_sending_messages", "_handle_new_peer_with_retry", "_peer_stream_retry_task")


def peer_tasks(api) -> dict[str, int]:
    return {k: v for k, v in api.get("/v1/status")["task_groups"].items() if k.startswith(PEER_TASKS)}


async def dial_twice_and_hang_up(addr: str, datadir, rounds: int) -> int:
    """A libp2p node with gossipsub (``node.runtime.node.Node``) that, ``rounds`` times, opens two connections
    to ``addr`` at once, lets the daemon register it, and closes both; the connections it saw open."""
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from node.runtime.node import Node, NodeConfig

    node = Node(NodeConfig(datadir=datadir, net="taskgrowth", target_peers=0, pex_interval=3600.0, seed=1))
    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    opened = 0
    with trio.fail_after(60 + 10 * rounds * FACTOR):  # (bounded: stops by itself)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            swarm = node.host.get_network()
            for _ in range(rounds):
                async with trio.open_nursery() as dials:
                    for _ in range(2):
                        dials.start_soon(swarm.dial_addr, info.addrs[0], info.peer_id)
                opened += len(swarm.get_connections(info.peer_id))
                await trio.sleep(1.0)  # the daemon registers us with pubsub (on each connection)
                await swarm.close_peer(info.peer_id)
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    return opened


def test_pubsub_tasks_end_after_a_peer_dials_twice_at_once_and_leaves(network, tmp_path):
    network.net = "taskgrowth"
    lurl, boot = network.ledger_and_boot()
    a = network.add_daemon("A", bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    network.wait_daemons([a])
    time.sleep(2)
    assert peer_tasks(a) == {}, peer_tasks(a)  # no gossip peer yet: the bootstrap node runs none
    addr = next(x for x in a.get("/v1/status")["listen"] if "/ip4/127.0.0.1/" in x)
    (tmp_path / "attacker").mkdir()
    opened = trio.run(dial_twice_and_hang_up, addr, tmp_path / "attacker", ROUNDS)
    assert opened >= 2 * ROUNDS - 2, f"{opened} connections seen open in {ROUNDS} rounds of two"  # the race ran
    seen: dict = {}

    def gone() -> bool:
        seen["left"] = peer_tasks(a)
        return not seen["left"] and a.get("/v1/status")["peers"] <= 1  # (the bootstrap node)

    try:
        until(gone, 30, "A's pubsub tasks for the peer gone end")
    except AssertionError:
        raise AssertionError(f"after a peer dialled A twice at once and left, {ROUNDS} times, A still runs "
                             f"{seen['left']} (tasks now {a.get('/v1/status')['tasks']})") from None
