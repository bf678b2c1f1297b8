"""Prometheus metrics, one registry per node (many nodes can share a process).

``NodeMetrics()`` owns a fresh ``CollectorRegistry``; the daemon serves
``render()`` at ``/metrics`` (see ``node.api``). Protocol code never touches
metrics directly: the runtime counts what the protocols' commands and
validations say, so the sans-IO layers stay free of I/O and globals.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
        self.reputation = Histogram(
            "keyswitch_reputation", "Reputation scores of known devices",
            buckets=(-100, -50, -10, 0, 10, 50, 100), registry=r,
        )
        self.api_requests = Counter("keyswitch_api_requests", "Local API requests", ["path", "status"], registry=r)

    def gossip_in(self, topic: str, result: str, reason: str = "") -> None:
        self.gossip.labels(topic=topic, direction="in", result=result, reason=reason[:60]).inc()

    def gossip_out(self, topic: str) -> None:
        self.gossip.labels(topic=topic, direction="out", result="sent", reason="").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


SAMPLE_SCRAPE_CONFIG = """\
# prometheus.yml fragment: scrape a local Keyswitch node started with --metrics-port 9464
scrape_configs:
  - job_name: keyswitch
    scrape_interval: 15s
    static_configs:
      - targets: ["127.0.0.1:9464"]
"""
