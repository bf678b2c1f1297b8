"""What a contract leaves on the host, sans-IO: the claim of each received key, the swap-shaped outcome, the
record store interface, and the funds checks and claims run as ledger tasks (never inside ``handle``).

``funds_state`` / ``funds_now`` / ``claim_chunk`` / ``sweep_claimer`` are blocking when run: a protocol issues
them as ``LedgerCall`` commands whose ``TaskDone`` comes back as an event (``node.protocols.interpret``).
"""

from __future__ import annotations

from typing import Callable, Protocol

import msgspec

from node import wire
from node.contracts.protocol.schedule import Chunk


class ClaimRecord(msgspec.Struct, array_like=True, frozen=True):
    round: int
    status: str  # claimed | kept | double-spent (a failure of our own ledger is retried, not recorded)
    txid: str = ""
    detail: str = ""


class ChunkOutcome(msgspec.Struct, array_like=True, frozen=True):
    round: int
    deposit_pub: bytes
    asset: str
    address: str
    status: str  # claimed | kept | received | double-spent | withheld | not-received
    txid: str = ""
    detail: str = ""


class Outcome(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    peer: str
    status: str  # claimed | withheld | double-spent | failed
    reason: str
    released: int  # chunks we released
    received: int  # chunks we received
    lost: int  # chunks we released without receiving as many back (at most 1)
    chunks: list[ChunkOutcome]
    device: bytes = b""  # the counterparty's device id (SHA-256 of its enclave signing key), once agreed

    def to_json(self) -> dict:
        return {"contract_id": self.contract_id.hex(), "peer": self.peer, "device": self.device.hex(),
                "status": self.status,
                "reason": self.reason, "released": self.released, "received": self.received, "lost": self.lost,
                "chunks": [{"round": c.round, "deposit_pub": c.deposit_pub.hex(), "asset": c.asset,
                            "address": c.address, "status": c.status, "txid": c.txid, "detail": c.detail}
                           for c in self.chunks]}


class RecordStore(Protocol):
    """Where a contract protocol keeps its host-side records (terms, claims, acks), by key: the narrow interface
    the protocol is given. ``put`` returns once the record is written as durably as the store promises (the
    file store, ``node.stores.contracts.ContractStore``: atomically, fsynced); ``items`` gives every record,
    or for one that does not decode the reason instead; ``version`` advances with every put and delete of
    this process (a reader's cache key)."""

    version: int

    def put(self, key: str, rec) -> None: ...

    def delete(self, key: str) -> None: ...

    def items(self) -> list[tuple[str, object]]: ...


class MemoryContractStore:
    """Contract records by key, in memory (the default; tests, the simulator). A subclass keeps the encoded
    bytes elsewhere by overriding ``_write``, ``_remove`` and ``_raw`` (``node.stores.contracts``)."""

    def __init__(self, *, record_type: type) -> None:
        self.record_type = record_type  # the protocol's record (``contract_run.RunRecord``, ...)
        self._mem: dict[str, bytes] = {}
        self.version = 0  # advanced by every put and delete of this process (a reader's cache key)

    def put(self, key: str, rec) -> None:
        data = wire.encode(rec)
        self.version += 1
        self._write(key, data)

    def delete(self, key: str) -> None:
        self.version += 1
        self._remove(key)

    def items(self) -> list[tuple[str, object]]:
        """Every record by key; a record that does not decode is returned as the reason instead."""
        out: list[tuple[str, object]] = []
        for k, v in self._raw():
            try:
                out.append((k, wire.decode(v, self.record_type, canonical=False)))  # our own, maybe older
            except wire.WireError as exc:
                out.append((k, exc.reason))
        return out

    def _write(self, key: str, data: bytes) -> None:
        self._mem[key] = data

    def _remove(self, key: str) -> None:
        self._mem.pop(key, None)

    def _raw(self) -> list[tuple[str, bytes]]:
        return sorted(self._mem.items())


# ------------------------------------------------------------------ funds and claims
FUNDS_OK, FUNDS_SHORT, FUNDS_GONE, FUNDS_UNKNOWN = "ok", "short", "gone", "unknown"
FUNDS_MISPRICED = "mispriced"  # the declared USD value is beyond risk.price_tolerance at our price (no one cheated)


def _held(answer) -> int | None:
    """The confirmed balance no pending transaction spends, from a ``check_funds`` answer: a
    ``node.ledger.base.Balance`` (min of confirmed and unconfirmed) or an int; None for anything else (a
    yes/no answer cannot show an amount)."""
    from node.ledger.base import Balance

    if isinstance(answer, Balance):
        return min(answer.confirmed, answer.unconfirmed)
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer
    return None


def funds_state(check_funds: Callable[[str, str], object], chunk, usd_cents: int = 0, price_of=None,
                tolerance: float = 0.10) -> tuple[str, str]:
    """Does ``chunk`` hold, CONFIRMED and unspent, at least its committed ``amount`` (and, when a USD value
    was declared for it, ``usd_cents``, is that value within ``tolerance`` of the amount at our own price,
    ``price_of(asset) -> Price``)? (state, reason): ``FUNDS_OK`` / ``FUNDS_SHORT`` (less than committed) /
    ``FUNDS_MISPRICED`` (a declared value our price does not bear out) / ``FUNDS_GONE`` (nothing left) / ``FUNDS_UNKNOWN`` (our
    ledger or price feed could not answer: retried, no one blamed). Never believes the declared amount: the
    ledger's confirmed balance decides. Blocking: run it as a task (``LedgerCall``), never inside ``handle``."""
    priced = price_state(chunk, usd_cents, price_of, tolerance)
    if priced is not None:
        return priced
    try:
        answer = check_funds(chunk.asset, chunk.address)
    except Exception as exc:  # ledger unreachable: do not go on without knowing
        return FUNDS_UNKNOWN, f"funds unknown: {type(exc).__name__}: {exc}"
    have = _held(answer)
    if have is None:
        return FUNDS_UNKNOWN, (f"funds unknown: the ledger answer {answer!r} is not a confirmed balance "
                               "(check_funds must return node.ledger.base.Balance)")
    if have >= chunk.amount:
        return FUNDS_OK, ""
    if have <= 0:
        return FUNDS_GONE, f"funds check: no confirmed funds at {chunk.address} (committed {chunk.amount})"
    return FUNDS_SHORT, (f"funds check: {chunk.address} holds {have} confirmed, less than the committed "
                         f"amount {chunk.amount} of {chunk.asset}")


def price_state(chunk, usd_cents: int, price_of, tolerance: float = 0.10) -> tuple[str, str] | None:
    """None when no USD value was declared for ``chunk`` (or we have no price feed) or when ``usd_cents`` is
    within ``tolerance`` of the chunk's amount at our own price (``price_of(asset) -> Price``, asked now);
    else (``FUNDS_MISPRICED``, reason naming risk.price_tolerance) or (``FUNDS_UNKNOWN``, reason) when our feed
    cannot answer. Blocking (a feed may be asked): in a task, never inside ``handle``."""
    if not usd_cents or price_of is None:
        return None
    from node.assets.prices import declared_usd_mismatch

    try:
        price = price_of(chunk.asset)
    except Exception as exc:
        return FUNDS_UNKNOWN, f"price unknown for {chunk.asset}: {type(exc).__name__}: {exc}"
    bad = declared_usd_mismatch(chunk.asset, chunk.amount, usd_cents, price, tolerance)
    return (FUNDS_MISPRICED, f"price check: chunk at {chunk.address}: {bad}") if bad else None


def funds_now(check_funds: Callable[[str, str], object], chunk: Chunk) -> bool | str:
    """Are the chunk's committed funds there: True, False (gone, or less than its committed amount), or the
    reason our ledger could not answer (not the peer: retried); blocking: run it as a task (``LedgerCall``),
    never inside ``handle``. A plain yes/no ``check_funds`` (key escrow's recovery sweep asks only whether
    the funds went elsewhere) is taken as it is."""
    try:
        answer = check_funds(chunk.asset, chunk.address)
    except Exception as exc:  # ledger unreachable: do not go on without knowing
        return f"funds unknown: {type(exc).__name__}: {exc}"
    if isinstance(answer, bool):
        return answer
    state, why = funds_state(lambda a, b: answer, chunk)
    return why if state == FUNDS_UNKNOWN else state == FUNDS_OK


def claim_chunk(policy: str, claim: Callable[[Chunk], str] | None, check_funds: Callable[[str, str], bool],
                chunk: Chunk, r: int) -> ClaimRecord:
    """Settle a received key by policy: "sweep" (``claim``: to a fresh owner address; the sweep landing proves
    the funds were there) or "keep" (the funds are checked). "claim-failed" is our own ledger's failure
    (retry, blame no one); "double-spent" names what the ledger says."""
    from node.ledger.base import AlreadySpent

    def funds() -> bool | ClaimRecord:
        there = funds_now(check_funds, chunk)
        return ClaimRecord(r, "claim-failed", "", there) if isinstance(there, str) else there

    if policy == "keep":
        there = funds()
        if isinstance(there, ClaimRecord):
            return there
        if there:
            return ClaimRecord(r, "kept")
        return ClaimRecord(r, "double-spent", "", f"funds at {chunk.address} are gone")
    # sweep: a sweep that lands proves the funds were there, so the ledger is asked about the funds only
    # when the sweep fails (gone: double-spent; still there: our claim failed, retried)
    try:
        txid = claim(chunk)
    except AlreadySpent as exc:
        return ClaimRecord(r, "double-spent", "", str(exc))
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        there = funds()
        if isinstance(there, ClaimRecord):
            return ClaimRecord(r, "claim-failed", "", f"{detail}; {there.detail}")
        return ClaimRecord(r, "double-spent" if not there else "claim-failed", "", detail)
    return ClaimRecord(r, "claimed", txid)


def sweep_claimer(enclave: Callable[[], object], ledger, fresh_address: Callable[[Chunk], str]
                  ) -> Callable[[Chunk], str]:
    """The default claim: export the received key to the owner and sweep the deposit to ``fresh_address(chunk)``.

    ``enclave`` returns the current enclave (it changes across a restart); ``ledger`` is any
    ``node.ledger.base.Ledger``. Idempotent: a deposit already swept to that owner address (a claim
    interrupted by a crash) returns the earlier sweep's txid. When someone else spent the deposit
    first it raises ``AlreadySpent`` naming the winning transaction (the double-spend evidence).
    """
    from node.ledger.base import AlreadySpent, InsufficientFunds

    def claim(chunk: Chunk) -> str:
        priv = enclave().export_to_owner(chunk.pubkey)
        to = fresh_address(chunk)
        try:
            return ledger.sweep(chunk.asset, priv, to)
        except (InsufficientFunds, AlreadySpent) as exc:
            spends = [e.txid for e in ledger.watch([chunk.address])[0] if e.kind == "spend"]
            if not spends:
                raise
            ours = {e.txid for e in ledger.watch([to])[0] if e.kind == "deposit"}
            if spends[-1] in ours:
                return spends[-1]
            raise AlreadySpent(f"deposit {chunk.address} already spent by {spends[-1]}") from exc

    return claim
