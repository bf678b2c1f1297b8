"""Development tools: the demo (``keyswitch demo``), the local network of ``keyswitch dev`` and the tests,
the one process launcher they share (``localnet.spawn``, ``wait_for``, ``stop_all``, ``timeout_factor``),
the chains they start (anvil, litecoind and its regtest miner). Never loaded by a running node.
"""
