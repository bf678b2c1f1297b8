"""Application calls run on the protocol driver's loop (``node.runtime.driver``): ``Call`` (``submit``: fire
and forget) and ``AwaitedCall`` (``call``: awaited, taken or withdrawn, decided once under a lock)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import trio

from node.protocols.base import Command


class NotTaken(Exception):
    """``ProtocolDriver.call``: the worker did not take the call in time and it was withdrawn: it never ran and
    never will (nothing it would have done happened)."""


class StillRunning(Exception):
    """``ProtocolDriver.call``: the worker took the call (it runs, or ran), but its end did not come in time:
    what it does may have happened; its result is not known to the caller."""


class Call:
    """An application call run on the driver loop (``ProtocolDriver.submit``): ``fn(now) -> commands``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[float], list[Command] | None]) -> None:
        self.fn = fn

    def take(self) -> bool:
        """The worker is about to run it: True (a submitted call is never withdrawn)."""
        return True

    def run(self, now: float) -> list[Command] | None:
        return self.fn(now)


class AwaitedCall(Call):
    """A call a caller awaits (``ProtocolDriver.call``): ``fn(now) -> (value, commands)``.

    Its state moves once, under its own lock (never held while ``fn`` runs): ``queued`` -> ``taken`` (the
    worker, ``take``) -> ``ended`` (the worker, after ``fn``), or ``queued`` -> ``withdrawn`` (the caller,
    ``withdraw``). So the worker and a caller that gives up never both win: a withdrawn call is skipped, a
    taken one is the caller's to report as run. Each move wakes the caller (``trio_token.run_sync_soon``)."""

    __slots__ = ("_lock", "state", "value", "error", "taken", "ended", "_token", "posted", "waited")

    def __init__(self, fn: Callable[[float], tuple[Any, Sequence[Command]]]) -> None:
        super().__init__(fn)
        self._lock = threading.Lock()
        self.state = "queued"
        self.value: Any = None
        self.error: Exception | None = None
        self.taken, self.ended = trio.Event(), trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self.posted, self.waited = time.perf_counter(), 0.0  # waited: from posted to taken (or withdrawn)

    def _wake(self, event: trio.Event) -> None:
        try:
            self._token.run_sync_soon(event.set)
        except trio.RunFinishedError:  # (the caller's trio run is over: nobody to wake)
            pass

    def take(self) -> bool:
        with self._lock:
            if self.state == "withdrawn":
                return False
            self.state = "taken"
            self.waited = time.perf_counter() - self.posted
        self._wake(self.taken)
        return True

    def withdraw(self) -> str:
        """The caller gives up: withdrawn if still queued. The state, after."""
        with self._lock:
            if self.state == "queued":
                self.state = "withdrawn"
                self.waited = time.perf_counter() - self.posted
            return self.state

    def run(self, now: float) -> list[Command]:
        cmds: Sequence[Command] = ()
        try:
            self.value, cmds = self.fn(now)
        except Exception as exc:  # the caller's to handle: raised on its side, the call's commands dropped
            self.error = exc
        with self._lock:
            self.state = "ended"
        self._wake(self.ended)
        return list(cmds or ())

    async def result(self, timeout: float) -> Any:
        """Await the call (posted to the driver): its value, its exception, ``NotTaken`` or ``StillRunning``
        (see ``ProtocolDriver.call``)."""
        try:
            with trio.move_on_after(timeout):
                await self.taken.wait()
            if self.withdraw() == "withdrawn":
                raise NotTaken(f"not taken within {timeout:g} s")
            with trio.move_on_after(timeout):
                await self.ended.wait()
        except BaseException:
            self.withdraw()  # (cancelled while queued: never runs)
            raise
        if self.withdraw() != "ended":
            raise StillRunning(f"taken, but not ended within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.value
