"""Local reputation: one bounded, decaying score per attested device.

Every node keeps its own view. Sybil cost attaches to *devices* (a phone, an
SGX server, a SIM costs money), so the score is per device id (the hash of
the enclave's attested signing key); an owner (the peer id that offers a
device's chunks) is as good as its worst device, and the gossipsub
application score of a peer is derived from its owner score.

Rules, all pure and with time passed in:

* A score lives in ``[SCORE_MIN, SCORE_MAX]`` and decays toward 0 with a
  half-life (``half_life`` seconds), evaluated lazily.
* Named actions have fixed effects (``Action``), as lighthouse's
  ``PeerAction``: what this node saw itself applies at full weight.
* Reports gossiped by others are weighted by the *reporter's* standing
  (``standing()`` in [0, 1]; a device with score <= 0 has none), so a ring of
  fresh devices can neither slander an old device nor raise each other.
  A report the ledger can confirm (the named transaction spends the deposit)
  weighs ``LEDGER_WEIGHT`` times a bare claim; a report the ledger refutes
  costs the *reporter* ``Action.SLANDER``.
* A report alone, ledger-confirmed or not, never marks a device a cheater: an
  emptied deposit shows that *someone* spent it (the reporter itself may have
  swept the key it was given), not who. Only a proof does (``mark_cheater``,
  called by ``node.protocols.outcomes`` on two release records of one key by
  the subject's enclave, or on a ledger spend of a key the subject released to
  the reporter), as does a forged attestation: its score is pinned at
  ``SCORE_MIN`` and decay does not forgive it.
* Reports are bounded in aggregate: however many devices make them, checked
  or not, they cannot push a score below ``BARE_FLOOR`` (0: the device keeps
  only its class's starting limits) nor lift it above ``BARE_CEIL`` (half of
  full standing). A slander ring can cost an honest device its earned headroom
  until its next contracts, never its acceptability.
* Each (reporter, subject, contract) counts once.

State is in memory, optionally mirrored to a ``ReputationStore`` (the daemon's: SQLite,
``node.stores.reputation``) so a restart keeps it; every change is one transaction.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol

SCORE_MIN = -100.0
SCORE_MAX = 100.0
DEFAULT_HALF_LIFE = 7 * 24 * 3600.0
#: a device at or above this score has full standing as a reporter
STANDING_FULL = 50.0
#: weight of a report the ledger confirms, relative to a bare claim
LEDGER_WEIGHT = 4.0
BARE_WEIGHT = 0.25
#: bare (unchecked) third-party reports cannot push a score below / above these:
#: only this node's own observations and ledger-checked evidence can
BARE_FLOOR = 0.0
BARE_CEIL = STANDING_FULL / 2
#: below this a device is not accepted as a counterparty at all
ACCEPT_THRESHOLD = -20.0


class Action(enum.Enum):
    """Named actions and their fixed score changes (before weighting)."""

    CLAIMED = 2.0  # a contract with this device completed: we swept its key
    RELEASED = 1.0  # it released a key to us on time (a round of a contract)
    WITHHELD = -15.0  # stopped answering mid-contract
    DOUBLE_SPENT = -60.0  # a released key's funds were gone (reported)
    INVALID_GOSSIP = -5.0  # a REJECTed sheet, request or proposal from it
    SLANDER = -30.0  # reported a double-spend the ledger refutes
    FORGED_ATTESTATION = -100.0  # evidence that does not verify, presented as genuine

    @property
    def penalty(self) -> float:
        return self.value


class Outcome(enum.Enum):
    CLAIMED = "claimed"
    DOUBLE_SPENT = "double-spent"
    WITHHELD = "withheld"


class LedgerCheck(enum.Enum):
    UNCHECKED = "unchecked"  # a bare claim
    CONFIRMED = "confirmed"  # the ledger shows what the report says
    REFUTED = "refuted"  # the ledger contradicts it


_OUTCOME_ACTION = {Outcome.CLAIMED: Action.CLAIMED, Outcome.DOUBLE_SPENT: Action.DOUBLE_SPENT,
                   Outcome.WITHHELD: Action.WITHHELD}


@dataclass
class DeviceRecord:
    device_id: bytes
    owner: str
    device_class: str
    score: float
    updated_at: float
    first_seen: float
    cheater: bool = False
    reports: int = 0

    def score_at(self, now: float, half_life: float) -> float:
        if self.cheater:
            return SCORE_MIN
        dt = max(0.0, now - self.updated_at)
        return self.score * math.pow(0.5, dt / half_life) if half_life > 0 else self.score


class ReputationStore(Protocol):
    """Where the table is kept across restarts (``node.stores.reputation``: SQLite). ``load()`` gives every
    device record and the keys of the reports counted; ``save`` writes a record (and the report key that
    changed it) in one transaction; ``see`` records a report key alone."""

    def load(self) -> tuple[list[DeviceRecord], set[bytes]]: ...

    def save(self, rec: DeviceRecord, seen_key: bytes | None = None) -> None: ...

    def see(self, key: bytes) -> None: ...

    def close(self) -> None: ...


class Reputation:
    """This node's reputation table. Not thread-safe; one owner (the node's loop)."""

    def __init__(self, store: ReputationStore | None = None, *, half_life: float = DEFAULT_HALF_LIFE) -> None:
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life!r}")
        self.half_life = half_life
        self._dev: dict[bytes, DeviceRecord] = {}
        self._by_owner: dict[str, set[bytes]] = {}
        self._seen: set[bytes] = set()
        self.version = 0  # bumped on every change to a device record (lets callers cache what they derive)
        self._store = store
        if store is not None:
            records, self._seen = store.load()
            for rec in records:
                self._dev[rec.device_id] = rec
                self._by_owner.setdefault(rec.owner, set()).add(rec.device_id)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------ bookkeeping
    def observe(self, device_id: bytes, owner: str, device_class: str, now: float) -> DeviceRecord:
        """Make a device known (first sight of its attested offers). Idempotent."""
        rec = self._dev.get(device_id)
        if rec is None:
            rec = DeviceRecord(device_id, owner, device_class, 0.0, now, now)
            self._dev[device_id] = rec
            self._by_owner.setdefault(owner, set()).add(device_id)
            self.version += 1
            self._save(rec)
        return rec

    def _save(self, rec: DeviceRecord, seen_key: bytes | None = None) -> None:
        if self._store is not None:
            self._store.save(rec, seen_key)

    def _bump(self, rec: DeviceRecord, delta: float, now: float, seen_key: bytes | None = None) -> None:
        current = rec.score_at(now, self.half_life)
        rec.score = min(SCORE_MAX, max(SCORE_MIN, current + delta))
        rec.updated_at = now
        rec.reports += 1
        self.version += 1
        self._save(rec, seen_key)

    # ---------------------------------------------------------------- queries
    def score(self, device_id: bytes, now: float) -> float:
        rec = self._dev.get(device_id)
        return 0.0 if rec is None else rec.score_at(now, self.half_life)

    def is_cheater(self, device_id: bytes) -> bool:
        rec = self._dev.get(device_id)
        return bool(rec and rec.cheater)

    def standing(self, device_id: bytes, now: float) -> float:
        """How much this device's reports count, in [0, 1]; 0 for new or bad devices."""
        return min(1.0, max(0.0, self.score(device_id, now) / STANDING_FULL))

    def owner_score(self, owner: str, now: float) -> float:
        """An owner is as good as its worst device (0 if unknown)."""
        devs = self._by_owner.get(owner)
        if not devs:
            return 0.0
        return min(self.score(d, now) for d in devs)

    def app_score(self, peer_id: str, now: float) -> float:
        """Gossipsub application-specific score for ``peer_id``: owner score / 10.

        With the node's ``app_specific_weight`` this maps a proven cheater
        (-100) to -10 and an established honest owner (+100) to +10.
        """
        return self.owner_score(peer_id, now) / 10.0

    def acceptable(self, device_id: bytes, now: float) -> bool:
        return not self.is_cheater(device_id) and self.score(device_id, now) >= ACCEPT_THRESHOLD

    def devices(self) -> list[DeviceRecord]:
        return list(self._dev.values())

    def devices_of(self, owner: str) -> list[DeviceRecord]:
        return [self._dev[d] for d in sorted(self._by_owner.get(owner, ()))]

    def record(self, device_id: bytes) -> DeviceRecord | None:
        return self._dev.get(device_id)

    def table(self, now: float) -> list[dict]:
        return [{"device": r.device_id.hex(), "owner": r.owner, "class": r.device_class,
                 "score": round(r.score_at(now, self.half_life), 3), "cheater": r.cheater,
                 "reports": r.reports, "first_seen": r.first_seen}
                for r in sorted(self._dev.values(), key=lambda r: r.device_id)]

    # ------------------------------------------------------------- evidence
    def apply(self, device_id: bytes, action: Action, now: float, *, weight: float = 1.0) -> float:
        """Apply what this node saw itself (weight 1). Returns the new score."""
        rec = self._dev.get(device_id)
        if rec is None:
            raise KeyError(f"unknown device {device_id.hex()[:16]}: observe() it first")
        if action in (Action.FORGED_ATTESTATION,) and weight >= 1.0:
            rec.cheater = True
        self._bump(rec, action.penalty * max(0.0, weight), now)
        return rec.score_at(now, self.half_life)

    def mark_cheater(self, device_id: bytes, now: float) -> None:
        """Proof of cheating checked by this node itself (or on the ledger): for good."""
        rec = self._dev[device_id]
        rec.cheater = True
        self._bump(rec, SCORE_MIN * 2, now)

    def report(self, *, reporter: bytes, subject: bytes, outcome: Outcome, contract_id: bytes,
               check: LedgerCheck, now: float) -> float:
        """Apply an outcome report gossiped by ``reporter`` about ``subject``.

        Returns the change applied to the subject's score (0 when the report
        counts for nothing: unknown or standing-less reporter, duplicate,
        self-report, refuted). Never marks the subject a cheater, whatever
        ``check`` says: a report is not a proof.
        """
        if reporter == subject or reporter not in self._dev or subject not in self._dev:
            return 0.0
        # a refuted lie is charged once per contract, apart from the reporter's other report of that contract
        key = reporter + subject + contract_id + (b"/refuted" if check is LedgerCheck.REFUTED else b"")
        if key in self._seen:
            return 0.0
        self._seen.add(key)
        subj = self._dev[subject]
        if check is LedgerCheck.REFUTED:
            # the reporter lied; the subject is untouched
            self._bump(self._dev[reporter], Action.SLANDER.penalty, now, key)
            return 0.0
        weight = self.standing(reporter, now) * (LEDGER_WEIGHT * BARE_WEIGHT if check is LedgerCheck.CONFIRMED
                                                 else BARE_WEIGHT)
        if weight <= 0.0:
            if self._store is not None:
                self._store.see(key)
            return 0.0
        before = subj.score_at(now, self.half_life)
        delta = _OUTCOME_ACTION[outcome].penalty * weight
        # reports alone, ledger-confirmed or not, can neither sink a device below BARE_FLOOR nor lift it
        # above BARE_CEIL: a confirmed spend of a deposit does not say who spent it (a proof does: mark_cheater)
        if delta < 0:
            delta = max(delta, min(0.0, BARE_FLOOR - before))
        else:
            delta = min(delta, max(0.0, BARE_CEIL - before))
        self._bump(subj, delta, now, key)
        return subj.score_at(now, self.half_life) - before
