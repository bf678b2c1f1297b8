"""``GET /v1/peers`` and ``POST /v1/peers`` (``keyswitch peers`` / ``connect``, issue #21) over real py-libp2p nodes
on 127.0.0.1 in one trio process: the node's real ``NodeServices.peers``/``connect`` behind the real API app.

b has a bootstrap node (dialled: out) and c dialled it (in); b and c share a gossip topic. Each row gives the
connection's address and direction, the ping round trip, the agent from identify, the mesh state and the
bootstrap label, next to the gossipsub score it had before.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
import trio

from node import identity
from node.api.app import build_app, serve, write_cookie
from node.app.services import NodeServices
from node.protocols.base import Validation, topic
from node.runtime import Node, NodeConfig, run_host
from tests.polling import eventually

pytestmark = pytest.mark.network

T = topic("pe", "probe", 1)


class Topic:
    topics = (T,)
    stream_protocols = ()

    def validate(self, topic_, data, from_peer, now):
        return Validation.accept()

    def handle(self, event, now):
        return []


def cfg(tmp, name, **kw) -> NodeConfig:
    return NodeConfig(datadir=tmp / name, net="pe", heartbeat=0.2, seed=1, pex_interval=3600.0, **kw)


@pytest.fixture
async def net(tmp_path, nursery):
    boot = await nursery.start(Node(cfg(tmp_path, "boot", gossip=False, dial_learned=False)).run)
    b = await nursery.start(run_host, cfg(tmp_path, "b", bootnodes=[boot.listen_addrs[0]], target_peers=4,
                                          dial_interval=0.2), [Topic()])
    c = await nursery.start(run_host, cfg(tmp_path, "c", target_peers=4), [Topic()])
    d = await nursery.start(run_host, cfg(tmp_path, "d", target_peers=4), [Topic()])
    cookie = write_cookie(tmp_path)
    services = NodeServices(b, SimpleNamespace(protocol=SimpleNamespace(topic=T)), clock=None, started_at=0.0)
    url = await nursery.start(serve, build_app(services, cookie))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {cookie}"}, timeout=60) as api:
        yield SimpleNamespace(boot=boot, b=b, c=c, d=d, api=api)
    for x in (boot, b, c, d):
        x.stop()


async def rows(api) -> dict[str, dict]:
    r = await api.get("/v1/peers")
    assert r.status_code == 200, r.text
    return {row["peer"]: row for row in r.json()["peers"]}


async def test_each_peer_has_address_direction_latency_agent_mesh_and_the_bootstrap_is_labelled(net):
    await net.c.connect(net.b.listen_addrs[0])  # c dials b: inbound at b
    await eventually(lambda: net.boot.peer_id in net.b.connected_peers(), what="b dials its bootnode")
    await eventually(lambda: net.c.peer_id in net.b.mesh_peers(T), what="c in b's mesh")
    await eventually(lambda: all(net.b.probe.latency_ms.get(p) is not None and net.b.probe.agent.get(p)
                                 for p in (net.boot.peer_id, net.c.peer_id)), what="pinged and identified")
    got = await rows(net.api)
    boot, c = got[net.boot.peer_id], got[net.c.peer_id]
    boot_port = net.boot.listen_addrs[0].split("/tcp/")[1].split("/")[0]
    assert boot["address"] == f"/ip4/127.0.0.1/tcp/{boot_port}" and boot["direction"] == "out", boot
    assert c["direction"] == "in" and c["address"].startswith("/ip4/127.0.0.1/tcp/"), c
    assert c["address"] != net.c.listen_addrs[0].split("/p2p/")[0]  # (the dialler's own port, not its listener)
    assert boot["bootstrap"] is True and c["bootstrap"] is False
    assert c["in_offer_mesh"] is True and boot["in_offer_mesh"] is False
    for row in (boot, c):
        assert isinstance(row["latency_ms"], float) and 0 <= row["latency_ms"] < 5000, row
        assert row["agent"].startswith("keyswitch/") and "py-libp2p/" in row["agent"], row  # (not py-libp2p's own)
        assert row["connections"] >= 1, row  # (more than one: both sides dialled at once, issue #22)
    assert "score" in c and "score_components" in c  # the score columns are still there


async def test_connect_dials_and_refuses_bad_addresses_with_one_line(net, tmp_path):
    r = await net.api.post("/v1/peers", json={"multiaddr": net.d.listen_addrs[0]})
    assert r.status_code == 200, r.text
    assert r.json()["peer"] == net.d.peer_id and r.json()["direction"] == "out"
    assert net.d.peer_id in net.b.connected_peers()

    bad = {"/ip4/127.0.0.1/tcp/1": "needs /p2p/<peer id>",
           f"/dns4/example.org/tcp/4001/p2p/{net.d.peer_id}": "DNS peer addresses are not dialled",
           "ip4/127.0.0.1": "starts with '/'",
           net.b.listen_addrs[0]: "this node's own address"}
    for addr, why in bad.items():
        r = await net.api.post("/v1/peers", json={"multiaddr": addr})
        assert r.status_code == 409 and why in r.json()["error"], (addr, r.text)
        assert "\n" not in r.json()["error"]
    # a port where nobody listens, and a live node under another peer id: the dial fails, said in one line
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ghosts = [identity.peer_id(tmp_path / f"ghost{i}") for i in range(2)]  # peer ids nobody runs
    for addr in (f"/ip4/127.0.0.1/tcp/{dead}/p2p/{ghosts[0]}",
                 net.c.listen_addrs[0].split("/p2p/")[0] + f"/p2p/{ghosts[1]}"):
        for _ in range(2):  # again at once: an operator's retry dials again (no "negative cache" refusal)
            r = await net.api.post("/v1/peers", json={"multiaddr": addr})
            assert r.status_code == 409 and "could not connect" in r.json()["error"], (addr, r.text)
            assert "negative cache" not in r.json()["error"] and "\n" not in r.json()["error"]
        assert ghosts[0] not in net.b.connected_peers() and ghosts[1] not in net.b.connected_peers()
    r = await net.api.post("/v1/peers", json={"multiaddr": "/" + "x" * 600})
    assert r.status_code == 400 and "1..512" in r.json()["error"]


async def test_a_hostile_agent_string_reaches_neither_the_api_nor_a_terminal_as_it_was_sent(net, monkeypatch):
    """A peer's agent version is its own words: one that sends terminal escapes (clear the screen, retitle the
    window) and a kilobyte of text gets them cut to MAX_AGENT printable characters before any operator sees them."""
    from libp2p.identity.identify import identify

    from node.runtime.peerinfo import MAX_AGENT

    evil = "\x1b[2J\x1b]0;pwned\x07" + "A" * 1000
    monkeypatch.setattr(identify, "AGENT_VERSION", evil)  # what every node of this process now says in identify
    await net.d.connect(net.b.listen_addrs[0])
    await eventually(lambda: net.b.probe.agent.get(net.d.peer_id), what="b identified d")
    agent = (await rows(net.api))[net.d.peer_id]["agent"]
    assert agent.isprintable() and "\x1b" not in agent and "\x07" not in agent, repr(agent)
    assert len(agent) <= MAX_AGENT and agent.startswith("?[2J?]0;pwned?AAA"), repr(agent)
