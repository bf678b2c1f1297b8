"""An escrow's arbiter across a restart of its host (issue #18).

Real nodes in process (offer stacks, in-process enclaves, the swap desk over real data directories: the arbiter's
``arbiter.sqlite``) on the in-memory network: the payer names the arbiter over /keyswitch/contract/1 (offer kind
"arbiter") as ``POST /v1/contracts`` does, the payer and the payee run the escrow over /keyswitch/contract-run/1,
and the arbiter's host restarts (a new desk over the same data directory, the old one never closed: a crash)
before its operator approves. Before, the arbiter kept the spec in memory only: after the restart ``approve``
answered "no contract X here" and the escrow could never be paid out by its arbiter.
"""

from __future__ import annotations

import pytest

from node.contracts import stdlib
from node.contracts.desk.arbiter import END_LAG, MAX_ARBITRATED_PER_PEER
from node.contracts.spec import Commit, PartySpec, make_spec, spec_id
from node.protocols.base import SendRequest
from tests.adversarial.deskkit import Clock, mesh


@pytest.fixture
def trio_(tmp_path):
    """payer, payee and arbiter, 6 chunks of $50 each on one dev ledger."""
    net, nodes, now, ledger = mesh(tmp_path, ("payer", "payee", "arbiter"))
    yield net, *nodes, now, ledger
    for s in nodes:
        s.close()


def _escrow(payer, payee, arbiter, k: int, refund_height: int):
    c = payer.protocol.own.offers[k]
    return make_spec("dev", stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": refund_height}, [
        PartySpec(payer.protocol.own.binding, [Commit(c.pubkey, c.asset, c.address, c.amount, c.usd_cents)]),
        PartySpec(payee.protocol.own.binding), PartySpec(arbiter.protocol.own.binding, [], False)])


def _offer(net, frm, to, kind: str, spec, at: float) -> tuple[bool, str]:
    """``frm``'s ContractOffer of ``spec`` over /keyswitch/contract/1; ``to``'s answer."""
    rid, cmds = frm.rfp.offer_contract(to.peer_id, kind, spec.encode(), at)
    net.call(frm.peer_id, frm.rfp, cmds, at)
    return frm.rfp.contract_answers[rid]


def _restart(net, stack, now: float) -> None:
    """The host crashes and starts again: a new desk over the same data directory (the old one is not closed)."""
    from node.contracts.desk.swaps import SwapDesk

    stack.desk = SwapDesk(stack, clock=Clock(now))
    net.add(stack.peer_id, stack.protocol, stack.rfp, stack.desk.run, now=now)


def _seconds(net, stacks, t: float, n: int) -> float:
    """``n`` of the daemon's seconds on each runner: heights in, releases out, claims settled."""
    for _ in range(n):
        for s in stacks:
            s.desk.clock.t = t
            net.call(s.peer_id, s.desk.run, s.desk.feed_heights(t), t)
        t += 1
    return t


def test_a_restarted_arbiter_still_approves_and_the_escrow_pays_out(trio_):
    """The arbiter agrees, its host restarts, its operator approves "release": the payee gets the chunk."""
    net, payer, payee, arbiter, now, ledger = trio_
    spec = _escrow(payer, payee, arbiter, 0, ledger.height("BTC-REG") + 100)
    cid = spec_id(spec).hex()
    assert _offer(net, payer, payee, "escrow", spec, now) == (True, "")
    assert _offer(net, payer, arbiter, "arbiter", spec, now) == (True, "")
    net.call(payer.peer_id, payer.desk.run, payer.desk.feed_heights(now) + payer.desk.run.start(spec, now), now)
    t = _seconds(net, (payer, payee), now + 1, 2)
    assert payee.desk.run.state(bytes.fromhex(cid)) == "running"
    assert payer.desk.run.summary(bytes.fromhex(cid))["released"] == []  # nothing moves without the arbiter

    _restart(net, arbiter, t)
    cmds = arbiter.desk.approve(cid, "release", t)  # before: ValueError "no contract <cid> here"
    sent = [c for c in cmds if isinstance(c, SendRequest)]  # (and a timer: sent again until acknowledged)
    assert [c.peer for c in sent] == [payer.peer_id, payee.peer_id]  # the approval goes to both runners
    net.call(arbiter.peer_id, arbiter.desk.run, cmds, t)
    _seconds(net, (payer, payee), t + 1, 4)
    assert payer.desk.run.summary(bytes.fromhex(cid))["released"] == [(0, 1)]
    got = payee.desk.run.summary(bytes.fromhex(cid))
    assert got["received"] == [(0, 0)] and got["state"] == "done", got


def test_the_arbiter_keeps_the_escrow_until_its_refund_height_has_passed_then_drops_it(trio_):
    """The spec is kept (across restarts) until our ledger reads ``END_LAG`` blocks past the refund height, when
    no approval can change the escrow any more; then it is dropped, from disk too."""
    net, payer, payee, arbiter, now, ledger = trio_
    refund = ledger.height("BTC-REG") + 10
    spec = _escrow(payer, payee, arbiter, 0, refund)
    cid = spec_id(spec).hex()
    assert _offer(net, payer, arbiter, "arbiter", spec, now) == (True, "")
    ledger.mine("BTC-REG", refund + END_LAG - 1 - ledger.height("BTC-REG"))  # one block short of the end
    arbiter.desk.refresh_heights(now + 1)  # (the daemon's offer_heights, every few seconds)
    _restart(net, arbiter, now + 2)
    assert arbiter.desk.approve(cid, "refund", now + 2)  # still here: a runner's ledger may lag ours
    ledger.mine("BTC-REG", 1)
    arbiter.desk.refresh_heights(now + 3)
    with pytest.raises(ValueError, match=f"no contract {cid} here"):
        arbiter.desk.approve(cid, "release", now + 3)
    _restart(net, arbiter, now + 4)
    assert cid not in arbiter.desk.arbitrated, "the ended escrow came back from disk"


def test_a_peer_cannot_fill_the_arbiters_table(trio_):
    """Every escrow a peer names us arbiter of is now kept on disk: one peer gets at most
    ``MAX_ARBITRATED_PER_PEER`` of them (the next is refused with the reason, before anything is written), and
    the others' escrows are still taken."""
    net, payer, payee, arbiter, now, ledger = trio_
    h = ledger.height("BTC-REG")
    answers = [_offer(net, payer, arbiter, "arbiter", _escrow(payer, payee, arbiter, 0, h + 100 + i), now)
               for i in range(MAX_ARBITRATED_PER_PEER + 1)]
    assert answers[:-1] == [(True, "")] * MAX_ARBITRATED_PER_PEER
    ok, why = answers[-1]
    assert not ok and "full: this node already arbitrates" in why, why
    assert f"at most {MAX_ARBITRATED_PER_PEER} per peer" in why, why
    assert len(arbiter.desk.arbitrated.store.load()) == MAX_ARBITRATED_PER_PEER
    other = _escrow(payee, payer, arbiter, 0, h + 100)  # the payee pays the payer: another proposer
    assert _offer(net, payee, arbiter, "arbiter", other, now) == (True, "")
