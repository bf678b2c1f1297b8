"""A peer's open of a new contract: the other parties' funds are checked in a ledger task (``LedgerCall``),
never inside ``handle``, and the open is answered when the task is done. Real enclaves, a real DevLedger."""

from __future__ import annotations

from node.contracts import stdlib
from node.contracts.spec import make_spec, spec_id
from node.contracts.protocol.run import DONE, RUNNING
from node.ledger.base import Balance
from node.ledger.devnet import DevLedger
from tests.protocols.contract_run_kit import AMOUNT, FEE, NET, Net, Side, stopped


def setup(tmp_path, fund_a=True):
    ledger = DevLedger(None, automine=True)
    a = Side("A", tmp_path, ledger, "BTC-REG", 2)
    b = Side("B", tmp_path, ledger, "LTC", 2)
    if not fund_a:  # A commits a second deposit key nobody ever funded
        from node.assets import address_for
        from node.contracts.spec import Commit

        (pub,) = a.raw.generate_keys(1)
        a.commits[1] = Commit(pub, "BTC-REG", address_for("BTC-REG", pub), AMOUNT, 5_000)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 10_000,
                                                  "deadline": 300}, [a.party(), b.party()])
    net = Net(a, b)
    net.height("BTC-REG", 100)
    return ledger, a, b, spec, net


def only_in_tasks(net, side, calls):
    check = side.proto.check_funds

    def in_task(asset, addr):
        assert net.in_task, "a funds check inside handle"
        calls.append(addr)
        return check(asset, addr)

    side.proto.check_funds = in_task


def test_an_open_from_a_peer_checks_funds_in_a_task_and_the_contract_runs(tmp_path):
    ledger, a, b, spec, net = setup(tmp_path)
    calls = []
    only_in_tasks(net, b, calls)
    b.specs.append(spec)
    b.proto.expect(spec)  # B only expects: A's open reaches B's handler
    net.call(a, a.proto.start, spec)
    cid = spec_id(spec)
    net.run(done=stopped(cid, a, b))
    assert a.proto.state(cid) == DONE and b.proto.state(cid) == DONE
    # B checked A's two deposits in tasks: at the open, and each again before it claimed the key (a chunk
    # drained since the open would stop the contract there)
    assert sorted(calls) == sorted(2 * [c.address for c in a.commits])
    for c in a.commits:
        assert b.balance(c) == AMOUNT - FEE


def test_an_open_whose_funds_are_gone_is_refused_with_the_reason(tmp_path):
    ledger, a, b, spec, net = setup(tmp_path, fund_a=False)
    calls = []
    only_in_tasks(net, b, calls)
    b.specs.append(spec)
    b.proto.expect(spec)
    a.proto.check_funds = lambda asset, addr: Balance(10**12, 10**12)  # A does not look at B's side here
    net.call(a, a.proto.start, spec)
    cid = spec_id(spec)
    net.run(until=10)
    assert b.proto.state(cid) is None and calls  # B never took the contract
    errs = [n.detail for n in a.notes if n.kind == "contract.peer-error"]
    assert errs and errs[0]["code"] == "funds" and a.commits[1].address in errs[0]["reason"]
    assert a.proto.state(cid) == RUNNING and a.journal_releases() == []
