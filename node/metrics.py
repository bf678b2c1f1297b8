"""Prometheus metrics, one registry per node (many nodes can share a process).

``NodeMetrics()`` owns a fresh ``CollectorRegistry``; the daemon serves
``render()`` at ``/metrics`` (see ``node.api``). Protocol code never touches
metrics directly: the runtime counts what the protocols' commands and
validations say, so the sans-IO layers stay free of I/O and globals.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.peers = Gauge("keyswitch_peers", "Connected libp2p peers", registry=r)
        self.gossip = Counter(
            "keyswitch_gossip_messages", "Gossip messages by direction and validation result",
            ["topic", "direction", "result", "reason"], registry=r,
        )
        self.offers = Gauge("keyswitch_offers_in_book", "Valid offers in the offer book", ["asset"], registry=r)
        self.contracts = Gauge("keyswitch_contracts", "Contracts by state", ["state"], registry=r)
        self.releases = Counter("keyswitch_key_releases", "Keys released by this node's enclave", registry=r)
        self.claims = Counter("keyswitch_claims", "Received keys swept (claimed)", ["result"], registry=r)
        self.outcomes = Counter("keyswitch_outcomes", "Outcome reports seen", ["kind"], registry=r)
        self.reputation = Gauge("keyswitch_reputation_devices", "Known devices by reputation band (score range)",
                                ["band"], registry=r)
        self.requests = Gauge("keyswitch_requests", "Requests for proposals, by what happened to them",
                              ["event"], registry=r)
        self.revocations = Gauge("keyswitch_revocations_applied", "Revocation notices acted on", registry=r)
        # gossipsub peer scores (issue #23): one series per connected peer, replaced at every update
        self.peer_score = Gauge("keyswitch_gossip_peer_score", "Gossipsub score of a connected peer", ["peer"],
                                registry=r)
        self.peer_score_component = Gauge("keyswitch_gossip_peer_score_component",
                                          "Gossipsub score components of a connected peer (P1..P7, as summed)",
                                          ["peer", "component"], registry=r)
        self.gossip_dropped = Gauge("keyswitch_gossip_dropped",
                                    "Messages dropped unvalidated: sender below the publish or graylist threshold",
                                    ["reason"], registry=r)
        self.gossip_router = Gauge("keyswitch_gossip_router_events",
                                   "Gossipsub router events: heartbeats, negative-score peers pruned, GRAFTs refused, "
                                   "graylisted RPCs ignored", ["event"], registry=r)
        self.api_requests = Counter("keyswitch_api_requests", "Local API requests", ["path", "status"], registry=r)

    def gossip_in(self, topic: str, result: str, reason: str = "") -> None:
        self.gossip.labels(topic=topic, direction="in", result=result, reason=reason[:60]).inc()

    def gossip_out(self, topic: str) -> None:
        self.gossip.labels(topic=topic, direction="out", result="sent", reason="").inc()

    def set_reputation(self, scores: list[float], cheaters: int = 0) -> None:
        """Set the band gauges from the current scores (every band present, so absent ones read 0)."""
        counts = {b: 0 for b, _, _ in REPUTATION_BANDS}
        for sc in scores:
            for band, lo, hi in REPUTATION_BANDS:
                if lo <= sc < hi:
                    counts[band] += 1
                    break
        counts["cheater"] = cheaters
        for band, n in counts.items():
            self.reputation.labels(band=band).set(n)

    def set_gossip(self, health: dict, counters: dict) -> None:
        """From ``Node.gossip_health()`` and ``KsPubsub.counters``: scores of the peers connected now only."""
        self.peer_score.clear()
        self.peer_score_component.clear()
        for peer, row in health.get("peer_scores", {}).items():
            self.peer_score.labels(peer=peer).set(row["score"])
            for comp, v in row.get("score_components", {}).items():
                self.peer_score_component.labels(peer=peer, component=comp).set(v)
        self.gossip_dropped.labels(reason="publish_threshold").set(counters.get("publish_dropped", 0))
        self.gossip_dropped.labels(reason="graylist").set(counters.get("graylist_dropped", 0))
        for event, n in health.get("router", {}).items():
            self.gossip_router.labels(event=event).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


REPUTATION_BANDS = (("cheater", float("-inf"), float("-inf")), ("[-100,-20)", -100.0, -20.0),
                    ("[-20,0)", -20.0, 0.0), ("[0,10)", 0.0, 10.0), ("[10,50)", 10.0, 50.0),
                    ("[50,100]", 50.0, 100.000001))

SAMPLE_SCRAPE_CONFIG = """\
# prometheus.yml fragment: scrape a local Keyswitch node started with --metrics-port 9464
scrape_configs:
  - job_name: keyswitch
    scrape_interval: 15s
    static_configs:
      - targets: ["127.0.0.1:9464"]
"""
