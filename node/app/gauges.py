"""The node's gauges and counters for ``/metrics`` (``node.metrics.NodeMetrics``), from what its parts count.

``GaugeExporter.tick()`` (the daemon calls it every second) reads the runtime, the offer book and the protocols'
own counters and exports them: gauges are set, counters grow by what changed since the last tick. The protocols
never touch metrics themselves.
"""

from __future__ import annotations


class GaugeExporter:
    def __init__(self, metrics, node, stack, clock) -> None:
        self.metrics, self.node, self.stack, self.clock = metrics, node, stack, clock
        self.exported: dict[tuple[str, str], int] = {}
        self.ticks = 0

    def tick(self) -> None:
        m = self.metrics
        topic = self.stack.protocol.topic
        m.peers.set(len(self.node.connected_peers()))
        m.set_gossip(self.node.gossip_health(), self.node.pubsub.counters if self.node.pubsub else {})
        m.offers.labels(asset="all").set(self.stack.book.count(now=self.clock.now()))
        counts = {("accept", ""): self.stack.protocol.stats["accept"]}
        for result, reasons in self.stack.protocol.reasons.items():
            for reason, n in reasons.items():
                counts[(result, reason)] = n
        for (result, reason), n in counts.items():
            delta = n - self.exported.get((result, reason), 0)
            if delta > 0:
                m.gossip.labels(topic=topic, direction="in", result=result, reason=reason).inc(delta)
                self.exported[(result, reason)] = n
        for event, n in self.stack.rfp.stats.items():
            m.requests.labels(event=event).set(n)
        m.revocations.set(len(self.stack.revocations.applied))
        states: dict[str, int] = {"proposed": 0, "running": 0, "done": 0, "withheld": 0, "failed": 0}
        desk = self.stack.desk
        swaps = [r for r in list(desk.run.runs.values()) if desk.is_swap(r.spec)]  # (handles run on a worker thread)
        for c in swaps:
            states[c.rec.state] = states.get(c.rec.state, 0) + 1
        for st_, n in states.items():
            m.contracts.labels(state=st_).set(n)
        totals: dict[tuple[str, str], int] = {("releases", ""): 0}
        for c in swaps:
            if c.outcome is not None:
                totals[("releases", "")] += c.outcome.released
                for ch in c.outcome.chunks:
                    if ch.status in ("claimed", "double-spent", "kept"):
                        totals[("claims", ch.status)] = totals.get(("claims", ch.status), 0) + 1
        for kind, n in self.stack.outcomes.by_kind.items():
            totals[("outcomes", kind)] = n
        for (what, label), n in totals.items():
            delta = n - self.exported.get((what, label), 0)
            if delta > 0:
                self.exported[(what, label)] = n
                if what == "releases":
                    m.releases.inc(delta)
                elif what == "claims":
                    m.claims.labels(result=label).inc(delta)
                else:
                    m.outcomes.labels(kind=label).inc(delta)
        if self.ticks % 10 == 0:  # the reputation table can be large: every 10 s
            now = self.clock.now()
            recs = self.stack.engine.reputation.devices()
            half_life = self.stack.engine.reputation.half_life
            m.set_reputation([r.score_at(now, half_life) for r in recs if not r.cheater],
                             sum(1 for r in recs if r.cheater))
        self.ticks += 1
