"""An attacker for the request-to-contracts functional test: ``python -m tests.functional.withholder
--datadir D run ...`` runs a real ``keyswitch run`` daemon whose host withholds.

Its enclave is honest; its host (which the design assumes hostile) drops what it was meant to send: as the
responder of a swap it sends the release of its first chunk and never the next ones (nor their resends).
The counterparty's tit-for-tat then stops at one chunk lost, and its round timeout ends the swap as
"withheld".
"""

from __future__ import annotations

from node.protocols import release
from node.protocols.base import Notify

_request = release.ReleaseProtocol._request


def _withholding_request(self, c, kind: str, rnd: int, data: bytes):
    own = [r for r, rd in enumerate(c.rounds) if rd.giver == c.me]
    if kind == "release" and c.me == 1 and own and rnd != own[0]:
        return Notify("withholder.dropped", {"contract": c.key, "round": rnd})  # sent nowhere
    return _request(self, c, kind, rnd, data)


release.ReleaseProtocol._request = _withholding_request

if __name__ == "__main__":
    from node.cli import main

    main()
