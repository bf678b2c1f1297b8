"""The enclave boundary.

``node.enclave`` is the *trusted* side (the code that is measured and
runs inside the TEE, or in a separate OS process for the simulated backend).
Everything else in ``node.tee`` is the untrusted host side: the client that
talks to the enclave, and verifiers of attestation evidence.
"""
