"""One node's risk engine: its offer book, its reputation view, its caps, its allocator.

Pure apart from the SQLite files of the book and reputation; time is passed
in. The node's protocols call it (``node.protocols.rfp``), the API reads it,
and gossipsub's peer scoring calls ``app_score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from node.risk.allocate import Allocation, CandidateTable, Limits, allocate
from node.risk.caps import Caps, CapPolicy
from node.risk.classes import ClassRegistry
from node.risk.reputation import Reputation
from node.risk.types import Candidate


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

    # ------------------------------------------------------------- scoring
    def app_score(self, peer_id: str, now: float) -> float:
        return self.reputation.app_score(peer_id, now)

    def _observe(self, cands: Iterable[Candidate], now: float) -> None:
        for c in cands:
            if self.reputation.record(c.device_id) is None:
                self.reputation.observe(c.device_id, c.owner_id, c.device_class, now)

    # ----------------------------------------------------------- allocation
    def choose(self, asset: str, usd_cents: int, now: float, *, limits: Limits | None = None,
               among: Iterable[Candidate] | None = None, seed: int | None = None) -> Choice:
        """Chunks of ``asset`` covering ``usd_cents`` from the book (or from ``among``),
        within this node's caps and the request's diversity limits."""
        cands = list(among) if among is not None else self.book.candidates(asset, now=now)
        cands = [c for c in cands if c.asset == asset and c.expiry > now]
        self._observe(cands, now)
        table = CandidateTable.from_candidates(cands)
        score = np.empty(len(table.devices))
        dev_room = np.empty(len(table.devices), dtype=np.int64)
        for i, (dev, dclass) in enumerate(zip(table.devices, table.device_class)):
            owner = table.owners[int(table.device_owner[i])]
            score[i] = self.reputation.score(dev, now)
            dev_room[i] = self.caps.headroom(dev, owner, dclass, now)[0]
        # an owner's headroom: its limit less what it already holds (device rooms bound the rest)
        own_room = np.asarray([
            max(0, self.caps.owner_limit(o, now, "sim") - self.caps.exposure.by_owner.get(o, 0))
            for o in table.owners], dtype=np.int64)
        alloc = allocate(table, usd_cents, limits=limits or self.limits, device_score=score,
                         device_headroom=dev_room, owner_headroom=own_room,
                         seed=self.seed if seed is None else seed)
        return Choice(alloc, tuple(cands[i] for i in alloc.chosen) if alloc.ok else ())

    def hold(self, offers: Iterable[Candidate]) -> None:
        """Count chosen offers as exposure (a contract started with them)."""
        for c in offers:
            self.caps.exposure.add(c.device_id, c.owner_id, c.device_class, c.usd_cents)

    def release(self, offers: Iterable[Candidate]) -> None:
        """A contract ended: its offers no longer count as exposure."""
        for c in offers:
            self.caps.exposure.remove(c.device_id, c.owner_id, c.device_class, c.usd_cents)

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
