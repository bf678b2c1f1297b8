"""One node's risk engine: its offer book, its reputation view, its caps, its allocator.

Pure apart from the SQLite files of the book and reputation; time is passed
in. The node's protocols call it (``node.protocols.rfp``), the API reads it,
and gossipsub's peer scoring calls ``app_score``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from node.risk.allocate import Allocation, CandidateTable, Limits, allocate
from node.risk.caps import CAP_SETTING, Caps, CapPolicy, Hold, Refusal
from node.risk.classes import ClassRegistry
from node.risk.reputation import Reputation
from node.risk.types import Candidate

#: answers of ``allocate`` by a digest of all its inputs (shared by every engine in the process, bounded)
_ALLOCATIONS: dict[tuple, Allocation] = {}
_ALLOCATIONS_MAX = 512


@dataclass(frozen=True)
class Choice:
    """An allocation with the candidates it chose (what a proposal carries)."""

    allocation: Allocation
    offers: tuple[Candidate, ...]

    @property
    def ok(self) -> bool:
        return self.allocation.ok


class RiskEngine:
    def __init__(self, book, reputation: Reputation | None = None, *, classes: ClassRegistry | None = None,
                 policy: CapPolicy | None = None, limits: Limits = Limits(), seed: int = 0) -> None:
        self.book = book
        self.reputation = reputation or Reputation()
        self.caps = Caps(self.reputation, classes or ClassRegistry(), policy)
        self.limits = limits
        self.seed = seed
        self._tables: dict[str, tuple] = {}  # asset -> (book version, at, min expiry, cands, table, digest)
        self._rooms_cache: tuple | None = None
        self._kept_table: CandidateTable | None = None  # the book table last asked for: its rooms are kept
        self._observed: tuple | None = None  # (table, reputation) whose devices are all known
        #: exposure held by the live node, by key (a contract id, a proposal, a reservation): what ``caps``
        #: counts; ``sync_holds`` makes it equal to what the contract stores say is in flight
        self.holds: dict[str, tuple[Hold, ...]] = {}

    # ------------------------------------------------------------- scoring
    def app_score(self, peer_id: str, now: float) -> float:
        return self.reputation.app_score(peer_id, now)

    def _observe(self, cands: Iterable[Candidate], now: float) -> None:
        for c in cands:
            if self.reputation.record(c.device_id) is None:
                self.reputation.observe(c.device_id, c.owner_id, c.device_class, now)

    def _book_table(self, asset: str, now: float) -> tuple[list[Candidate], CandidateTable, bytes]:
        """The book's unexpired candidates of ``asset``, their table and a digest of the allocator's inputs
        from it. A book with a ``version`` (bumped whenever its rows change) lets the table be reused
        while no cached offer has expired; a book without one is read every time."""
        version = getattr(self.book, "version", None)
        hit = self._tables.get(asset) if version is not None else None
        if hit is not None and hit[0] == version and hit[1] <= now < hit[2]:
            return hit[3], hit[4], hit[5]
        cands = [c for c in self.book.candidates(asset, now=now) if c.asset == asset and c.expiry > now]
        table = CandidateTable.from_candidates(cands)
        digest = table.digest()
        if version is not None:
            self._tables[asset] = (version, now, min((c.expiry for c in cands), default=math.inf), cands, table,
                                   digest)
        return cands, table, digest

    def candidates(self, asset: str, now: float) -> list[Candidate]:
        """The book's unexpired candidates of ``asset`` (the list ``choose`` reads; do not modify it)."""
        return self._book_table(asset, now)[0]

    def _rooms(self, table: CandidateTable, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per device of ``table``: score and headroom; per owner: headroom. Each is a function of the device
        (or owner) alone at one state and time, not of the table. Kept for the last book table while the
        reputation and caps are unchanged and, unless every score involved is exactly 0 (so time cannot
        change them: decay scales the score), for the same ``now``; a table of proposed offers (``among``)
        takes its rows from there when they are all in it, else they are computed and not kept."""
        rep, caps = self.reputation, self.caps
        state = (rep.version, caps.state())
        hit = self._rooms_cache
        valid = hit is not None and hit[1] == state and (hit[2] or hit[3] == now)
        if valid and hit[0] is table:
            return hit[4]
        if valid and hit[5] is not None:
            dev_ix, own_ix = hit[5]
            di = [dev_ix.get(k) for k in zip(table.devices, table.device_class)]
            oi = [own_ix.get(o) for o in table.owners]
            if None not in di and None not in oi:
                score, dev_room, own_room = hit[4]
                return score[di], dev_room[di], own_room[oi]
        owners = table.owners
        recs = [rep.record(d) for d in table.devices]
        half_life = rep.half_life
        score = np.fromiter((0.0 if r is None else r.score_at(now, half_life) for r in recs), dtype=float,
                            count=len(recs))
        # each device's headroom; an owner's: its limit less what it already holds (device rooms bound the rest)
        dev_room, own_room = caps.rooms([(d, owners[o], c) for d, o, c in zip(table.devices, table.device_owner.tolist(),
                                                                              table.device_class)], owners, now)
        dev_room = np.asarray(dev_room, dtype=np.int64).reshape(len(table.devices))
        own_room = np.asarray(own_room, dtype=np.int64).reshape(len(owners))
        if table is self._kept_table:
            recs += [r for o in owners for r in rep.devices_of(o)]
            static = all(r is not None and r.score == 0.0 and not r.cheater for r in recs)
            index = ({k: i for i, k in enumerate(zip(table.devices, table.device_class))},
                     {o: i for i, o in enumerate(owners)})
            self._rooms_cache = (table, state, static, now, (score, dev_room, own_room), index)
        return score, dev_room, own_room

    # ----------------------------------------------------------- allocation
    def choose(self, asset: str, usd_cents: int, now: float, *, limits: Limits | None = None,
               among: Iterable[Candidate] | None = None, seed: int | None = None) -> Choice:
        """Chunks of ``asset`` covering ``usd_cents`` from the book (or from ``among``),
        within this node's caps and the request's diversity limits."""
        if among is not None:
            cands = [c for c in among if c.asset == asset and c.expiry > now]
            table = CandidateTable.from_candidates(cands)
            digest = table.digest()
        else:
            cands, table, digest = self._book_table(asset, now)
            self._kept_table = table
        # each device's first offer makes it known (what observing every candidate in order does)
        rep = self.reputation
        seen = self._observed  # a reputation never forgets a device: a table is observed once
        if seen is None or seen[0] is not table or seen[1] is not rep:
            for i, dev in enumerate(table.devices):
                if rep.record(dev) is None:
                    rep.observe(dev, table.owners[int(table.device_owner[i])], table.device_class[i], now)
            self._observed = (table, rep)
        score, dev_room, own_room = self._rooms(table, now)
        lim = limits or self.limits
        seed = self.seed if seed is None else seed
        # the allocator is a pure function of these inputs; nodes with the same book and the same view of its
        # devices (most nodes answering one request: its id seeds them all) reuse one answer
        h = hashlib.sha256(digest)  # a digest, not the arrays: a big book's key would hold megabytes
        for a in (score, dev_room, own_room):
            h.update(len(a).to_bytes(8, "big"))
            h.update(a.tobytes())
        key = (h.digest(), int(usd_cents), lim, seed)
        alloc = _ALLOCATIONS.get(key)
        if alloc is None:
            alloc = allocate(table, usd_cents, limits=lim, device_score=score, device_headroom=dev_room,
                             owner_headroom=own_room, seed=seed)
            _ALLOCATIONS[key] = alloc
            while len(_ALLOCATIONS) > _ALLOCATIONS_MAX:
                _ALLOCATIONS.pop(next(iter(_ALLOCATIONS)))
        if alloc.ok:  # the allocator bounds each device and owner; a class's room is shared by its devices
            by_class: dict[str, int] = {}
            for i in alloc.chosen:
                by_class[cands[i].device_class] = by_class.get(cands[i].device_class, 0) + cands[i].usd_cents
            ex = self.caps.exposure.by_class
            for k, v in by_class.items():
                lim = self.caps.classes.class_cap(k)
                if ex.get(k, 0) + v > lim:
                    why = (f"class cap: class {k} would hold ${(ex.get(k, 0) + v) / 100:.2f} of ${lim / 100:.2f} "
                           f"allowed (holds ${ex.get(k, 0) / 100:.2f}, the allocation asks ${v / 100:.2f}; "
                           f"{CAP_SETTING['class']})")
                    alloc = Allocation(alloc.chosen, alloc.target_cents, alloc.total_cents, alloc.eligible_cents,
                                       alloc.smallest_eligible_cents, f"cannot cover {usd_cents / 100:.2f} USD: "
                                       + why, alloc.notes)
                    break
        return Choice(alloc, tuple(cands[i] for i in alloc.chosen) if alloc.ok else ())

    def hold(self, offers: Iterable[Candidate]) -> None:
        """Count chosen offers as exposure (a contract started with them; the simulator's unkeyed form)."""
        for c in offers:
            self.caps.exposure.add(c.device_id, c.owner_id, c.device_class, c.usd_cents)

    def release(self, offers: Iterable[Candidate]) -> None:
        """A contract ended: its offers no longer count as exposure."""
        for c in offers:
            self.caps.exposure.remove(c.device_id, c.owner_id, c.device_class, c.usd_cents)

    # ------------------------------------------------------- keyed holds
    def try_hold(self, key: str, holds: Iterable[Hold], now: float) -> Refusal | None:
        """Check ``holds`` against every cap (device, owner, class, reputation), counting what is already
        held and each earlier hold of this call, and take them all under ``key``; or take none and return the
        first refusal. Check and take are one step: nothing can run between them (a trio task does not yield
        here), so concurrent contracts against one device never pass the check against the same figure.
        A key already held is left as it is (None)."""
        if key in self.holds:
            return None
        taken: list[Hold] = []
        for h in holds:
            if h.usd_cents < 0:
                raise ValueError(f"a hold is a non-negative number of cents, got {h.usd_cents!r}")
            if self.reputation.record(h.device) is None:
                self.reputation.observe(h.device, h.owner, h.device_class, now)
            refusal = self.caps.check(h.device, h.owner, h.device_class, h.usd_cents, now)
            if refusal is not None:
                for t in taken:
                    self.caps.exposure.remove(t.device, t.owner, t.device_class, t.usd_cents)
                return refusal
            self.caps.exposure.add(h.device, h.owner, h.device_class, h.usd_cents)
            taken.append(h)
        self.holds[key] = tuple(taken)
        return None

    def release_hold(self, key: str) -> bool:
        """Drop the exposure held under ``key`` (its contract ended); False when nothing was held."""
        held = self.holds.pop(key, None)
        if held is None:
            return False
        for h in held:
            self.caps.exposure.remove(h.device, h.owner, h.device_class, h.usd_cents)
        return True

    def sync_holds(self, wanted: dict[str, tuple[Hold, ...]]) -> None:
        """Make the keyed holds exactly ``wanted`` (rebuilt from the contract stores: one source of truth).
        Contracts already agreed are held whatever the caps say now: they run, and their exposure is real."""
        for key in [k for k, v in self.holds.items() if wanted.get(k) != v]:
            self.release_hold(key)
        for key, hs in wanted.items():
            if key not in self.holds:
                hs = tuple(hs)
                for h in hs:
                    self.caps.exposure.add(h.device, h.owner, h.device_class, h.usd_cents)
                self.holds[key] = hs

    def reputation_table(self, now: float) -> list[dict]:
        rows = self.reputation.table(now)
        for r in rows:
            dev = bytes.fromhex(r["device"])
            room, refusal = self.caps.headroom(dev, r["owner"], r["class"], now)
            r["headroom_cents"] = room
            r["exposure_cents"] = self.caps.exposure.by_device.get(dev, 0)
            if refusal is not None:
                r["refused"] = refusal.reason
        return rows
