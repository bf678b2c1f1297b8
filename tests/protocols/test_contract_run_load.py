"""contract-run/1 under load and across restarts (issue #22): a responder slower than the retry interval, a
party restarted just after it agreed to a ring, a ``who`` that fails. Real enclaves, a real DevLedger, the
in-memory ConnectionPair-style wire of ``test_contract_run``."""

from __future__ import annotations

from node import wire
from node.contracts import stdlib
from node.contracts.spec import make_spec, spec_id
from node.protocols.base import ResponseReceived, Respond, SendRequest
from node.contracts.protocol.run import DONE, PROTOCOL_ID, WHO_ATTEMPTS
from node.ledger.devnet import DevLedger
from tests.protocols.contract_run_kit import AMOUNT, FEE, NET, NOW, Net, Side, every_second, ring_net, stopped


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


def who_net(tmp_path, failures: int):
    """A asks B ``who``; the first ``failures`` requests fail in transport, as the runtime reports a dial that
    fails (a peer just restarted: "No known addresses to peer")."""
    ledger = DevLedger(None, automine=True)
    a, b = Side("A", tmp_path, ledger, None, 0), Side("B", tmp_path, ledger, None, 0)
    net = Net(a, b)
    left = [failures]

    def refuse(src, cmd):
        if wire.decode(cmd.data, wire.Signed).kind != "who" or not left[0]:
            return False
        left[0] -= 1
        net.queue.append((src.peer_id, src.gen,
                          ResponseReceived(PROTOCOL_ID, cmd.peer, cmd.request_id, b"", "No known addresses to peer")))
        return True

    net.drop = refuse
    net.call(a, a.proto.who, b.peer_id)
    net.run(until=60)
    return a, b, [c for src, c in net.sent if src == a.peer_id]


def test_a_who_that_fails_in_transport_is_tried_again(tmp_path):
    """The daemon's ``who`` (a peer's attested binding, before a contract is built with it) was sent once: a dial
    that failed (the peer just restarted) left the API call waiting its 15 s for nothing."""
    a, b, sent = who_net(tmp_path, WHO_ATTEMPTS - 1)
    assert a.proto.known.get(b.peer_id) == b.binding
    assert len(sent) == WHO_ATTEMPTS
    assert [n.detail["ok"] for n in a.notes if n.kind == "contract.who"] == [True]


def test_a_who_that_always_fails_is_tried_a_bounded_number_of_times_and_reported(tmp_path):
    a, b, sent = who_net(tmp_path, 100)
    assert b.peer_id not in a.proto.known
    assert len(sent) == WHO_ATTEMPTS  # then no more
    (note,) = [n.detail for n in a.notes if n.kind == "contract.who"]
    assert note["ok"] is False and "No known addresses" in note["reason"], note
