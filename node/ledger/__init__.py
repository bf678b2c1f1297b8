"""Ledgers behind one small interface (``node.ledger.base.Ledger``).

* ``DevLedger`` (``node.ledger.devnet``): the embedded development ledger, SQLite.
* ``DevLedgerClient`` (``node.ledger.client``): the same interface over HTTP.
"""

from node.ledger.base import (  # noqa: F401
    AlreadySpent, Balance, InsufficientFunds, InvalidTransaction, Ledger, LedgerError, LedgerUnreachable,
    UnknownAsset, WatchEvent,
)
