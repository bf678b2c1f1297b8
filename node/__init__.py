"""Keyswitch: contracts between holders of any crypto-asset, enforced by TEEs.

Layers (docs/architecture.md, "Where the code lives"): the primitives are this package's own modules
(``wire``, ``crypto``, ``clock``, ``config``, ...); ``node.protocols``, ``node.risk`` and ``node.contracts`` are
sans-IO; ``node.enclave`` is the trusted code a TEE measures, ``node.attest`` verifies attestations and
``node.tee`` is the host side of the enclave; ``node.ledger`` reaches ledgers; ``node.runtime`` and
``node.api`` do network I/O with trio and py-libp2p; ``node.app`` composes the node, ``node.cli`` and
``node.dev`` (the demo, the local network) sit on top.
"""

__version__ = "0.1.0"
