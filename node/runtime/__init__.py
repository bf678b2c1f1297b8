"""node.runtime: the only package (with node.api) that does network I/O.

* ``Node`` / ``NodeConfig`` (``node.runtime.node``): a py-libp2p host over
  TCP + Noise + Yamux with identify, ping, gossipsub and peer management
  (bootnodes, peer exchange, target peer count, backoff, re-bootstrap).
* ``run_host(config, protocols, *, clock=None, on_notify=None, task_status)``
  (``node.runtime.driver``): runs a node and drives sans-IO protocols on it;
  ``task_status.started(node)``; ``node.driver`` is the ``ProtocolDriver``,
  whose ``submit(protocol, fn)`` lets the application act through a protocol, and
  ``await call(protocol, fn, timeout=...)`` awaits such a call's value (a call
  not taken in time is withdrawn and never runs: ``node.runtime.calls``).
* ``python -m node.runtime``: a stand-alone node process (functional tests,
  benchmarks); ``python -m bootstrap``: a bootstrap node.

Plugging a protocol in::

    cfg = node.config.load(datadir)
    protos = [OffersProtocol(...)]
    node = await nursery.start(run_host, cfg, protos)        # listening, topics joined
    node.driver.submit(protos[0], lambda now: protos[0].something(now))  # -> commands
    ...
    node.stop()                                               # graceful shutdown

``NodeConfig(app_score=fn)``: ``fn(peer_id) -> float`` is the local
reputation added to the peer's gossipsub score (P6, weight 1).
"""

from node.runtime.driver import ProtocolDriver, run_host
from node.runtime.node import Node, NodeConfig

__all__ = ["Node", "NodeConfig", "ProtocolDriver", "run_host"]
