"""A scenario's pass criteria and the run's verdict: which keys a ``[criteria]`` table may hold, the figures
they bound (from a run's ``summary.json``), and pass or fail per criterion. Its own module so that a scenario
is checked (``simulations.scenario``) without loading the report and its plots."""

from __future__ import annotations

import re

def kinds_of(summary: dict) -> dict[str, dict]:
    """exposure.<kind> tables (honest, sybil, ...): devices, devices_used, peak_total_cents_sum."""
    ex = summary.get("exposure") or {}
    return {k: v for k, v in ex.items() if isinstance(v, dict) and "devices" in v}


def business_cents(summary: dict) -> dict[str, int]:
    """Business per kind of device: the sum over its devices of their peak exposure (USD cents held for clients)."""
    return {k: int(v.get("peak_total_cents_sum", 0)) for k, v in kinds_of(summary).items()}


def adversary_business_share(summary: dict) -> float | None:
    b = business_cents(summary)
    total = sum(b.values())
    return None if total == 0 else sum(v for k, v in b.items() if k != "honest") / total


def honest_loss_share(summary: dict) -> float | None:
    total = sum(business_cents(summary).values())
    lost = (summary.get("fees") or {}).get("honest_losses_cents", 0) or 0
    return None if total == 0 else lost / total


def honest_devices_used_share(summary: dict) -> float | None:
    h = kinds_of(summary).get("honest")
    return None if not h or not h.get("devices") else h.get("devices_used", 0) / h["devices"]


def adversary_reputation_margin(summary: dict) -> float | None:
    """The best adversary kind's mean reputation at the requesters minus the honest devices' (> 0: adversaries
    ended above the honest)."""
    by = (summary.get("reputation_at_requesters") or {}).get("by_kind") or {}
    adv = [v for k, v in by.items() if k != "honest" and v is not None]
    return None if "honest" not in by or not adv else max(adv) - by["honest"]


def _path(*keys):
    def get(summary: dict):
        v = summary
        for k in keys:
            if isinstance(v, list) and k.isdigit() and int(k) < len(v):
                v = v[int(k)]
            elif isinstance(v, dict) and k in v:
                v = v[k]
            else:
                return None
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    return get


_PATH_KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)+_(max|min)$")


def criterion(key: str) -> tuple[str, object] | None:
    """(what, how) of a criterion key: a named one (CRITERIA), or any number in summary.json named by its
    dotted path with _max / _min (``"adversaries.forger.accepted_at_full_nodes_max" = 0``; list items by
    index: ``devices.0.x``)."""
    if key in CRITERIA:
        return CRITERIA[key]
    if _PATH_KEY.match(key):
        path = key.rsplit("_", 1)[0]
        return f"summary {path}", _path(*path.split("."))
    return None


#: criterion key (in a scenario's [criteria]) -> (what it bounds, how it is computed from summary.json)
#: a key ending in _max passes when the value is <= the bound, _min when >= the bound
CRITERIA: dict[str, tuple[str, object]] = {
    "honest_loss_share_max": ("honest clients' losses / all business", honest_loss_share),
    "adversary_business_share_max": ("adversary devices' share of business (peak exposure summed)",
                                     adversary_business_share),
    "adversary_reputation_margin_max": ("best adversary kind's mean reputation minus the honest devices'",
                                        adversary_reputation_margin),
    "honest_devices_used_share_min": ("share of honest devices that got any business", honest_devices_used_share),
    "request_ok_share_min": ("share of decided requests fully covered", _path("requests", "ok_share")),
    "cap_violations_max": ("exposure cap violations", _path("exposure", "cap_violations")),
    "gossip_coverage_min": ("mean share of full nodes an offer sheet reached", _path("gossip", "coverage_mean")),
    "gossip_latency_p99_s_max": ("99th percentile gossip latency, seconds", _path("gossip", "latency_s", "p99")),
    "spam_accepted_max": ("spam messages accepted", _path("spam", "accepted")),
    "verdict_mismatch_max": ("gossip validations that disagreed with the reference", _path("gossip", "verdict_mismatch")),
}


def check_criteria(raw) -> dict[str, float]:
    """A scenario's [criteria] table, checked (``ValueError`` naming the key): known keys, finite numbers."""
    import math

    if not isinstance(raw, dict):
        raise ValueError("criteria: expected a table of criterion = bound")
    out = {}
    for k, v in raw.items():
        if not isinstance(k, str) or criterion(k) is None:
            raise ValueError(f"criteria.{k}: unknown criterion (known: {', '.join(sorted(CRITERIA))}, or a "
                             "quoted summary.json path ending in _max or _min)")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"criteria.{k}: expected a finite number, got {v!r}")
        out[k] = float(v)
    return out


def verdict(summary: dict, criteria: dict[str, float]) -> list[dict]:
    """One row per criterion: key, what, bound, value, passed (None when the run could not measure it)."""
    rows = []
    for key, bound in criteria.items():
        what, fn = criterion(key)
        v = fn(summary)
        ok = None if v is None else (v <= bound if key.endswith("_max") else v >= bound)
        rows.append({"criterion": key, "what": what, "bound": bound, "value": v, "passed": ok})
    return rows
