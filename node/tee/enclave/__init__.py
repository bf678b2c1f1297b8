"""The enclave's trusted core.

This package is the code a TEE would measure and run: deposit key generation,
sealed storage (keys, the release journal, a monotonic counter), quote
production, offer-sheet and domain signing, ECIES key release and acceptance,
and the export of a key to its owner. It imports only pure libraries
(coincurve, cryptography, msgspec) and ``node.crypto`` / ``node.wire``; never
trio, libp2p or the network.

The *simulated* backend runs it as a separate OS process
(``python -m node.tee.enclave --datadir D``) speaking a narrow, versioned
request/response protocol over stdin/stdout (``node.tee.enclave.messages``).
It is INSECURE: its sealing key comes from a file in the data directory and
its "vendor" root key derives from a public constant, so anyone can forge its
quotes. It demonstrates the boundary and the journal, not hardware secrecy.
"""
