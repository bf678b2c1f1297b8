"""node.runtime: the only package (with node.api) that does network I/O.

* ``Node`` / ``NodeConfig`` (``node.runtime.node``): a py-libp2p host over
  TCP + Noise + Yamux with identify, ping, gossipsub and peer management.
* ``run_host(config, protocols, *, task_status)`` (``node.runtime.driver``):
  runs a node and drives sans-IO protocols on it; ``ProtocolDriver``.
* ``python -m node.runtime``: a stand-alone node process (used by the
  functional tests and benchmarks); ``python -m bootstrap``: a bootstrap node.
"""

from node.runtime.driver import ProtocolDriver, run_host
from node.runtime.node import Node, NodeConfig

__all__ = ["Node", "NodeConfig", "ProtocolDriver", "run_host"]
