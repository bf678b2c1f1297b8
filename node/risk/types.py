"""What the offer book hands the risk engine: one candidate chunk per offer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    offer_id: bytes  # 32 bytes: the offer's leaf hash in its sheet
    device_id: bytes  # 32 bytes: the attested enclave device
    owner_id: str  # peer id of the node that offered it
    device_class: str  # e.g. "sim", "sgx:ConfigurationAndSWHardeningNeeded"
    asset: str
    address: str
    amount: int  # smallest units
    usd_cents: int
    expiry: float
