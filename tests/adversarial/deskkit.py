"""Real in-process nodes with a SwapDesk (make_offer_stack + add_switchboard: in-process enclaves, offer books,
deposits on a shared dev ledger) on the in-memory gossip harness, and a settable clock: the kit of the contract
policy, cap and amount attacks (test_policy.py, test_caps.py, test_amounts.py)."""

from __future__ import annotations

from node import identity
from node.app.stack import add_switchboard, make_offer_stack
from node.app.deposits import DepositStore, make_deposits
from node.contracts.desk.swaps import SwapDesk


NET = "dev"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def make_node(root, name: str, ledger, asset: str, n: int, now: float, **desk):
    d = root / name
    d.mkdir(parents=True)
    pid = identity.peer_id(d)
    stack = make_offer_stack(d, NET, pid, in_process=True)
    store = DepositStore(d / "deposits.sqlite")
    stack.ledger, stack.deposits, stack.datadir, stack.chunk_usd_cents = ledger, store, d, 5_000
    make_deposits(stack.enclave, ledger, store, asset=asset, chunks=n, chunk_usd_cents=5_000, now=now, net=NET,
                  peer_id=pid)
    stack.refresh_offers(now)
    add_switchboard(stack, d)
    stack.desk = SwapDesk(stack, clock=Clock(now), **desk)
    return stack


def mesh(root, names, asset: str = "BTC-REG", n: int = 6):
    """(net, nodes, now, ledger): a node per name with ``n`` chunks of $50 of ``asset`` each on one dev ledger,
    connected on one in-memory mesh. Close the nodes when done."""
    import time

    from node.ledger.devnet import DevLedger
    from node.protocols.testing import GossipNet

    now = time.time()
    ledger = DevLedger(None, automine=True)
    nodes = [make_node(root, name, ledger, asset, n, now) for name in names]
    net = GossipNet()
    connect(net, now, *nodes)
    return net, nodes, now, ledger


def connect(net, now: float, *stacks) -> None:
    """The nodes on one gossip mesh, each announcing its offer sheet to the others."""
    for s in stacks:
        net.add(s.peer_id, s.protocol, s.rfp, s.desk.run, now=now)
    for s in stacks:
        net.call(s.peer_id, s.protocol, s.protocol.announce(now), now)
    for s in stacks:  # each holds the other's sheet
        assert s.book.count(now=now) == sum(len(o.protocol.own.offers) for o in stacks if o is not s)


class DrainedLedger:
    """A node's ledger where the chunks at ``addresses`` were spent (a double spend by their giver's device)."""

    def __init__(self, ledger, addresses):
        self._ledger, self.addresses = ledger, set(addresses)

    def balance(self, asset, address):
        from node.ledger.base import Balance

        return Balance(0, 0) if address in self.addresses else self._ledger.balance(asset, address)

    def __getattr__(self, name):
        return getattr(self._ledger, name)


def deliver(net, *stacks) -> None:
    """Hand each desk the notices its protocols raised (and those that follow from them), as the daemon's driver
    does (``on_notify``), until none is left."""
    busy = True
    while busy:
        busy = False
        for s in stacks:
            notes = net.peers[s.peer_id].notes
            while notes:
                busy = True
                s.desk.on_notify(notes.pop(0))
