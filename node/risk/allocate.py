"""Allocation: pick chunks that cover X USD with the least overshoot, within caps.

Input is a columnar ``CandidateTable`` (one row per offer: value in USD
cents, device, owner) built once from the offer book, plus per-device
preference scores (reputation) and per-device / per-owner headroom (from
``node.risk.caps``). The request's ``Limits`` add diversity caps: at most
``max_per_device`` chunks and ``max_share_device`` of X from any one device,
``max_share_owner`` of X from any one owner.

Algorithm (vectorised with numpy; deterministic for the same inputs and seed):

1. Order all offers by device score (best first), ties and the order within
   a device broken by a seeded random key.
2. Caps: walking each device's offers in that order, an offer is eligible
   while the device's count and value stay within its caps (the first offer
   that would break a cap closes that device); then the same per owner over
   what is left. Any subset of the eligible set respects every cap. If that
   leaves too little to cover X, step 1 is redone with each device's offers
   smallest first, which lets its caps admit as many as they can.
3. Bulk: take eligible offers in preference order while the running total
   stays at most ``X - v_max`` (``v_max`` the largest eligible value), keeping
   back the smallest eligible offer.
4. Tail: the remainder R (``v_max <= R < 2 v_max`` usually) is covered by the
   best of (a) the pair of remaining offers with the least overshoot, found by
   binary search over sorted values, and (b) greedy fill: largest offer under R
   until R is at most the smallest remaining offer, then the smallest offer
   that covers R. (b) guarantees overshoot < the smallest eligible offer, so
   the result is within one smallest chunk of the exact optimum.
5. Swaps: a chosen offer is swapped for a cheaper one while that cuts the
   overshoot, first within the eligible set, then with any offer whose
   device and owner still have room.

When the eligible set cannot cover X the answer says so and says why (how
much value each cap kept out).
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from node.risk.types import Candidate


@dataclass(frozen=True)
class Limits:
    max_per_device: int = 4
    max_share_device: float = 0.25  # of the requested value
    max_share_owner: float = 0.5

    def __post_init__(self) -> None:
        if self.max_per_device < 1:
            raise ValueError("max_per_device must be at least 1")
        for name in ("max_share_device", "max_share_owner"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")


@dataclass
class CandidateTable:
    """Columnar view of offers: ``value`` (cents), ``device``/``owner`` indices."""

    offer_ids: list[bytes]
    value: np.ndarray  # int64 cents
    device: np.ndarray  # int32 index into devices
    owner: np.ndarray  # int32 index into owners
    devices: list[bytes]
    owners: list[str]
    device_class: list[str]  # per device index
    device_owner: np.ndarray = field(default=None)  # int32 owner index per device

    def __len__(self) -> int:
        return len(self.offer_ids)

    def digest(self) -> bytes:
        """What ``allocate`` reads of the table (values, device and owner indices), hashed."""
        h = hashlib.sha256()
        for a in (self.value, self.device, self.owner):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
        return h.digest()

    @classmethod
    def from_candidates(cls, cands: Sequence[Candidate]) -> "CandidateTable":
        dev_ix: dict[bytes, int] = {}
        own_ix: dict[str, int] = {}
        classes: list[str] = []
        dev_owner: list[int] = []
        n = len(cands)
        value = np.empty(n, dtype=np.int64)
        device = np.empty(n, dtype=np.int32)
        owner = np.empty(n, dtype=np.int32)
        for i, c in enumerate(cands):
            o = own_ix.setdefault(c.owner_id, len(own_ix))
            d = dev_ix.get(c.device_id)
            if d is None:
                d = dev_ix[c.device_id] = len(dev_ix)
                classes.append(c.device_class)
                dev_owner.append(o)
            value[i] = c.usd_cents
            device[i] = d
            owner[i] = o
        return cls([c.offer_id for c in cands], value, device, owner, list(dev_ix), list(own_ix), classes,
                   np.asarray(dev_owner, dtype=np.int32))


@dataclass(frozen=True)
class Allocation:
    chosen: tuple[int, ...]  # row indices into the table, in preference order
    target_cents: int
    total_cents: int
    eligible_cents: int
    smallest_eligible_cents: int
    reason: str = ""  # set when X cannot be covered
    #: how the rules were applied when they had to bend (a share cap raised to one chunk on a small network)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reason

    @property
    def overshoot_cents(self) -> int:
        return max(0, self.total_cents - self.target_cents)


def _group_prefix_mask(keys: np.ndarray, values: np.ndarray, cap_value: np.ndarray, max_count: int | None
                       ) -> np.ndarray:
    """For items in preference order: eligible while their group's running count/value fit.

    ``keys`` group ids per item (in preference order), ``cap_value[key]`` each
    group's value cap. An item that breaks its group's cap closes the group.
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=bool)
    g = np.argsort(keys.astype(np.int64) * n + np.arange(n))  # by group, then order; keys unique
    k = keys[g]
    v = values[g]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))  # (np.r_ is slow on small arrays)
    lengths = np.diff(np.append(starts, n))
    start_of = np.repeat(starts, lengths)
    rank = np.arange(n) - start_of
    cs = np.cumsum(v)
    in_group = cs - cs[start_of] + v[start_of]
    ok = in_group <= cap_value[k]
    if max_count is not None:
        ok &= rank < max_count
    # the first failure closes the group: ok only while every earlier item in the group was ok
    bad = (~ok).astype(np.int64)
    bad_cs = np.cumsum(bad)
    bad_before = bad_cs - bad_cs[start_of] + bad[start_of]
    ok &= bad_before == 0
    out = np.empty(n, dtype=bool)
    out[g] = ok
    return out


def allocate(table: CandidateTable, target_cents: int, *, limits: Limits = Limits(),
             device_score: np.ndarray | None = None, device_headroom: np.ndarray | None = None,
             owner_headroom: np.ndarray | None = None, seed: int = 0) -> Allocation:
    """Choose rows of ``table`` covering ``target_cents``; see the module docstring.

    ``device_score`` (float per device, higher preferred; default all 0),
    ``device_headroom``/``owner_headroom`` (cents per device/owner the caps
    still allow; default unlimited).
    """
    if target_cents <= 0:
        raise ValueError(f"target must be a positive number of cents, got {target_cents!r}")
    n = len(table)
    nd, no = len(table.devices), len(table.owners)
    score = np.zeros(nd) if device_score is None else np.asarray(device_score, dtype=float)
    if n == 0:
        return Allocation((), target_cents, 0, 0, 0, "the offer book holds no offers for this asset")
    # the diversity shares (a fraction of X) are never below one chunk: on a small network, or for a small X,
    # a share under the device's (owner's) smallest offer would keep every device out; the exposure caps
    # (headroom) still bound what rides on each device
    notes: list[str] = []
    big = np.iinfo(np.int64).max
    pos_value = np.where(table.value > 0, table.value, big)
    dev_min = np.full(nd, big, dtype=np.int64)
    np.minimum.at(dev_min, table.device, pos_value)
    own_min = np.full(no, big, dtype=np.int64)
    np.minimum.at(own_min, table.owner, pos_value)
    dshare, oshare = int(limits.max_share_device * target_cents), int(limits.max_share_owner * target_cents)
    dcap = np.maximum(np.full(nd, dshare, dtype=np.int64), np.where(dev_min < big, dev_min, 0))
    ocap = np.maximum(np.full(no, oshare, dtype=np.int64), np.where(own_min < big, own_min, 0))
    if (dcap > dshare).any():
        notes.append(f"risk.max_share_device={limits.max_share_device:g} of {target_cents / 100:.2f} USD is "
                     f"{dshare / 100:.2f} USD, below one chunk for {int((dcap > dshare).sum())} of {nd} device(s): "
                     f"their share cap is raised to one chunk (their smallest offer)")
    if (ocap > oshare).any():
        notes.append(f"risk.max_share_owner={limits.max_share_owner:g} of {target_cents / 100:.2f} USD is "
                     f"{oshare / 100:.2f} USD, below one chunk for {int((ocap > oshare).sum())} of {no} owner(s): "
                     f"their share cap is raised to one chunk (their smallest offer)")
    if device_headroom is not None:
        dcap = np.minimum(dcap, np.asarray(device_headroom, dtype=np.int64))
    if owner_headroom is not None:
        ocap = np.minimum(ocap, np.asarray(owner_headroom, dtype=np.int64))

    rng = np.random.default_rng(seed)
    # devices ranked by score (ties in a seeded random order); within a device its
    # offers in a seeded random order (varied values help hit X exactly). int64 keys,
    # plain argsorts. If the caps then leave too little, the device's offers are
    # taken smallest first instead, so its caps admit as many as they can.
    dev_rank = np.empty(nd, dtype=np.int64)
    dev_rank[np.lexsort((rng.random(nd), -score))] = np.arange(nd)
    perm = rng.permutation(n)
    positive_all = table.value > 0
    order = values = dev = own = positive = dev_ok = own_ok = None
    for within in ("random", "smallest"):
        if within == "random":
            sub = perm
        else:
            sub = np.empty(n, dtype=np.int64)
            sub[np.argsort(np.maximum(table.value, 0) * n + perm)] = np.arange(n)
        order = np.argsort(dev_rank[table.device] * n + sub)
        values = table.value[order]
        dev = table.device[order]
        own = table.owner[order]
        positive = positive_all[order]
        dev_ok = _group_prefix_mask(dev, values, dcap, limits.max_per_device) & positive
        own_vals = np.where(dev_ok, values, 0)
        own_ok = _group_prefix_mask(np.where(dev_ok, own, -1) + 1, own_vals,
                                    np.concatenate((np.zeros(1, dtype=np.int64), ocap)), None) & dev_ok
        if int(values[own_ok].sum()) >= target_cents:
            break
    elig = np.flatnonzero(own_ok)
    ev = values[elig]
    eligible_total = int(ev.sum())
    if eligible_total < target_cents:
        kept_out = {
            "device cap": int(values[positive & ~dev_ok].sum()),
            "owner cap": int(values[dev_ok & ~own_ok].sum()),
        }
        setting = {
            "device cap": f"risk.max_share_device={limits.max_share_device:g} (never below one chunk), "
                          f"risk.max_per_device={limits.max_per_device}, and each device's exposure headroom "
                          f"(its class limit less what contracts in flight hold)",
            "owner cap": f"risk.max_share_owner={limits.max_share_owner:g} (never below one chunk) and each "
                         f"owner's exposure headroom",
        }
        why = ", ".join(f"{k} kept out {v / 100:.2f} USD [{setting[k]}]" for k, v in kept_out.items() if v)
        reason = (f"cannot cover {target_cents / 100:.2f} USD: eligible offers total {eligible_total / 100:.2f} USD "
                  f"of {int(values.sum()) / 100:.2f} USD in the book" + (f" ({why})" if why else ""))
        return Allocation(tuple(int(order[i]) for i in elig), target_cents, eligible_total, eligible_total,
                          int(ev.min()) if len(ev) else 0, reason, tuple(notes))

    vmax = int(ev.max())
    smallest_pos = int(np.argmin(ev))  # kept back from the bulk
    bulk_vals = ev.copy()
    bulk_vals[smallest_pos] = 0
    cs = np.cumsum(bulk_vals)
    bulk_n = int(np.searchsorted(cs, target_cents - vmax, side="right"))
    bulk = [i for i in range(bulk_n) if i != smallest_pos]
    taken = int(cs[bulk_n - 1]) if bulk_n else 0
    rest = np.concatenate((np.arange(bulk_n, len(ev), dtype=np.int64),
                           np.asarray([smallest_pos] if smallest_pos < bulk_n else [], dtype=np.int64)))
    tail = _tail(ev, rest, target_cents - taken)
    chosen = _improve(ev, bulk + tail, target_cents)
    picked = [int(elig[i]) for i in chosen]  # positions in preference order
    if int(ev[chosen].sum()) > target_cents:
        picked = _improve_across(values, dev, own, positive, picked, target_cents, dcap, ocap,
                                 limits.max_per_device)
    total = int(values[picked].sum()) if picked else 0
    return Allocation(tuple(int(order[i]) for i in picked), target_cents, total, eligible_total,
                      int(ev[smallest_pos]), notes=tuple(notes))


def _improve_across(values: np.ndarray, dev: np.ndarray, own: np.ndarray, positive: np.ndarray,
                     picked: list[int], target: int, dcap: np.ndarray, ocap: np.ndarray, max_count: int,
                     rounds: int = 12) -> list[int]:
    """Like ``_improve`` but swapping in *any* offer whose device and owner still have
    room (count and value) with the chosen set as it stands, so caps keep holding."""
    n = len(values)
    by_value = np.argsort(values, kind="stable")
    sv = values[by_value]
    picked = list(picked)
    dev_cnt = np.bincount(dev[picked], minlength=len(dcap))
    dev_sum = np.bincount(dev[picked], weights=values[picked], minlength=len(dcap)).astype(np.int64)
    own_sum = np.bincount(own[picked], weights=values[picked], minlength=len(ocap)).astype(np.int64)
    chosen_mask = np.zeros(n, dtype=bool)
    chosen_mask[picked] = True
    total = int(values[picked].sum())
    idx = np.arange(n)
    for _ in range(rounds):
        over = total - target
        if over <= 0:
            break
        fits = (positive & ~chosen_mask & (dev_cnt[dev] < max_count) & (dev_sum[dev] + values <= dcap[dev])
                & (own_sum[own] + values <= ocap[own]))[by_value]
        nxt = np.minimum.accumulate(np.where(fits, idx, n)[::-1])[::-1]  # next fitting index in value order
        pv = values[picked]
        j = np.searchsorted(sv, pv - over, side="left")
        j = np.where(j < n, nxt[np.minimum(j, n - 1)], n)
        ok = j < n
        if not ok.any():
            break
        gain = np.where(ok, pv - sv[np.minimum(j, n - 1)], -1)
        k = int(np.argmax(gain))
        if gain[k] <= 0:
            break
        out, inn = picked[k], int(by_value[j[k]])
        for arr, key, v in ((dev_sum, dev[out], -values[out]), (dev_sum, dev[inn], values[inn]),
                            (own_sum, own[out], -values[out]), (own_sum, own[inn], values[inn])):
            arr[key] += v
        dev_cnt[dev[out]] -= 1
        dev_cnt[dev[inn]] += 1
        chosen_mask[out], chosen_mask[inn] = False, True
        picked[k] = inn
        total -= int(gain[k])
    return picked


def _tail(ev: np.ndarray, rest: np.ndarray, remaining: int) -> list[int]:
    """Positions (into ``ev``) from ``rest`` that cover ``remaining`` with little overshoot."""
    if remaining <= 0 or len(rest) == 0:
        return []
    rv = ev[rest]
    best = _greedy_fill(rv, remaining)
    best_total = int(rv[best].sum())
    # the best single offer and the best pair, by binary search over sorted values
    order = np.argsort(rv, kind="stable")
    s = rv[order]
    j1 = int(np.searchsorted(s, remaining, side="left"))
    if j1 < len(s) and int(s[j1]) < best_total:
        best, best_total = [int(order[j1])], int(s[j1])
    if len(s) >= 2:
        j = np.searchsorted(s, remaining - s, side="left")
        j = np.where(j == np.arange(len(s)), j + 1, j)  # the second offer must be another one
        idx = np.flatnonzero(j < len(s))
        if len(idx):
            totals = s[idx] + s[j[idx]]
            k = int(np.argmin(totals))
            if int(totals[k]) < best_total:
                best, best_total = [int(order[idx[k]]), int(order[j[idx[k]]])], int(totals[k])
    return [int(rest[p]) for p in best]


def _improve(ev: np.ndarray, chosen: list[int], target: int, rounds: int = 64) -> list[int]:
    """Cut the overshoot by swapping a chosen offer for a cheaper unchosen one.

    Any subset of the eligible set respects the caps, so a swap never breaks
    one. Each round makes the single swap that removes the most overshoot
    (value dropped <= overshoot); stops when no swap helps.
    """
    chosen_arr = np.asarray(chosen, dtype=np.int64)
    total = int(ev[chosen_arr].sum())
    mask = np.ones(len(ev), dtype=bool)
    mask[chosen_arr] = False
    free = np.flatnonzero(mask)
    if len(free) == 0:
        return chosen
    fo = np.argsort(ev[free], kind="stable")
    free = free[fo]
    fv = ev[free]
    for _ in range(rounds):
        over = total - target
        if over <= 0:
            break
        cv = ev[chosen_arr]
        j = np.searchsorted(fv, cv - over, side="left")  # cheapest free offer that keeps X covered
        ok = j < len(fv)
        if not ok.any():
            break
        gain = np.where(ok, cv - fv[np.minimum(j, len(fv) - 1)], -1)
        k = int(np.argmax(gain))
        if gain[k] <= 0:
            break
        jj = int(j[k])
        old = int(chosen_arr[k])
        chosen_arr[k] = free[jj]
        total -= int(gain[k])
        # the swapped-out offer becomes free, in sorted position
        fv = np.delete(fv, jj)
        free = np.delete(free, jj)
        pos = int(np.searchsorted(fv, ev[old]))
        fv = np.insert(fv, pos, ev[old])
        free = np.insert(free, pos, old)
    return [int(c) for c in chosen_arr]


def _greedy_fill(rv: np.ndarray, remaining: int) -> list[int]:
    """Largest value under R until R <= the smallest left, then the smallest that covers R.

    Overshoot is then below the smallest value left at the end. The caller
    guarantees ``rv.sum() >= remaining``.
    """
    order = np.argsort(rv, kind="stable")
    vals = [int(v) for v in rv[order]]
    ids = [int(i) for i in order]
    out: list[int] = []
    r = remaining
    while r > 0 and vals:
        if vals[0] >= r:
            out.append(ids[0])
            break
        j = bisect.bisect_left(vals, r) - 1  # the largest value < r
        out.append(ids[j])
        r -= vals[j]
        del vals[j], ids[j]
    return out
