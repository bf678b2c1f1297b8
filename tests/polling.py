"""Polled waits for tests that run several nodes in one trio process.

One helper, as Bitcoin Core's functional tests have one ``wait_until``: it polls,
scales its timeout by ``KS_TIMEOUT_FACTOR`` (``make test`` sets 3) and, when it
gives up, names what it was waiting for instead of a bare ``TooSlowError``.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from node.dev.localnet import timeout_factor


async def eventually(pred: Callable[[], object], timeout: float = 10.0, what: str = "", step: float = 0.05) -> None:
    """Poll ``pred`` every ``step`` s until true; AssertionError naming ``what`` after ``timeout`` x the factor."""
    limit = timeout * timeout_factor()
    with trio.move_on_after(limit):
        while not pred():
            await trio.sleep(step)
        return
    raise AssertionError(f"timed out after {limit:.0f} s waiting for: {what or getattr(pred, '__name__', pred)}")
