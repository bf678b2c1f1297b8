"""Time is passed in: every component takes a clock instead of reading the wall.

``now()`` returns seconds since the Unix epoch as a float (the wall clock: an NTP step or a hostile host moves
it, either way). ``monotonic()`` returns seconds that only ever go forward, from an arbitrary origin, within
one process: what a deadline that must not move with the wall is counted on (``node.contracts.desk.lapse``).
``SystemClock`` reads the machine's clocks; ``ManualClock`` is moved by its owner (tests, the simulator).
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

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests and the virtual simulator). ``advance`` moves both of its
    clocks; ``step`` moves the wall clock alone, either way (an NTP step, a hostile host)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = float(start)  # the monotonic clock
        self._wall = 0.0  # the wall clock's steps

    def now(self) -> float:
        return self._t + self._wall

    def monotonic(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self._t += seconds
        return self.now()

    def step(self, seconds: float) -> float:
        """The wall clock jumps by ``seconds`` (negative: back); the monotonic clock does not move."""
        self._wall += seconds
        return self.now()

    def set(self, t: float) -> None:
        if t < self.now():
            raise ValueError(f"a clock cannot go backwards ({t} < {self.now()})")
        self._t += float(t) - self.now()
