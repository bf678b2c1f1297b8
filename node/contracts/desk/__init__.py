"""node.contracts.desk: the host side of contracts. It opens no file or database and reads no clock itself: its
stores, the claim seed and the ledger heights are handed to it by the composition root (``node.app``).

* ``swaps``: ``SwapDesk``, a node's swaps from a plan to claimed chunks (``swaprun``: a swap's run over the
  contract protocol, host side), written in parts: ``swaps_plan`` (planning), ``swaps_accept`` (the responder's
  policy), ``swaps_holds`` (exposure holds); ``reporter``: ``OutcomeReporter``, outcomes to reputation and reports.
* ``escrow``: ``EscrowDesk``, key escrow in the daemon (``/keyswitch/key-escrow/1``): holder, owner, recovery.
  (Escrows, options and rings themselves are planned, agreed and approved by ``SwapDesk``.)
* ``arbiter``: ``Arbitrations``, the escrows this node arbitrates, kept on disk across restarts.
* ``lapse``: ``Lapses``, when agreements, reservations and proposals not yet opened lapse, on the monotonic clock.

The desks are built by the composition root (``node.app``); they talk to the enclave through the node's
client, to the ledgers through the asset registry, and to the protocols through the driver.
"""
