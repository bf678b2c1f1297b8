"""The common ledger interface: what any wallet can serve.

Balance of an address (confirmed and unconfirmed), send from a key, sweep
everything a key controls, confirmations of a transaction, current height,
and watching addresses. Errors are typed, with messages a person can act on.

Private keys are *used* by ``send`` and ``sweep`` on the caller's side
(``WalletOps`` signs locally and submits signed transactions); a ledger
backend never receives one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LedgerError(Exception):
    code = "ledger-error"


class InsufficientFunds(LedgerError):
    code = "insufficient-funds"


class AlreadySpent(LedgerError):
    code = "already-spent"


class UnknownAsset(LedgerError):
    code = "unknown-asset"


class LedgerUnreachable(LedgerError):
    code = "unreachable"


class InvalidTransaction(LedgerError):
    code = "invalid-transaction"


ERRORS = {c.code: c for c in (LedgerError, InsufficientFunds, AlreadySpent, UnknownAsset, LedgerUnreachable,
                              InvalidTransaction)}


@dataclass(frozen=True)
class Balance:
    confirmed: int
    unconfirmed: int  # confirmed + mempool effects


@dataclass(frozen=True)
class WatchEvent:
    seq: int
    asset: str
    address: str
    kind: str  # "deposit" | "spend"
    amount: int
    txid: str


class Ledger(Protocol):
    def balance(self, asset: str, address: str) -> Balance: ...

    def send(self, asset: str, privkey: bytes, to: str, amount: int) -> str: ...

    def sweep(self, asset: str, privkey: bytes, to: str) -> str: ...

    def confirmations(self, asset: str, txid: str) -> int: ...

    def height(self, asset: str) -> int: ...

    def watch(self, addresses: list[str], since: int = 0) -> tuple[list[WatchEvent], int]: ...
