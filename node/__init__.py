"""Keyswitch: contracts between holders of any crypto-asset, enforced by TEEs.

Layers (see DESIGN.md section 2): ``node.protocols``, ``node.risk`` and
``node.contracts`` are sans-IO; ``node.tee`` is the enclave boundary;
``node.ledger`` reaches ledgers; only ``node.runtime`` and ``node.api`` do
network I/O with trio and py-libp2p.
"""

__version__ = "0.1.0"
