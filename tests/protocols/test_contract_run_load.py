"""contract-run/1 under load and across restarts (issue #22): a responder slower than the retry interval, a
party restarted just after it agreed to a ring, a ``who`` that fails. Real enclaves, a real DevLedger, the
in-memory ConnectionPair-style wire of ``test_contract_run``."""

from __future__ import annotations

from node import wire
from node.contracts import stdlib
from node.contracts.spec import make_spec, spec_id
from node.protocols.base import ResponseReceived, Respond, SendRequest
from node.protocols.contract_run import DONE
from node.ledger.devnet import DevLedger
from tests.protocols.test_contract_run import AMOUNT, FEE, NET, NOW, Net, Side, every_second, ring_net, stopped


class SlowNet(Net):
    """The wire as the runtime behaves on a loaded machine: every answer reaches its requester ``slow`` seconds
    after the request, unless the request's ``timeout`` is shorter: then the requester gets a timeout instead
    (the answer is thrown away)."""

    def __init__(self, *sides: Side, slow: float) -> None:
        self.slow = slow
        self.due: list[tuple[float, str, int, ResponseReceived]] = []  # (when, peer, gen, event)
        self.timeouts: dict[int, float] = {}  # call id -> its request's timeout
        super().__init__(*sides)

    def carry(self, side, cmds) -> None:
        for cmd in cmds:
            if isinstance(cmd, Respond) and cmd.request_id in self.calls:
                peer, gen, rid, protocol = self.calls.pop(cmd.request_id)
                timeout = self.timeouts.pop(cmd.request_id)
                ev = ResponseReceived(protocol, side.peer_id, rid, cmd.data) if self.slow <= timeout else \
                    ResponseReceived(protocol, side.peer_id, rid, b"", "timeout")
                self.due.append((self.now + min(self.slow, timeout), peer, gen, ev))
                continue
            before = self.call_ids
            super().carry(side, [cmd])
            if isinstance(cmd, SendRequest) and self.call_ids > before:
                self.timeouts[self.call_ids] = cmd.timeout

    def step(self) -> bool:
        if not self.queue and self.due:
            first = min(self.due, key=lambda d: d[0])
            timer = min(self.timers.values(), default=float("inf"))
            if first[0] <= timer:
                self.due.remove(first)
                self.now = max(self.now, first[0])
                self.queue.append(first[1:])
                return True
        return super().step()


def test_a_responder_slower_than_the_retry_interval_still_completes_the_contract(tmp_path):
    """A loaded machine: every answer comes 5 s after its request. Each request used to wait ``retry_interval``
    (2 s) for its answer, so the runtime threw every answer away, and a copy went out every 2 s while the
    first was still being answered (release/1 had the same and was fixed the same way: one request per contract
    in flight, ``request_timeout`` to answer). The releases' acks never came: the contract ended only at its
    round timeout, "the peer never acknowledged our last release", with copies piled on both enclaves."""
    ledger = DevLedger(None, automine=True)
    a = Side("A", tmp_path, ledger, "BTC-REG", 3)
    b = Side("B", tmp_path, ledger, "LTC", 3)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                  "deadline": 300}, [a.party(), b.party()])
    cid = spec_id(spec)
    net = SlowNet(a, b, slow=5.0)
    net.height("BTC-REG", 100)
    for s in (a, b):
        s.specs.append(spec)
        s.proto.expect(spec)
    for s in (a, b):
        net.call(s, s.proto.start, spec)
    net.run(until=200, done=stopped(cid, a, b))
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    for s in (a, b):
        assert "never acknowledged" not in s.proto.runs[cid.hex()].rec.reason, s.proto.runs[cid.hex()].rec.reason
    assert net.now - NOW < a.proto.round_timeout, f"took {net.now - NOW:.0f} s: the answers were not used"
    for c in b.commits:
        assert a.balance(c) == AMOUNT - FEE
    for c in a.commits:
        assert b.balance(c) == AMOUNT - FEE
    releases = [(src, c.peer, wire.decode(c.data, wire.Signed).body) for src, c in net.sent
                if wire.decode(c.data, wire.Signed).kind == "release"]
    assert len(releases) == len(set(releases)) == 6, f"{len(releases) - len(set(releases))} copies of releases"


def test_a_ring_party_restarted_just_after_agreeing_still_runs_the_ring_to_done(tmp_path):
    """E agreed to the ring (``expect``) and was killed before C's open reached it. The agreement was held in
    memory only: the restarted E refused every open "not-expected", and the ring could end only by refund at its
    deadline (the fault trials, tests/faults: a ring party killed just after agreement). Now it is kept in the
    ``agreed`` store and the restarted E takes the open."""
    sides, spec, net = ring_net(tmp_path, 1)
    c, d, e = sides
    cid = spec_id(spec)
    for s in (d, e):
        s.proto.expect(spec, net.now)  # agreed (over /keyswitch/contract/1); C, the initiator, starts it
    net.crash(e)  # killed just after agreeing: a new process over the same data directory
    while net.queue:  # E's Started
        net.step()
    assert e.gen == 1 and e.proto.runs == {}
    net.call(c, c.proto.start, spec)
    every_second(net, 60, lambda t: None)
    assert [s.proto.state(cid) for s in sides] == [DONE] * 3, [s.notes[-1:] for s in sides]
    for k, s in enumerate(sides):
        assert s.proto.summary(cid)["refunded"] == [], (s.name, s.proto.summary(cid))  # the ring ran, no refund
        for ch in s.commits:
            assert sides[(k + 1) % 3].balance(ch) == AMOUNT - FEE
    assert [s.proto.agreed.items() for s in sides] == [[], [], []]  # kept only until the contract ran
