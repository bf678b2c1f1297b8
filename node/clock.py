"""Time is passed in: every component takes a clock instead of reading the wall.

``now()`` returns seconds since the Unix epoch as a float. ``SystemClock`` reads
the wall clock; ``ManualClock`` is advanced by its owner (tests, the simulator).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    """The wall clock. The only place in the code base that calls time.time()."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests and the virtual simulator)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self._t += seconds
        return self._t

    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"a clock cannot go backwards ({t} < {self._t})")
        self._t = float(t)
