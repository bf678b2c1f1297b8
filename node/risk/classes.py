"""Device classes: what a device identity costs, and so how far it is trusted.

A class name is ``family`` or ``family:tcb-status`` (as the offer book records
it, e.g. ``sgx:ConfigurationAndSWHardeningNeeded``). The family's bond (the
price of the hardware: an SGX server, a Knox phone, a SIM) sets a new
device's starting exposure limit and how fast the limit grows with
reputation. Revoking a class (a broken TEE model), either a whole family or a
family at one TCB status, drops its limits to zero at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceClass:
    family: str
    bond_usd: float  # what one device identity costs
    start_limit_cents: int  # exposure a brand-new device may hold
    growth_cents_per_point: int  # extra limit per point of positive reputation
    max_limit_cents: int
    weight: float = 1.0  # TCB-status weight (a hardening-needed platform trusted less)

    def limit_cents(self, score: float) -> int:
        if self.weight <= 0:
            return 0
        raw = self.start_limit_cents + self.growth_cents_per_point * max(0.0, score)
        return int(min(self.max_limit_cents, raw) * self.weight)


#: the embedded defaults; the bond sets where a device starts (one $50 chunk
#: for a dev simulation, a few for hardware) and how fast it grows
DEFAULT_CLASSES: dict[str, DeviceClass] = {
    "sim": DeviceClass("sim", bond_usd=0.0, start_limit_cents=10_000, growth_cents_per_point=1_000,
                       max_limit_cents=100_000),
    "sim-card": DeviceClass("sim-card", bond_usd=10.0, start_limit_cents=5_000, growth_cents_per_point=200,
                            max_limit_cents=20_000),
    "knox": DeviceClass("knox", bond_usd=300.0, start_limit_cents=15_000, growth_cents_per_point=2_000,
                        max_limit_cents=250_000),
    "sgx": DeviceClass("sgx", bond_usd=2_000.0, start_limit_cents=25_000, growth_cents_per_point=5_000,
                       max_limit_cents=1_000_000),
    "tdx": DeviceClass("tdx", bond_usd=5_000.0, start_limit_cents=25_000, growth_cents_per_point=5_000,
                       max_limit_cents=1_000_000),
    "sev-snp": DeviceClass("sev-snp", bond_usd=5_000.0, start_limit_cents=25_000, growth_cents_per_point=5_000,
                           max_limit_cents=1_000_000),
    "nitro": DeviceClass("nitro", bond_usd=500.0, start_limit_cents=20_000, growth_cents_per_point=3_000,
                         max_limit_cents=500_000),
}
#: TCB statuses below "UpToDate" that are accepted, at a lower weight
DEFAULT_STATUS_WEIGHTS = {"": 1.0, "UpToDate": 1.0, "SWHardeningNeeded": 0.75,
                          "ConfigurationNeeded": 0.75, "ConfigurationAndSWHardeningNeeded": 0.5}


def split_class(name: str) -> tuple[str, str]:
    family, _, status = name.partition(":")
    return family, status


@dataclass
class ClassRegistry:
    classes: dict[str, DeviceClass] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    status_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STATUS_WEIGHTS))
    #: revoked class names: a family ("sgx") or one status of it ("sgx:OutOfDate")
    revoked: dict[str, str] = field(default_factory=dict)
    #: per class (full name) cap on the total exposure all its devices may hold
    class_cap_cents: int = 5_000_000
    unknown_family: DeviceClass = DeviceClass("unknown", 0.0, 5_000, 0, 5_000)
    #: weights by full class name ("sgx:SWHardeningNeeded", or "sim" for a family
    #: without a status), taking precedence over ``status_weights``; empty by default
    class_weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def with_weights(cls, status_weights: dict[str, float], class_weights: dict[str, float] | None = None,
                     **kwargs) -> "ClassRegistry":
        """A registry with the given TCB-status weights (e.g. from a TCB policy file,
        ``node.attest.tcb_policy.class_registry``) instead of ``DEFAULT_STATUS_WEIGHTS``."""
        return cls(status_weights=dict(status_weights), class_weights=dict(class_weights or {}), **kwargs)

    def revoke(self, name: str, reason: str) -> None:
        self.revoked[name] = reason

    def is_revoked(self, name: str) -> str | None:
        """The revocation reason if ``name`` (or its family) is revoked, else None."""
        family, _ = split_class(name)
        return self.revoked.get(name) or self.revoked.get(family)

    def resolve(self, name: str) -> DeviceClass:
        """The class with its TCB-status weight applied; weight 0 when revoked or unknown status."""
        family, status = split_class(name)
        base = self.classes.get(family, self.unknown_family)
        if self.is_revoked(name):
            weight = 0.0
        elif name in self.class_weights:
            weight = self.class_weights[name]
        else:
            weight = self.status_weights.get(status, 0.0)
        return DeviceClass(base.family, base.bond_usd, base.start_limit_cents, base.growth_cents_per_point,
                           base.max_limit_cents, weight)

    def class_cap(self, name: str) -> int:
        return 0 if self.is_revoked(name) else self.class_cap_cents
