"""The application layer: the node a person runs (``keyswitch run``), composed of the layers below it.

``daemon`` starts it (enclave, ledger, offer book, protocols on the libp2p runtime, the local API);
``services`` is what the local API asks of it; ``stack`` builds the offer stack the daemon, the simulator
and the tests share; the desks (``requestdesk``, ``node.contracts.desk.swaps``, ``node.contracts.desk.escrow``) drive contracts;
``deposits`` and ``balance`` keep the node's deposits and what its contracts moved. Nothing below this
package imports it.
"""
