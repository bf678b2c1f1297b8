"""A provider that writes no options, for the option-request functional test: ``python -m
tests.functional.refuser --datadir D run ...`` runs a real ``keyswitch run`` daemon that proposes its chunks to
requests like any provider, then refuses every option offered to it (``/keyswitch/contract/1``) with a reason.
The requester must cover what it was allocated from another provider, once.

Only the daemon run as this module's ``__main__`` refuses: importing it (for ``REASON``) changes nothing, so a
test process that imports it keeps the real ``SwapDesk`` (the patch at import time once made every later
in-process test's writer refuse options)."""

from __future__ import annotations

REASON = "this node writes no options"


def refuse_options() -> None:
    """From now on this process's ``SwapDesk`` refuses every option offered to it, with ``REASON``."""
    from node.contracts.desk.swaps import SwapDesk

    accept = SwapDesk.accept

    def refusing_accept(self, peer: str, offer, now: float) -> str | None:
        if offer.kind == "option":
            return REASON
        return accept(self, peer, offer, now)

    SwapDesk.accept = refusing_accept


if __name__ == "__main__":
    from node.cli import main

    refuse_options()
    main()
