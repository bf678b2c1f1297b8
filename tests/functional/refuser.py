"""A provider that writes no options, for the option-request functional test: ``python -m
tests.functional.refuser --datadir D run ...`` runs a real ``keyswitch run`` daemon that proposes its chunks to
requests like any provider, then refuses every option offered to it (``/keyswitch/contract/1``) with a reason.
The requester must cover what it was allocated from another provider, once."""

from __future__ import annotations

from node.swaps import SwapDesk

REASON = "this node writes no options"
_accept = SwapDesk.accept


def _refusing_accept(self, peer: str, offer, now: float) -> str | None:
    if offer.kind == "option":
        return REASON
    return _accept(self, peer, offer, now)


SwapDesk.accept = _refusing_accept

if __name__ == "__main__":
    from node.cli import main

    main()
