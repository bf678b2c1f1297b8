"""An attacker for the request-to-contracts functional test: ``python -m tests.functional.withholder
--datadir D run ...`` runs a real ``keyswitch run`` daemon whose host withholds.

Its enclave is honest; its host (which the design assumes hostile) drops what it was meant to send: as the
responder of a swap it sends the release of its first chunk and never the next ones (nor their resends), over
/keyswitch/contract-run/1. The counterparty's tit-for-tat then stops at one
chunk lost, and its round timeout ends the swap as "withheld".
"""

from __future__ import annotations

from node.contracts.protocol import run as contract_run
from node.protocols.base import Notify

_run_request = contract_run.ContractRun._request


def _withholding_run_request(self, key: str, kind: str, step: int, party: int, peer: str, data: bytes, now: float):
    r = self.runs.get(key)
    own = [s for s, (giver, _) in enumerate(r.spec.steps()) if giver == 1] if r is not None else []
    if kind == "release" and own and r.me == 1 and step != own[0]:
        return Notify("withholder.dropped", {"contract": key, "round": step})  # sent nowhere
    return _run_request(self, key, kind, step, party, peer, data, now)


contract_run.ContractRun._request = _withholding_run_request

if __name__ == "__main__":
    from node.cli import main

    main()
