"""Commands are data, one interpreter, handle off the event loop (issue #19, part "cmds").

Driven as a driver is driven: protocols hand back commands, the three drivers (the runtime's
``ProtocolDriver``, the simulator's ``run_cmds``, the protocol test harness ``GossipNet``) carry them out.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from pathlib import Path

import pytest
import trio

from node.protocols.base import LedgerCall, Notify, SetTimer, Started, TaskDone, TimerFired, Validation
from node.protocols.interpret import LEDGER_OPS, UnknownCommand
from node.contracts.protocol.claims import FUNDS_OK
from node.contracts.protocol.schedule import Chunk
from node.protocols.testing import GossipNet

CHUNK = Chunk("BTC-REG", "bcrt1qdeposit", bytes([2]) + bytes(32), 1_000)
SMOKE = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "smoke.toml"


@dataclasses.dataclass(frozen=True)
class Bogus:
    """A command no interpreter knows (a typo'd class, a command added without its interpreter branch)."""

    what: str = "launch"


class Proto:
    """A minimal sans-IO protocol: records its events; at ``Started`` returns ``on_start``'s commands."""

    topics: tuple = ()
    stream_protocols: tuple = ()
    handle_blocks = True  # its handle calls the enclave, as the contract protocols' do

    def __init__(self, on_start=(), check_funds=None, block: float = 0.0) -> None:
        self.on_start = list(on_start)
        self.events: list = []
        self.block = block
        self.blocked = threading.Event()
        if check_funds is not None:
            self.check_funds = check_funds

    def validate(self, topic, data, from_peer, now):
        return Validation.accept()

    def handle(self, event, now):
        self.events.append(event)
        if isinstance(event, Started):
            if self.block:
                time.sleep(self.block)  # a blocking enclave IPC, as release/contract_run make inside handle
                self.blocked.set()
            return list(self.on_start)
        return []


def funds_call(name: str = "a.funds") -> LedgerCall:
    return LedgerCall(name, "funds_state", (CHUNK,))


def test_no_command_carries_a_callable():
    """Every command is plain data: no field of any command class is typed as (or holds) a callable."""
    import typing

    from node.protocols import base

    for cls in typing.get_args(base.Command):
        for f in dataclasses.fields(cls):
            assert "Callable" not in str(f.type), f"{cls.__name__}.{f.name} is {f.type}"
    assert not hasattr(base, "RunTask"), "RunTask (a closure in a command) is back"


# ------------------------------------------------------------------------------- the protocol test harness
def test_harness_routes_a_ledger_result_to_the_issuing_protocol_only():
    issuer = Proto([funds_call()], check_funds=lambda asset, address: 5_000)
    bystander = Proto()
    net = GossipNet()
    net.add("QmPeer", bystander, issuer)
    done = [e for e in issuer.events if isinstance(e, TaskDone)]
    assert len(done) == 1 and done[0].name == "a.funds" and done[0].result == (FUNDS_OK, "")
    assert not [e for e in bystander.events if isinstance(e, TaskDone)], \
        f"another protocol of the peer got the issuer's result: {bystander.events}"


def test_harness_refuses_an_unknown_command():
    net = GossipNet()
    with pytest.raises(UnknownCommand, match="Bogus"):
        net.add("QmPeer", Proto([Bogus()]))


def test_an_unknown_ledger_op_is_refused_where_it_is_issued():
    net = GossipNet()
    with pytest.raises(UnknownCommand, match="format_disk"):
        net.add("QmPeer", Proto([LedgerCall("x", "format_disk", ())], check_funds=lambda a, b: 0))
    assert "format_disk" not in LEDGER_OPS


# ------------------------------------------------------------------------------------------- the simulator
@pytest.fixture(scope="module")
def sim():
    from simulations.engine import Engine
    from simulations.scenario import load

    return Engine(load(SMOKE))


def test_simulator_refuses_an_unknown_command(sim):
    node = sim.nodes[0]
    with pytest.raises(UnknownCommand, match="Bogus"):
        sim.run_cmds(node, [Bogus()], node.offers)


def test_simulator_runs_a_ledger_call_and_routes_its_result_to_the_issuer(sim):
    node = sim.nodes[0]
    issuer = Proto(check_funds=lambda asset, address: 0)
    sim.run_cmds(node, [funds_call("sim.funds")], issuer)
    done = [e for e in issuer.events if isinstance(e, TaskDone)]
    assert len(done) == 1 and done[0].name == "sim.funds" and done[0].result[0] == "gone", done


# ------------------------------------------------------------------------------------------ the runtime
class FakeHost:
    def set_stream_handler(self, protocol, handler) -> None:
        pass


class FakeNode:
    """What ``ProtocolDriver`` needs of a ``Node`` when no protocol gossips: no network at all."""

    pubsub = None
    host = FakeHost()
    peer_id = "QmFakeNode"

    def on_peer(self, cb) -> None:
        pass

    def connected_peers(self) -> list:
        return []


async def test_a_blocking_handle_does_not_stall_the_event_loop():
    """While a protocol's handle blocks 0.5 s (an enclave IPC), a trio timer elsewhere fires on time."""
    from node.runtime.driver import ProtocolDriver

    p = Proto(block=0.5)
    drv = ProtocolDriver(FakeNode(), [p])
    async with trio.open_nursery() as n:
        n.start_soon(drv.run)
        t0 = time.perf_counter()
        await trio.sleep(0.1)  # the driver starts (and its Started handle blocks) at this checkpoint
        late = time.perf_counter() - t0 - 0.1
        await trio.to_thread.run_sync(p.blocked.wait, 5)
        n.cancel_scope.cancel()
    assert p.blocked.is_set() and isinstance(p.events[0], Started), "the handle never ran: the test proves nothing"
    assert late < 0.2, f"a 0.1 s trio timer fired {late:.3f} s late while a handle blocked: the event loop stalled"


def test_the_contract_protocols_say_their_handle_blocks():
    """The protocols whose handle calls the enclave are the ones the runtime runs off the event loop."""
    from node.contracts.protocol.run import ContractRun
    from node.protocols.keyescrow import KeyEscrow
    assert all(getattr(c, "handle_blocks", False) for c in (ContractRun, KeyEscrow))


async def test_events_reach_a_blocking_protocol_in_order():
    """One worker at a time: events are handled in the order they came, even when each handle blocks."""
    from node.runtime.driver import ProtocolDriver

    p = Proto(on_start=[SetTimer(f"t{k}", 0.0) for k in range(5)])
    drv = ProtocolDriver(FakeNode(), [p])
    async with trio.open_nursery() as n:
        n.start_soon(drv.run)
        with trio.fail_after(5):
            while len(p.events) < 6:
                await trio.sleep(0.01)
        for k in range(5, 10):
            drv._post(0, TimerFired(f"t{k}"))
        with trio.fail_after(5):
            while len(p.events) < 11:
                await trio.sleep(0.01)
        n.cancel_scope.cancel()
    fired = [e.name for e in p.events if isinstance(e, TimerFired)]
    assert sorted(fired[:5]) == [f"t{k}" for k in range(5)] and fired[5:] == [f"t{k}" for k in range(5, 10)], fired


async def test_runtime_routes_a_ledger_result_to_the_issuer_and_counts_an_unknown_command(caplog):
    from node.runtime.driver import ProtocolDriver

    issuer = Proto([funds_call("rt.funds"), Bogus()], check_funds=lambda asset, address: 5_000)
    bystander = Proto([SetTimer("tick", 0.0)])
    drv = ProtocolDriver(FakeNode(), [bystander, issuer])
    with caplog.at_level(logging.ERROR, logger="keyswitch.runtime.driver"):
        async with trio.open_nursery() as n:
            n.start_soon(drv.run)
            with trio.fail_after(5):
                while not any(isinstance(e, TaskDone) for e in issuer.events):
                    await trio.sleep(0.01)
            await trio.sleep(0.05)
            n.cancel_scope.cancel()
    (done,) = [e for e in issuer.events if isinstance(e, TaskDone)]
    assert done.name == "rt.funds" and done.result == (FUNDS_OK, "") and done.error is None
    assert not [e for e in bystander.events if isinstance(e, TaskDone)]
    assert drv.errors == 1 and "no interpreter for command Bogus" in caplog.text, (drv.errors, caplog.text)


# ------------------------------------------------------------------------------------------- randomness
def test_rfp_request_ids_come_from_the_rng_passed_in():
    from node.stores.offerbook import OfferBook
    from node.peerkey import PeerSigner
    from node.protocols.rfp import RfpProtocol
    from node.risk.allocate import Limits
    from node.risk.engine import RiskEngine

    def rid(seed: int) -> bytes:
        signer = PeerSigner(bytes(32))
        proto = RfpProtocol(net="testnet", engine=RiskEngine(OfferBook(None), limits=Limits(3, 0.34, 0.5)),
                            sign=signer.sign, rng=random.Random(seed))
        proto.handle(Started(signer.peer_id), 1_000.0)
        return proto.request("BTC-REG", 5_000, "swap", 1_000.0)[0]

    assert rid(1) == rid(1) and rid(1) != rid(2)
    assert len(rid(3)) == 16


def test_notify_is_still_plain_data():
    n = Notify("k", {"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.kind = "other"  # type: ignore[misc]
