"""Lapses of agreements, reservations and proposals not yet opened, counted on the monotonic clock (issue #18).

A contract agreed but not yet opened holds its exposure for ``RESERVE_TTL`` after its agreement, then lapses (it
is withdrawn: a late open is refused). Its agreement time is stored (``runs-agreed``) with the wall clock, which
an NTP step or a hostile host moves either way: counted on the wall, a clock stepped back an hour kept a resumed
agreement (and its hold, and the peer's right to open it) an hour past its lapse; stepped forward, it lapsed early.

``Lapses.due`` fixes each deadline once, the first time it is asked about a key in this process: what the wall
clock says is left of the TTL (``at + ttl - now``), never more than ``ttl`` (the stored time in the future: a
clock stepped back before the restart) and never less than 0 (stepped forward: it lapses at once, withdrawn with
its hold, so never opened beyond the caps), counted from then on the monotonic clock, which no step moves. The
runner rewrites a stored agreement time that is in the future to the restart's time
(``ContractRun._resume_agreed``), so a restart again later counts from there, not from a full TTL again. What
no process can count is its own downtime: a host that steps its clock back before every restart gets at most one
``RESERVE_TTL`` per restart (and only holds its own caps longer: the hold errs on the safe side).

Used for the agreements resumed after a restart (``SwapDesk._resumed_holds``), the reservations made in this
process (``SwapDesk._reserve``, ``sync_holds``) and the swaps we proposed (``SwapRuns.holds``).

Sans-IO: the clock is passed in (``node.clock``); with one that has no ``monotonic`` (a test's settable wall
clock) the deadlines count on the wall time each call passes in, as before.
"""

from __future__ import annotations


class Lapses:
    def __init__(self, clock) -> None:
        self._mono = getattr(clock, "monotonic", None)
        self._until: dict[str, float] = {}  # key -> its deadline on the monotonic clock

    def due(self, key: str, at: float, ttl: float, now: float) -> bool:
        """Has ``key`` (agreed at wall time ``at``, to last ``ttl`` s) lapsed? ``now``: the wall clock now."""
        m = self._mono() if self._mono is not None else now
        until = self._until.get(key)
        if until is None:
            until = self._until[key] = m + max(0.0, min(ttl, at + ttl - now))
        return m >= until

    def keep(self, keys) -> None:
        """Forget the deadlines of every key not in ``keys`` (ended, opened or withdrawn)."""
        keys = set(keys)
        self._until = {k: v for k, v in self._until.items() if k in keys}
