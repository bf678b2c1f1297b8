"""The TEE host side: the untrusted host's view of the enclave.

``client`` talks to the enclave (a separate process, or in-process for the simulator and fast tests),
``backends`` chooses and checks the hardware backend, ``broken`` simulates a broken TEE for demonstrations,
``gramine`` renders and signs the SGX manifest. The trusted side is ``node.enclave`` (measured, it imports
nothing of this package); attestation verification is ``node.attest``.
"""
