"""Attestation verification: what a quote proves and whether to trust it.

``verdict`` (one answer type), ``evidence`` (every vendor format: DCAP, Nitro, SEV-SNP, IAS), ``simquote``
(the simulated backend's quotes), ``binding`` (what a quote's report data vouches for), ``policy`` (what
this node trusts), ``tcb_policy`` (a verdict's device class and risk weight). Pure: the time and the
policy are passed in. All but ``tcb_policy`` belong to the enclave's measured code (it verifies peers).
"""
