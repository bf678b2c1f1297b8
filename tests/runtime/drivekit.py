"""A ``ProtocolDriver`` without a network, and a contract-like protocol whose worker a test can hold.

What the bug needs (issue #19, ``ProtocolDriver.call``): a driver whose one worker is busy with a slow handle (a
contract protocol's enclave call), so that a call queued behind it is not taken in time. ``Held.hold`` blocks
the worker until ``release``; every other protocol's events and calls queue behind it, in order.
"""

from __future__ import annotations

import threading

import trio

from node.runtime.driver import ProtocolDriver


class NoNetwork:
    """What ``ProtocolDriver.run`` asks of a node, with no gossip, no streams and no peers."""

    pubsub = None
    peer_id = "12D3KooNoNetwork"

    def on_peer(self, callback) -> None:
        pass

    def connected_peers(self) -> list[str]:
        return []


class Held:
    """A protocol whose handle blocks (``handle_blocks``, like the contract protocols): ``hold`` makes the
    driver's worker wait until ``release``."""

    topics = ()
    stream_protocols = ()
    handle_blocks = True

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()

    def handle(self, event, now):
        return []

    def hold(self, driver: ProtocolDriver) -> None:
        def block(now: float):
            self.entered.set()
            self.gate.wait(60)
            return []

        driver.submit(self, block)

    async def held(self) -> None:
        """Until the worker is inside ``hold``'s call."""
        await trio.to_thread.run_sync(self.entered.wait, 60)

    def release(self) -> None:
        self.gate.set()


class Plain:
    """A protocol run on the trio thread (like the requests protocol), recording the calls that ran."""

    topics = ()
    stream_protocols = ()

    def __init__(self) -> None:
        self.ran: list[str] = []

    def handle(self, event, now):
        return []


async def started_driver(nursery, *protocols) -> ProtocolDriver:
    return await nursery.start(ProtocolDriver(NoNetwork(), list(protocols)).run)


async def drained(driver: ProtocolDriver, protocol) -> None:
    """Until every event and call queued before now went through (a call queued after them has returned)."""
    await driver.call(protocol, lambda now: (None, []), timeout=60)
