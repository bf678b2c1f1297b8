"""Exposure caps: how much USD one device, one owner, one device class may hold.

"Exposure" is the USD value of counterparties' chunks this node is relying
on at a time (chunks in contracts that have not completed). The caps are
functions of reputation and bond:

* device: its class's limit at its score (``DeviceClass.limit_cents``), 0
  for a cheater, a revoked class, or a score under the acceptance threshold;
* owner: ``owner_multiple`` times the best limit among its devices, at most
  ``owner_max_cents`` (several devices under one owner do not multiply trust);
* class: ``ClassRegistry.class_cap_cents`` per class, 0 when revoked.

``headroom`` answers with the binding cap and ``check`` refuses naming it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from node.risk.classes import ClassRegistry
from node.risk.reputation import ACCEPT_THRESHOLD, Reputation


@dataclass(frozen=True)
class Refusal:
    cap: str  # device | owner | class | reputation | revoked
    limit_cents: int
    held_cents: int
    asked_cents: int
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Hold:
    """One exposure a contract holds: ``usd_cents`` riding on ``device`` (of ``owner``, in ``device_class``)."""

    device: bytes
    owner: str
    device_class: str
    usd_cents: int


#: where each cap's limit comes from (named in every refusal)
CAP_SETTING = {
    "device": "device class limit at its score: start_limit + growth x score, x the TCB weight "
              "(node/risk/classes.py, tcb_policy.toml)",
    "owner": "owner cap: CapPolicy.owner_multiple x its best device's limit, at most CapPolicy.owner_max_cents",
    "class": "class cap: ClassRegistry.class_cap_cents per device class",
}


@dataclass
class CapPolicy:
    owner_multiple: float = 2.0
    owner_max_cents: int = 2_000_000


@dataclass
class Exposure:
    """Exposure currently held, keyed by device, owner and class (USD cents)."""

    by_device: dict[bytes, int] = field(default_factory=lambda: defaultdict(int))
    by_owner: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_class: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    version: int = 0  # bumped on every add / remove

    def add(self, device: bytes, owner: str, dclass: str, cents: int) -> None:
        self.version += 1
        self.by_device[device] += cents
        self.by_owner[owner] += cents
        self.by_class[dclass] += cents

    def remove(self, device: bytes, owner: str, dclass: str, cents: int) -> None:
        self.version += 1
        for table, key in ((self.by_device, device), (self.by_owner, owner), (self.by_class, dclass)):
            table[key] = max(0, table[key] - cents)
            if table[key] == 0:
                del table[key]


class Caps:
    def __init__(self, reputation: Reputation, classes: ClassRegistry | None = None,
                 policy: CapPolicy | None = None, exposure: Exposure | None = None) -> None:
        self.reputation = reputation
        self.classes = classes or ClassRegistry()
        self.policy = policy or CapPolicy()
        self.exposure = exposure or Exposure()

    def state(self) -> tuple:
        """Everything the limits read besides reputation scores and time: exposure, revocations, class
        table, policy (equal states give equal limits for equal scores)."""
        c = self.classes
        return (self.exposure.version, tuple(c.revoked.items()), tuple(c.classes.items()),
                tuple(c.status_weights.items()), tuple(c.class_weights.items()), c.class_cap_cents,
                c.unknown_family, self.policy.owner_multiple, self.policy.owner_max_cents)

    def device_limit(self, device: bytes, dclass: str, now: float, memo: dict | None = None) -> tuple[int, str]:
        """(limit in cents, why it is what it is). ``memo``: a dict kept across calls at one ``now``
        with nothing changed in between (``RiskEngine.choose`` asks for the same devices many times)."""
        if memo is not None:
            hit = memo.get((device, dclass))
            if hit is not None:
                return hit
            klass = memo.get(dclass)
            if klass is None:
                klass = memo[dclass] = (self.classes.is_revoked(dclass), self.classes.resolve(dclass))
        else:
            klass = (self.classes.is_revoked(dclass), None)
        revoked = klass[0]
        if revoked:
            out = 0, f"device class {dclass} is revoked: {revoked}"
        elif self.reputation.is_cheater(device):
            out = 0, f"device {device.hex()[:16]} is a proven cheater"
        elif (score := self.reputation.score(device, now)) < ACCEPT_THRESHOLD:
            out = 0, f"device {device.hex()[:16]} score {score:.1f} is below the acceptance threshold {ACCEPT_THRESHOLD:g}"
        else:
            out = (klass[1] or self.classes.resolve(dclass)).limit_cents(score), f"class {dclass} at score {score:.1f}"
        if memo is not None:
            memo[(device, dclass)] = out
        return out

    def owner_limit(self, owner: str, now: float, fallback_class: str, memo: dict | None = None) -> int:
        key = (owner, fallback_class, "owner")
        if memo is not None and key in memo:
            return memo[key]
        devs = self.reputation.devices_of(owner)
        best = 0
        for rec in devs:
            best = max(best, self.device_limit(rec.device_id, rec.device_class, now, memo)[0])
        if not devs:
            best = self.classes.resolve(fallback_class).limit_cents(0.0)
        out = int(min(self.policy.owner_max_cents, best * self.policy.owner_multiple))
        if memo is not None:
            memo[key] = out
        return out

    def headroom(self, device: bytes, owner: str, dclass: str, now: float, memo: dict | None = None
                 ) -> tuple[int, Refusal | None]:
        """How many more cents may ride on this device now, and the cap that binds when 0
        (``memo`` as in ``device_limit``)."""
        dlim, why = self.device_limit(device, dclass, now, memo)
        held_d = self.exposure.by_device.get(device, 0)
        if dlim == 0:
            cap = "revoked" if self.classes.is_revoked(dclass) else "reputation"
            return 0, Refusal(cap, 0, held_d, 0, why)
        olim = self.owner_limit(owner, now, dclass, memo)
        held_o = self.exposure.by_owner.get(owner, 0)
        clim = self.classes.class_cap(dclass)
        held_c = self.exposure.by_class.get(dclass, 0)
        rooms = [(dlim - held_d, "device", dlim, held_d), (olim - held_o, "owner", olim, held_o),
                 (clim - held_c, "class", clim, held_c)]
        room, cap, lim, held = min(rooms, key=lambda r: r[0])
        room = max(0, room)
        refusal = None if room > 0 else Refusal(cap, lim, held, 0, f"{cap} cap reached: holds {held} of {lim} cents")
        return room, refusal

    def rooms(self, devices: list[tuple[bytes, str, str]], owners: list[str], now: float
              ) -> tuple[list[int], list[int]]:
        """``headroom`` of each (device, owner, class) and each owner's own room (its limit less what it
        holds), the numbers only, each limit computed once (what ``RiskEngine.choose`` needs): the same
        numbers as ``device_limit`` and ``owner_limit``, without their reasons."""
        rep, classes, pol = self.reputation, self.classes, self.policy
        half_life, record = rep.half_life, rep.record
        ex_d, ex_o, ex_c = self.exposure.by_device, self.exposure.by_owner, self.exposure.by_class
        klass: dict[str, tuple] = {}  # class -> (revoked, resolved class, class cap)
        dlims: dict[tuple[bytes, str], int] = {}
        olims: dict[str, int] = {}  # owners with known devices (their limit does not depend on a fallback)

        def kl(dclass: str) -> tuple:
            k = klass.get(dclass)
            if k is None:
                k = klass[dclass] = (classes.is_revoked(dclass), classes.resolve(dclass), classes.class_cap(dclass))
            return k

        def dlim(dev: bytes, dclass: str) -> int:  # device_limit's number
            v = dlims.get((dev, dclass))
            if v is None:
                k = kl(dclass)
                rec = record(dev)
                if k[0] or (rec is not None and rec.cheater):
                    v = 0
                else:
                    score = 0.0 if rec is None else rec.score_at(now, half_life)
                    v = 0 if score < ACCEPT_THRESHOLD else k[1].limit_cents(score)
                dlims[(dev, dclass)] = v
            return v

        def olim(owner: str, fallback: str) -> int:  # owner_limit's number
            v = olims.get(owner)
            if v is None:
                devs = rep.devices_of(owner)
                if not devs:
                    return int(min(pol.owner_max_cents, kl(fallback)[1].limit_cents(0.0) * pol.owner_multiple))
                best = max(0, max(dlim(r.device_id, r.device_class) for r in devs))
                v = olims[owner] = int(min(pol.owner_max_cents, best * pol.owner_multiple))
            return v

        out = []
        for dev, owner, dclass in devices:
            d = dlim(dev, dclass)
            out.append(0 if d == 0 else max(0, min(d - ex_d.get(dev, 0), olim(owner, dclass) - ex_o.get(owner, 0),
                                                   kl(dclass)[2] - ex_c.get(dclass, 0))))
        return out, [max(0, olim(o, "sim") - ex_o.get(o, 0)) for o in owners]

    def check(self, device: bytes, owner: str, dclass: str, cents: int, now: float) -> Refusal | None:
        """None if ``cents`` more fit under every cap; else the first cap that refuses."""
        room, refusal = self.headroom(device, owner, dclass, now)
        if refusal is not None and refusal.cap in ("revoked", "reputation"):
            return Refusal(refusal.cap, 0, refusal.held_cents, cents, refusal.reason)
        dlim, _ = self.device_limit(device, dclass, now)
        checks = [("device", dlim, self.exposure.by_device.get(device, 0)),
                  ("owner", self.owner_limit(owner, now, dclass), self.exposure.by_owner.get(owner, 0)),
                  ("class", self.classes.class_cap(dclass), self.exposure.by_class.get(dclass, 0))]
        for cap, lim, held in checks:
            if held + cents > lim:
                who = {"device": f"{owner[:12]}.. device {device.hex()[:12]}..", "owner": f"owner {owner}",
                       "class": f"class {dclass}"}[cap]
                return Refusal(cap, lim, held, cents,
                               f"{cap} cap: {who} would hold ${(held + cents) / 100:.2f} of ${lim / 100:.2f} "
                               f"allowed (holds ${held / 100:.2f}, asks ${cents / 100:.2f}; {CAP_SETTING[cap]})")
        return None
