"""What this node is willing to trust in attestation evidence.

An ``AttestationPolicy`` is plain data handed to every verifier; verifiers
never read configuration or the clock themselves. ``AttestationPolicy.dev()``
is the development policy: simulated enclaves allowed (they are INSECURE: the
simulated vendor root's private key derives from a public constant), and the
measurement of this checkout's enclave code on the allow-list.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class AttestationPolicy:
    #: hex measurements of released Keyswitch builds (MRENCLAVE, MRTD, PCR0,
    #: SNP MEASUREMENT or the simulated code hash), lower-case.
    allowed_measurements: frozenset[str] = frozenset()
    #: accept the simulated backend at all (development and simulations only)
    allow_simulated: bool = True
    #: accept debug enclaves (never in production: their memory is readable)
    allow_debug: bool = False
    #: hex compressed public keys of simulated "vendor" roots we accept
    sim_vendor_roots: frozenset[str] = frozenset()
    #: TCB statuses accepted for real hardware evidence; anything else is
    #: refused with code "tcb-status-refused" (a later TCB policy maps these
    #: onto device classes and weights).
    accept_tcb: frozenset[str] = frozenset(
        {"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"}
    )
    #: advisory ids refused outright even when the status is accepted
    refuse_advisories: frozenset[str] = frozenset()
    #: maximum age (seconds) of a quote's freshness stamp, where the format has one
    max_quote_age: float = 7 * 24 * 3600.0

    def allows_measurement(self, measurement_hex: str) -> bool:
        return measurement_hex.lower() in self.allowed_measurements

    def with_measurements(self, *hexes: str) -> "AttestationPolicy":
        return replace(self, allowed_measurements=self.allowed_measurements | {h.lower() for h in hexes})

    @classmethod
    def dev(cls) -> "AttestationPolicy":
        """Development policy: the simulated vendor root and this checkout's enclave build."""
        from node.attest import simquote  # local import: simquote imports policy

        return cls(
            allowed_measurements=frozenset({simquote.code_measurement().lower()}),
            allow_simulated=True,
            sim_vendor_roots=frozenset({simquote.dev_vendor_root_pubkey().hex()}),
        )
