"""One verdict type for every kind of attestation evidence.

A verdict separates three questions:

* ``genuine``: is the evidence cryptographically sound and rooted in a
  trusted vendor root, within its validity window at ``verified_at``?
* ``allowed_build``: is the measured code a released Keyswitch build?
* ``ok``: may this node trust the enclave (genuine, allowed build, not debug,
  binding matches, fresh)?

So "a genuine vendor quote whose measurement is not a Keyswitch build"
(``genuine=True, ok=False, code="measurement-not-allowed"``) is distinct from
a forgery (``genuine=False``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    ok: bool
    genuine: bool
    code: str  # machine-readable reason code; "ok" when ok
    reason: str  # one human-readable line
    vendor: str  # keyswitch-sim | intel-sgx-dcap | intel-tdx-dcap | aws-nitro | amd-sev-snp | intel-ias
    verified_at: str  # ISO-8601 UTC time the evidence was checked as of
    simulated: bool = False
    measurement: str = ""  # hex (MRENCLAVE, MRTD, PCR0, SNP MEASUREMENT, or sim code hash)
    debug: bool | None = None
    tcb_status: str = ""
    advisories: tuple[str, ...] = ()
    report_data: str = ""  # hex
    allowed_build: bool | None = None
    device_id: str = ""  # hex id of the attested device, where known
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["advisories"] = list(self.advisories)
        return d

    def headline(self) -> str:
        if self.ok:
            return f"TRUSTED ({self.vendor})"
        if self.genuine:
            return f"GENUINE, NOT TRUSTED ({self.vendor}): {self.reason}"
        return f"REFUSED ({self.vendor}): {self.reason}"
