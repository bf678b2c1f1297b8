"""TCB policy: from a verified attestation ``Verdict`` to a device class and a risk weight.

The policy file (TOML; the shipped default is ``tcb_policy.toml`` beside this
module, commented) says, per TEE family, which platform TCB statuses are
accepted and at what weight, which are refused, which security advisories are
refused and which lower the weight by a factor.

* ``load_tcb_policy(path=None)`` reads and checks a policy file (the default
  when ``path`` is None). A bad file raises ``TcbPolicyError`` naming the key,
  the value and why it is wrong.
* ``classify(verdict, policy=None)`` gives a ``DeviceClassification``: the
  class name the offer book and the risk engine use (``"sgx"`` or
  ``"sgx:SWHardeningNeeded"``), the family, the status, the weight and, when
  the device is refused, the reason (weight 0).
* ``class_registry(policy)`` builds a ``node.risk.classes.ClassRegistry``
  whose per-status weights come from the policy.

The weight of a device is the status weight times the factor of each listed
advisory the platform is affected by. The risk engine's class registry keys
weights by class name only, so it holds the *status* weights; the advisory
factors are per device and live in the classification.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("tcb_policy.toml")

#: Verdict.vendor -> device family (the first part of a class name)
VENDOR_FAMILY = {
    "intel-sgx-dcap": "sgx",
    "intel-ias": "sgx",
    "intel-tdx-dcap": "tdx",
    "amd-sev-snp": "sev-snp",
    "aws-nitro": "nitro",
    "keyswitch-sim": "sim",
}
FAMILIES = ("sgx", "tdx", "sev-snp", "nitro", "sim")
#: verdict codes of the verifier's own TCB checks (it stops there, before debug and measurement)
TCB_CODES = frozenset({"tcb-status-refused", "advisory-refused"})

_KIND_KEYS = {"no_status", "refuse", "refuse_advisories", "accept", "advisories"}


class TcbPolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, key, value and why."""


@dataclass(frozen=True)
class KindPolicy:
    """The effective policy for one family ([default] with [kind.FAMILY] laid over it)."""

    no_status: float
    accept: dict[str, float]
    refuse: frozenset[str]
    refuse_advisories: frozenset[str]
    advisories: dict[str, float]


@dataclass(frozen=True)
class TcbPolicy:
    kinds: dict[str, KindPolicy]  # every family in FAMILIES
    default: KindPolicy  # [default] alone
    source: str = "<default>"

    def kind(self, family: str) -> KindPolicy | None:
        return self.kinds.get(family)

    def attestation_policy(self, base, family: str):
        """``base`` (an AttestationPolicy) with the TCB statuses and refused advisories of ``family``.

        So the verifier does not refuse a status this policy accepts, and the
        verdict reaches the debug and measurement checks.
        """
        from dataclasses import replace

        k = self.kinds[family]
        return replace(base, accept_tcb=frozenset(k.accept), refuse_advisories=k.refuse_advisories)


@dataclass(frozen=True)
class DeviceClassification:
    class_name: str  # "family" or "family:TCBStatus"
    family: str
    status: str  # the TCB status ("" when the format has none)
    weight: float  # 0 when refused
    refused_reason: str | None = None
    advisories: tuple[str, ...] = ()
    factors: dict[str, float] = field(default_factory=dict)  # advisory -> factor applied

    @property
    def accepted(self) -> bool:
        return self.refused_reason is None


# --- loading -----------------------------------------------------------------------------------------


def _err(source: str, key: str, value: Any, why: str) -> TcbPolicyError:
    return TcbPolicyError(f"{source}: {key} = {value!r}: {why}")


def _weight(source: str, key: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(source, key, value, "must be a number")
    v = float(value)
    low_ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and low_ok and v <= 1):
        rng = "0 <= weight <= 1" if allow_zero else "0 < weight <= 1 (to refuse, list it under refuse)"
        raise _err(source, key, value, f"out of range: needs {rng}")
    return v


def _str_list(source: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise _err(source, key, value, "must be a list of non-empty strings")
    return list(value)


def _weights_table(source: str, key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _err(source, key, value, "must be a table of name = weight")
    return {name: _weight(source, f"{key}.{name}", w) for name, w in value.items()}


def _check_kind_table(source: str, prefix: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _err(source, prefix, table, "must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}.{key}"
        if key not in _KIND_KEYS:
            raise _err(source, full, value, f"unknown key (known: {', '.join(sorted(_KIND_KEYS))})")
        if key == "no_status":
            out[key] = _weight(source, full, value, allow_zero=True)
        elif key in ("refuse", "refuse_advisories"):
            out[key] = _str_list(source, full, value)
        else:
            out[key] = _weights_table(source, full, value)
    return out


def _merge(source: str, family: str, base: dict[str, Any], over: dict[str, Any]) -> KindPolicy:
    accept = dict(base.get("accept", {}))
    refuse = set(base.get("refuse", []))
    for status in over.get("refuse", []):
        accept.pop(status, None)
        refuse.add(status)
    for status, w in over.get("accept", {}).items():
        refuse.discard(status)
        accept[status] = w
    for status in set(accept) & refuse:  # only possible within [default] itself
        raise _err(source, "default.accept / default.refuse", status, "status is both accepted and refused")
    advisories = {**base.get("advisories", {}), **over.get("advisories", {})}
    refuse_adv = frozenset(base.get("refuse_advisories", [])) | frozenset(over.get("refuse_advisories", []))
    return KindPolicy(no_status=over.get("no_status", base.get("no_status", 1.0)), accept=accept,
                      refuse=frozenset(refuse), refuse_advisories=refuse_adv, advisories=advisories)


def parse_tcb_policy(text: str, source: str = "<string>") -> TcbPolicy:
    """A ``TcbPolicy`` from TOML text. Raises ``TcbPolicyError`` with the key, the value and why."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TcbPolicyError(f"{source}: not valid TOML: {exc}") from None
    for key, value in doc.items():
        if key not in ("version", "default", "kind"):
            raise _err(source, key, value, "unknown top-level key (known: version, default, kind)")
    if doc.get("version") != 1:
        raise _err(source, "version", doc.get("version"), "this node reads TCB policy version 1")
    default = _check_kind_table(source, "default", doc.get("default", {}))
    kinds_doc = doc.get("kind", {})
    if not isinstance(kinds_doc, dict):
        raise _err(source, "kind", kinds_doc, "must be a table of [kind.FAMILY] tables")
    kinds: dict[str, KindPolicy] = {}
    for family, table in kinds_doc.items():
        if family not in FAMILIES:
            raise _err(source, f"kind.{family}", table, f"unknown family (known: {', '.join(FAMILIES)})")
        kinds[family] = _merge(source, family, default, _check_kind_table(source, f"kind.{family}", table))
    for family in FAMILIES:
        kinds.setdefault(family, _merge(source, family, default, {}))
    return TcbPolicy(kinds=kinds, default=_merge(source, "default", default, {}), source=source)


def load_tcb_policy(path: str | Path | None = None) -> TcbPolicy:
    """The policy in ``path``, or the shipped default (``tcb_policy.toml``) when None."""
    p = DEFAULT_PATH if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TcbPolicyError(f"{p}: cannot read the TCB policy: {exc}") from None
    return parse_tcb_policy(text, str(p))


@lru_cache(maxsize=1)
def default_tcb_policy() -> TcbPolicy:
    return load_tcb_policy(None)


# --- classifying -------------------------------------------------------------------------------------


def class_name_of(family: str, status: str) -> str:
    return f"{family}:{status}" if status else family


def classify(verdict, policy: TcbPolicy | None = None) -> DeviceClassification:
    """The device class and weight of the device a ``Verdict`` attests to. Never raises.

    Refused (weight 0, with the reason): evidence that is not genuine, a
    vendor of no known family, a status the policy refuses or does not name,
    a refused advisory, and evidence the verifier did not trust for another
    reason (debug, a measurement that is not a Keyswitch build, stale).
    """
    policy = policy or default_tcb_policy()
    status = verdict.tcb_status or ""
    advisories = tuple(verdict.advisories)
    family = VENDOR_FAMILY.get(verdict.vendor, "unknown")
    name = class_name_of(family, status)

    def refused(reason: str) -> DeviceClassification:
        return DeviceClassification(name, family, status, 0.0, reason, advisories)

    if not verdict.genuine:
        return refused(f"evidence is not genuine ({verdict.code}): {verdict.reason}")
    kind = policy.kind(family)
    if kind is None:
        return refused(f"vendor {verdict.vendor!r} has no device family in the TCB policy")
    if not status:
        weight = kind.no_status
        if weight <= 0:
            return refused(f"the TCB policy gives family {family} weight 0 ({policy.source})")
    elif status in kind.refuse:
        return refused(f"TCB status {status} is refused for {family} by the TCB policy")
    elif status not in kind.accept:
        return refused(f"TCB status {status} is not named in the TCB policy for {family}, so refused")
    else:
        weight = kind.accept[status]
    bad = sorted(set(advisories) & kind.refuse_advisories)
    if bad:
        return refused(f"advisories refused for {family} by the TCB policy: {', '.join(bad)}")
    factors = {a: kind.advisories[a] for a in advisories if a in kind.advisories}
    for f in factors.values():
        weight *= f
    if verdict.code in TCB_CODES:
        # the verifier stopped at its own TCB check, before the debug and measurement checks
        return refused(f"the attestation policy refused it ({verdict.code}: {verdict.reason}), so debug and "
                       "measurement were not checked; verify with TcbPolicy.attestation_policy(...)")
    if not verdict.ok:
        return refused(f"evidence is genuine but not trusted ({verdict.code}): {verdict.reason}")
    return DeviceClassification(name, family, status, round(weight, 6), None, advisories, factors)


# --- the risk engine's class registry ----------------------------------------------------------------


def class_registry(policy: TcbPolicy | None = None, **kwargs):
    """A ``ClassRegistry`` whose TCB-status weights come from ``policy``.

    ``status_weights`` are [default]'s (accepted statuses at their weight,
    refused ones at 0, no status at ``no_status``); where a family's weights
    differ, ``class_weights`` holds them by full class name
    (``"sgx:SWHardeningNeeded"``, or ``"sim"`` for a family's no-status
    weight). Advisory factors are per device: see ``classify``.
    """
    from node.risk.classes import ClassRegistry

    policy = policy or default_tcb_policy()
    every_status = set()
    for k in policy.kinds.values():
        every_status |= set(k.accept) | set(k.refuse)

    def weights(k: KindPolicy) -> dict[str, float]:
        w = {s: 0.0 for s in k.refuse}
        w.update(k.accept)
        w[""] = k.no_status
        return w

    base = weights(policy.default)
    class_weights: dict[str, float] = {}
    for family, k in policy.kinds.items():
        fw = weights(k)
        for status in every_status | {""}:
            w = fw.get(status, 0.0)
            if w != base.get(status, 0.0):
                class_weights[class_name_of(family, status)] = w
    return ClassRegistry.with_weights(base, class_weights, **kwargs)

