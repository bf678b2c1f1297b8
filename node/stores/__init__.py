"""The node's persistent state, in one place: every SQLite database and record file the protocols and the risk
engine keep their state in.

The sans-IO layers (``node.protocols``, ``node.risk``, ``node.contracts``) do no I/O: each declares the narrow
interface of the store it needs and keeps its state in memory by default (tests, the simulator); the
composition root (``node.app.daemon``, ``node.contracts.desk.swaps``) opens the stores below in the node's data directory and
hands them in.

========================  =====================================  ============================================
module                    file in the data directory             given to
========================  =====================================  ============================================
``contracts``             ``runs/*.rec``, ``runs-agreed/*.rec``  ``ContractRun.store`` / ``.agreed``
                          (``contracts/*.rec``: release/1's,     (``claims.RecordStore``)
                          migrated at start)
``release_records``       ``release-records.sqlite``             ``outcomes.ReleaseRecords(store=...)``
``reputation``            ``reputation.sqlite``                  ``risk.reputation.Reputation(store)``
``offerbook``             ``offers.sqlite``                      ``RiskEngine.book``, ``OffersProtocol.book``
``requests``              ``requests.sqlite``                    ``node.app.requestdesk.RequestDesk`` (each
                                                                 ``RequestRun.to_state``)
``arbitrations``          ``arbiter.sqlite``                     ``node.contracts.desk.arbiter.Arbitrations``
                                                                 (the escrows this node arbitrates)
========================  =====================================  ============================================

Files and schemas are those the protocols used to open themselves: an existing data directory opens as it is.
Writes keep their crash safety: a contract record is replaced atomically and fsynced (``node.fsutil``), each
SQLite change is one transaction (WAL).
"""
