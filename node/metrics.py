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
