"""The escrows this node arbitrates (offer kind "arbiter"): the specs it agreed to sign approvals for, kept
across restarts (issue #18).

An arbiter is a party of the escrow but no runner: it holds no chunk and runs no contract, so nothing of the
escrow is in its contract stores. What it agreed to is kept here (``node.stores.arbitrations``, in
``<datadir>/arbiter.sqlite``): written before the arbiter answers yes, read back when the node starts, so its
operator's ``approve`` (``POST /v1/contracts/approve``, ``keyswitch approve``) still finds the escrow after a
restart. Before, the specs were in memory only and a restarted arbiter answered "no contract X here": the escrow
could then only be refunded at its height, never paid out by its arbiter.

An entry goes when the escrow can no longer use an approval: our ledger reads ``END_LAG`` blocks past the
escrow's last height parameter (its ``refund_height``: without an approval by then every runner's enclave sends
the chunks home; the lag leaves room for a runner whose ledger is a little behind ours). The lock horizon
(``SwapDesk._lock_horizon``) bounds that height when the arbiter agrees, and a peer cannot fill the table: at most
``MAX_ARBITRATED`` escrows, ``MAX_ARBITRATED_PER_PEER`` of them proposed by one peer (past that the offer is
refused with the reason).

Calls come from the event loop (``agree``), the contract worker (``get``) and the heights worker (``end``): one
lock serialises them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("keyswitch.arbiter")

MAX_ARBITRATED = 1024  # escrows this node arbitrates at once
MAX_ARBITRATED_PER_PEER = 64  # of them proposed by one peer
END_LAG = 6  # blocks our ledger reads past an escrow's last height before its spec is dropped
#: the stdlib contracts' height parameters (as ``swaps.HEIGHT_PARAMS``: the lock horizon reads the same ones)
HEIGHT_PARAMS = ("premium_by", "expiry", "refund_height", "deadline")


def end_of(spec) -> tuple[str, int] | None:
    """(asset, height) past which an approval for ``spec`` changes nothing: its last height parameter, on the
    ledger of its ``height_asset`` (as the lock horizon reads them); None for a contract with no height."""
    params = {p.name: p.value for p in spec.params}
    heights = [v for k, v in params.items() if k in HEIGHT_PARAMS and isinstance(v, int)]
    asset = params.get("height_asset") or params.get("asset_a")
    if not heights or not isinstance(asset, str):
        return None
    return asset, max(heights)


class Arbitrations:
    """Contract id hex -> the spec we arbitrate, backed by an ``ArbitrationStore``; restored when made."""

    def __init__(self, store) -> None:
        from node.contracts.spec import decode_spec, spec_id

        self.store = store
        self._lock = threading.Lock()
        self._specs: dict[str, Any] = {}
        self._proposer: dict[str, str] = {}
        for cid, proposer, data, _ in store.load():
            spec = decode_spec(data)
            if isinstance(spec, str) or spec_id(spec).hex() != cid:
                log.warning("arbitrated escrow %s does not read back (%s): dropped", cid,
                            spec if isinstance(spec, str) else "another contract id")
                store.remove(cid)
                continue
            self._specs[cid], self._proposer[cid] = spec, proposer

    def get(self, cid: str):
        """The spec of escrow ``cid`` (id hex) we arbitrate, or None."""
        with self._lock:
            return self._specs.get(cid)

    def __contains__(self, cid: str) -> bool:
        return self.get(cid) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._specs)

    def agree(self, proposer: str, spec, now: float) -> str | None:
        """Keep ``spec`` (an escrow ``proposer`` named us arbiter of): None once it is on disk, else the refusal."""
        from node.contracts.spec import spec_id

        cid = spec_id(spec).hex()
        with self._lock:
            if cid in self._specs:
                return None  # the same escrow offered again
            if len(self._specs) >= MAX_ARBITRATED:
                return f"full: this node already arbitrates {len(self._specs)} escrows (at most {MAX_ARBITRATED})"
            mine = sum(1 for p in self._proposer.values() if p == proposer)
            if mine >= MAX_ARBITRATED_PER_PEER:
                return (f"full: this node already arbitrates {mine} escrows proposed by {proposer} (at most "
                        f"{MAX_ARBITRATED_PER_PEER} per peer)")
            try:
                self.store.add(cid, proposer, spec.encode(), now)  # on disk before we answer yes
            except Exception as exc:
                log.exception("arbitrated escrow %s not stored", cid)
                return f"this node could not keep the escrow: {type(exc).__name__}: {exc}"
            self._specs[cid], self._proposer[cid] = spec, proposer
        return None

    def assets(self) -> set[str]:
        """The assets on whose ledger an escrow we arbitrate ends (the heights ``end`` needs)."""
        with self._lock:
            specs = list(self._specs.values())
        return {e[0] for e in map(end_of, specs) if e is not None}

    def end(self, heights: dict[str, tuple[int, float]]) -> list[str]:
        """Drop every escrow our ledger reads ``END_LAG`` blocks past its end (``heights``: asset -> (height,
        when noted), the desk's); the contract ids dropped."""
        out = []
        with self._lock:
            for cid, spec in list(self._specs.items()):
                e = end_of(spec)
                noted = heights.get(e[0]) if e is not None else None
                if noted is not None and noted[0] >= e[1] + END_LAG:
                    self.store.remove(cid)
                    del self._specs[cid], self._proposer[cid]
                    out.append(cid)
        for cid in out:
            log.info("arbitrated escrow %s ended (its last height passed): dropped", cid)
        return out

    def close(self) -> None:
        self.store.close()
