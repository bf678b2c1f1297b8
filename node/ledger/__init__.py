"""Ledgers behind one small interface (``node.ledger.base.Ledger``).

* ``DevLedger`` (``node.ledger.devnet``): the embedded development ledger, SQLite.
* ``DevLedgerClient`` (``node.ledger.client``): the same interface over HTTP.
* ``EvmLedger`` (``node.ledger.evm``): an Ethereum-like asset on a real EVM node (anvil) over JSON-RPC.
* ``RoutedLedger`` (``node.ledger.router``): one asset to an EVM node, the rest to a dev ledger
  (``ledger.evm_url``).
"""

from node.ledger.base import (  # noqa: F401
    AlreadySpent, Balance, InsufficientFunds, InvalidTransaction, Ledger, LedgerError, LedgerUnreachable,
    UnknownAsset, WatchEvent,
)
