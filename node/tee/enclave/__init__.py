"""The enclave's trusted core.

This package is the code a TEE would measure and run: deposit key generation,
sealed storage (keys, the release journal, a monotonic counter), quote
production, offer-sheet and domain signing, ECIES key release and acceptance,
and the export of a key to its owner. It imports only pure libraries
(coincurve, cryptography, msgspec, lark) and the project modules of its
trusted code set (``measure.TRUSTED_CODE``: this package, ``node.crypto``,
``node.wire``, ``node.contracts``, the bindings and attestation verifiers),
all of them measured; never host code (``node.tee.client``, the runtime,
the config), trio, libp2p or the network. ``tests/test_layering.py`` holds it
to that.

The *simulated* backend runs it as a separate OS process
(``python -m node.tee.enclave --datadir D``) speaking a narrow, versioned
request/response protocol over stdin/stdout (``node.tee.enclave.messages``).
It is INSECURE: its sealing key comes from a file in the data directory and
its "vendor" root key derives from a public constant, so anyone can forge its
quotes. It demonstrates the boundary and the journal, not hardware secrecy.
"""
