"""Gossip attacks on real in-process nodes over loopback (issue #23).

* a peer that sent rejected messages must be muted and pruned for a *bounded* time, as configured: with
  py-libp2p's adaptive gossip its heartbeat (and so the score decay) slowed to 60 s, muting it 12-23 min;
* a peer with a negative score must lose its mesh slot at the next heartbeat and not get it back by GRAFT
  (go-libp2p's behaviour; py-libp2p prunes only an over-full mesh);
* a peer that does not speak our protocols (another implementation, a bootstrap node) must not be asked
  on them: no stream attempt, no error line.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import trio
from libp2p.peer.id import ID

from node.protocols.base import PeerConnected, ResponseReceived, SendRequest, Validation, topic
from node.runtime import NodeConfig, run_host
from node.runtime import pex
from node.dev.localnet import timeout_factor
from node.runtime.gossip import score_params
from tests.polling import eventually

pytestmark = pytest.mark.network

T = topic("gsp", "probe", 1)
ASKED = "/keyswitch/gsp/sheets/1"  # a stream protocol of ours, asked on connect (as the offers pull is)


class Probe:
    """validate: b"bad*" REJECT, anything else ACCEPT; records what it got. Asks ``ASKED`` of every new peer."""

    topics = (T,)
    stream_protocols = (ASKED,)

    def __init__(self, ask: bool = False, timeout: float = 5.0) -> None:
        self.got: list[tuple[bytes, str]] = []
        self.verdicts: list[str] = []
        self.responses: list[ResponseReceived] = []
        self.ask = ask
        self.timeout = timeout  # of each request
        self._req = 0

    def validate(self, topic_, data, from_peer, now):
        v = Validation.reject("bad") if data.startswith(b"bad") else Validation.accept()
        self.verdicts.append(v.result.value)
        return v

    def handle(self, event, now):
        from node.protocols.base import GossipReceived, RequestReceived, Respond

        if isinstance(event, GossipReceived):
            self.got.append((event.data, event.from_peer))
        if isinstance(event, RequestReceived):
            return [Respond(event.request_id, b"answer")]
        if isinstance(event, ResponseReceived):
            self.responses.append(event)
        if isinstance(event, PeerConnected) and self.ask:
            self._req += 1
            return [SendRequest(ASKED, event.peer, self._req, b"hello", self.timeout)]
        return []


def cfg(tmp: Path, name: str, **kw) -> NodeConfig:
    kw.setdefault("target_peers", 4)
    kw.setdefault("pex_interval", 3600.0)
    return NodeConfig(datadir=tmp / name, net="gsp", seed=1, **kw)  # default heartbeat (1 s)


async def wait_for(pred, timeout=15.0, what=""):
    await eventually(pred, timeout, what)


def answer_identify_late(node, seconds: float) -> None:
    """``node`` answers each identify ``seconds`` late (a slow or loaded peer)."""
    from libp2p.identity.identify.identify import ID as IdentifyID

    served = node.host.get_mux().handlers[IdentifyID]

    async def late_identify(stream):
        await trio.sleep(seconds)
        await served(stream)

    node.host.set_stream_handler(IdentifyID, late_identify)


def stream_errors(caplog, *marks: str) -> list[str]:
    """py-libp2p's error lines for a stream that failed to open (on a protocol the peer does not speak)."""
    marks = marks or ("Failed to open stream", "protocol not supported")
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and any(m in r.getMessage() for m in marks)]


#: the heartbeat of the forgiveness test: the score decays per heartbeat, so its stated times are counted in
#: heartbeats (23 and 92 of them); at a quarter of the 1 s default they pass in 6 s and 23 s instead of 23 s and 92 s
HB = 0.25


async def test_a_peer_that_sent_5_rejected_messages_is_heard_again_and_gets_gossip_within_the_stated_time(tmp_path):
    params = score_params()
    p4 = params.p4_invalid_messages  # 5 REJECTs: 5 x weight, times decay per heartbeat

    def forgiven(threshold):  # heartbeats until the penalty decays back to the threshold
        return math.ceil(math.log(-threshold / (5 * p4.weight)) / math.log(p4.decay))
    heard_after = forgiven(params.publish_threshold)  # 23 heartbeats (23 s at the default 1 s heartbeat)
    gossip_after = forgiven(params.gossip_threshold)  # 92 heartbeats (92 s)
    async with trio.open_nursery() as n:
        pa, pm, pb = Probe(), Probe(), Probe()
        # a star around a (nobody dials the peers it learns of): m's messages reach a only from m itself
        a = await n.start(run_host, cfg(tmp_path, "a", dial_learned=False, heartbeat=HB), [pa])
        m = await n.start(run_host, cfg(tmp_path, "m", dial_learned=False, heartbeat=HB), [pm])  # the attacker
        b = await n.start(run_host, cfg(tmp_path, "b", dial_learned=False, heartbeat=HB), [pb])
        await m.connect(a.listen_addrs[0])
        await b.connect(a.listen_addrs[0])
        await wait_for(lambda: set(a.mesh_peers(T)) == {m.peer_id, b.peer_id})

        def beats() -> int:  # a's heartbeats so far: each one decays the scores once
            return a.router.counters["heartbeats"]
        ihaves: list[tuple[float, int]] = []  # IHAVEs the attacker gets from a (gossip: a sends them only above -20)
        orig = m.router.handle_ihave

        async def spy(msg, sender, orig=orig):
            if sender == ID.from_base58(a.peer_id):
                ihaves.append((trio.current_time(), beats()))
            await orig(msg, sender)
        m.router.handle_ihave = spy
        # the attacker sends its own messages straight to a, mesh or not (go-libp2p's default flood publish)
        m.router._get_peers_to_send = lambda *args, **kw: [ID.from_base58(a.peer_id)]

        for i in range(5):
            await m.publish(T, b"bad-%d" % i)
        await wait_for(lambda: pa.verdicts.count("reject") == 5)
        t0, b0 = trio.current_time(), beats()
        assert a.pubsub.score_of(m.peer_id, [T]) == pytest.approx(-50, abs=1)

        heard: list[tuple[float, int]] = []

        async def attacker_speaks() -> None:
            i = 0
            while not heard:
                i += 1
                await m.publish(T, b"ok-m-%d" % i)
                await trio.sleep(HB)
                if any(d.startswith(b"ok-m-") and fwd == m.peer_id for d, fwd in pa.got):
                    heard.append((trio.current_time(), beats()))

        async def honest_traffic() -> None:  # something for a to gossip about
            i = 0
            while True:
                i += 1
                await b.publish(T, b"ok-b-%d" % i)
                await trio.sleep(HB / 2)

        n.start_soon(honest_traffic)
        n.start_soon(attacker_speaks)
        with trio.move_on_after((gossip_after + 30) * HB * timeout_factor()):
            while not (heard and [t for t in ihaves if t[0] > t0]):
                await trio.sleep(0.2 * HB)
        assert heard and [t for t in ihaves if t[0] > t0], (
            f"after {trio.current_time() - t0:.0f}s ({beats() - b0} heartbeats): heard again {bool(heard)}, IHAVEs "
            f"from a since the penalty {len([t for t in ihaves if t[0] > t0])}, score "
            f"{a.pubsub.score_of(m.peer_id, [T]):.1f}, m in a's mesh {m.peer_id in a.mesh_peers(T)}")
        assert set(a.connected_peers()) == {m.peer_id, b.peer_id} and b.peer_id not in m.connected_peers()
        t_heard, hb_heard = heard[0][0] - t0, heard[0][1] - b0
        t_gossip, hb_gossip = [(t - t0, hb - b0) for t, hb in ihaves if t > t0][0]
        print(f"[gossip] heard again after {hb_heard} heartbeats, {t_heard:.1f}s (stated {heard_after}); gossip "
              f"again after {hb_gossip} heartbeats, {t_gossip:.1f}s (stated {gossip_after}); publish drops "
              f"{a.pubsub.counters.get('publish_dropped')}")
        # the stated times, in heartbeats (as at 1 s: +-6 s and +-10 s) ...
        assert heard_after - 6 <= hb_heard <= heard_after + 6, (hb_heard, heard_after)
        assert gossip_after - 10 <= hb_gossip <= gossip_after + 10, (hb_gossip, gossip_after)
        # ... and the heartbeat kept its configured period (py-libp2p's adaptive gossip slowed it to 30-60 s)
        assert t_gossip <= 2 * HB * hb_gossip and hb_gossip * HB <= t_gossip + HB, (t_gossip, hb_gossip)
        assert a.pubsub.counters["publish_dropped"] >= 10  # muted meanwhile, and counted
        for x in (a, m, b):
            x.stop()
        n.cancel_scope.cancel()


async def test_a_negative_score_peer_is_pruned_from_the_mesh_at_the_heartbeat_and_its_graft_refused(tmp_path):
    async with trio.open_nursery() as n:
        pa = Probe()
        a = await n.start(run_host, cfg(tmp_path, "a"), [pa])
        m = await n.start(run_host, cfg(tmp_path, "m"), [Probe()])
        others = [await n.start(run_host, cfg(tmp_path, x), [Probe()]) for x in "bc"]
        for x in [m, *others]:
            await x.connect(a.listen_addrs[0])
        await wait_for(lambda: set(a.mesh_peers(T)) == {m.peer_id, *(o.peer_id for o in others)})

        await m.publish(T, b"bad-once")  # one REJECT: -10, above every threshold but below 0
        await wait_for(lambda: pa.verdicts.count("reject") == 1)
        assert -40 < a.pubsub.score_of(m.peer_id, [T]) < 0
        with trio.fail_after(2.5):  # the next heartbeat (1 s) prunes it
            while m.peer_id in a.mesh_peers(T):
                await trio.sleep(0.05)
        assert set(a.mesh_peers(T)) == {o.peer_id for o in others}
        await wait_for(lambda: a.peer_id not in m.mesh_peers(T))  # m got the PRUNE

        # the attacker GRAFTs itself back at once, as a hostile peer would: refused, it stays out
        await m.router.emit_graft(T, ID.from_base58(a.peer_id))
        for _ in range(30):
            await trio.sleep(0.1)
            assert m.peer_id not in a.mesh_peers(T)
        assert a.status()["peer_scores"][m.peer_id]["below"][:1] == ["mesh"]
        for x in (a, m, *others):
            x.stop()


async def test_our_protocols_are_not_opened_to_a_peer_that_did_not_list_them_in_identify(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="libp2p")
    async with trio.open_nursery() as n:
        asker = Probe(ask=True)
        a = await n.start(run_host, cfg(tmp_path, "a", pex_interval=1.0, dial_interval=0.5), [asker])
        # another implementation: libp2p with identify, ping and gossipsub, none of our protocols
        x = await n.start(run_host, cfg(tmp_path, "x"), [])
        x.host.remove_stream_handler(pex.PEX_PROTOCOL)
        await a.connect(x.listen_addrs[0])
        await wait_for(lambda: asker.responses)
        await trio.sleep(5.0)  # several peer-exchange rounds
        errors = stream_errors(caplog)
        assert errors == [], errors[:1]
        assert "does not speak" in asker.responses[0].error, asker.responses[0]
        assert a.peers.stats["pex_asked"] == 0 and a.peers.stats["skipped_unsupported"] >= 1, a.peers.stats

        # a peer that does speak them is asked as before
        b = await n.start(run_host, cfg(tmp_path, "b"), [Probe()])
        await a.connect(b.listen_addrs[0])
        await wait_for(lambda: any(r.peer == b.peer_id and r.data == b"answer" for r in asker.responses))
        await wait_for(lambda: a.peers.stats["pex_asked"] >= 1)
        for y in (a, x, b):
            y.stop()


async def test_a_peer_whose_identify_answer_comes_late_is_still_not_asked_on_protocols_it_did_not_list(tmp_path, caplog):
    """Under load identify came after the fixed wait (3 s): the request was then sent blind, to a peer that does
    not speak it (and a peer whose identify had not come within the wait was never waited for again). Here x
    answers identify 1 s after that wait: a's request, its peer exchange and its probe wait for the identify."""
    from node.runtime.node import IDENTIFY_WAIT

    caplog.set_level(logging.DEBUG, logger="libp2p")
    late = 3.0 + 1.0  # the old fixed wait, and a second more
    assert IDENTIFY_WAIT > late
    async with trio.open_nursery() as n:
        asker = Probe(ask=True, timeout=late + 5.0 * timeout_factor())  # (the request's budget covers the wait)
        a = await n.start(run_host, cfg(tmp_path, "a", pex_interval=1.0, dial_interval=0.5), [asker])
        x = await n.start(run_host, cfg(tmp_path, "x"), [])
        x.host.remove_stream_handler(pex.PEX_PROTOCOL)
        answer_identify_late(x, late)
        await a.connect(x.listen_addrs[0])
        await wait_for(lambda: asker.responses, late + 10.0)
        await trio.sleep(2.0)  # peer-exchange rounds after the identify
        errors = stream_errors(caplog)
        assert errors == [], errors[:1]
        assert "does not speak" in asker.responses[0].error, asker.responses[0]
        assert a.peers.stats["pex_asked"] == 0, a.peers.stats
        for y in (a, x):
            y.stop()


async def test_a_reconnected_peer_is_identified_again_and_not_asked_on_protocols_it_did_not_list(tmp_path, caplog):
    """py-libp2p skips identify of a peer whose protocols its peerstore still lists from an earlier connection,
    and forgets that the peer was identified when a connection closes: a reconnected peer stayed unidentified,
    and after the wait it was asked blind."""
    caplog.set_level(logging.DEBUG, logger="libp2p")
    async with trio.open_nursery() as n:
        asker = Probe(ask=True)
        a = await n.start(run_host, cfg(tmp_path, "a"), [asker])
        x = await n.start(run_host, cfg(tmp_path, "x"), [])
        await a.connect(x.listen_addrs[0])
        await wait_for(lambda: len(asker.responses) == 1)
        await a.disconnect(x.peer_id)
        await wait_for(lambda: x.peer_id not in a.connected_peers())
        await a.connect(x.listen_addrs[0], now=True)
        await wait_for(lambda: len(asker.responses) == 2)
        assert a.speaks(x.peer_id, ASKED) is False
        errors = stream_errors(caplog, "protocol not supported")  # (streams of the closed connection failed too)
        assert errors == [], errors[:1]
        assert all("does not speak" in r.error for r in asker.responses), asker.responses
        for y in (a, x):
            y.stop()


async def test_a_peer_whose_identify_never_starts_is_waited_for_once(tmp_path, monkeypatch):
    """The end of identify is an event; a peer whose identify never starts (py-libp2p gave up on the connection's
    start) would hold every request, peer exchange and probe for the whole wait: after one wait, none."""
    from node.runtime import node as node_module

    monkeypatch.setattr(node_module, "IDENTIFY_WAIT", 2.0)
    async with trio.open_nursery() as n:
        a = await n.start(run_host, cfg(tmp_path, "a"), [Probe()])
        x = await n.start(run_host, cfg(tmp_path, "x"), [])

        async def never(peer_id, *, reason):
            await trio.sleep_forever()

        a.host._identify_peer = never  # (under the node's own watch: it never hears of an end)
        await a.connect(x.listen_addrs[0])
        await wait_for(lambda: x.peer_id in a.connected_peers())
        t0 = trio.current_time()
        assert await a.will_speak(x.peer_id, ASKED, wait=2.0) is True  # not identified: asked as before
        t1 = trio.current_time()
        assert await a.will_speak(x.peer_id, ASKED, wait=2.0) is True
        t2 = trio.current_time()
        assert t1 - t0 >= 2.0 and t2 - t1 < 1.0, (t1 - t0, t2 - t1)
        for y in (a, x):
            y.stop()


async def test_a_request_whose_timeout_passes_before_identify_ends_fails_without_asking_blind(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="libp2p")
    async with trio.open_nursery() as n:
        asker = Probe(ask=True, timeout=1.0)
        a = await n.start(run_host, cfg(tmp_path, "a"), [asker])
        x = await n.start(run_host, cfg(tmp_path, "x"), [])
        answer_identify_late(x, 4.0)
        await a.connect(x.listen_addrs[0])
        await wait_for(lambda: asker.responses)
        assert "not identified within 1 s" in asker.responses[0].error, asker.responses[0]
        errors = stream_errors(caplog)
        assert errors == [], errors[:1]
        for y in (a, x):
            y.stop()

