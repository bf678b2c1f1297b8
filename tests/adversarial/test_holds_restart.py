"""Exposure holds across a restart of the host, for every contract kind (issue #18: "holds survive a restart with
contracts in flight").

Real nodes in process (offer stacks, in-process enclaves, the switchboard, the swap desk) on the in-memory
network, the attacker speaking /keyswitch/contract/1 and /keyswitch/contract-run/1 as the wire carries them. A
simulated device starts with a $100 limit (class ``sim`` at score 0) and every chunk here is $50: a contract with
the attacker holds one of its chunks, so two fill the victim's cap on the attacker's device. The restart is the
victim's host: a new risk engine (no holds in memory) and a new desk over the same data directory and enclave.
"""

from __future__ import annotations

import hashlib

import pytest

from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, make_spec, spec_id
from tests.adversarial.deskkit import Clock, mesh

LIMIT = 10_000  # cents: a fresh simulated device's limit
CHUNK = 5_000


@pytest.fixture
def trio_(tmp_path):
    """attacker, victim and a third node (a ring's third party), 6 chunks of $50 each."""
    net, nodes, now, ledger = mesh(tmp_path, ("attacker", "victim", "third"))
    yield net, *nodes, now, ledger, tmp_path
    for s in nodes:
        s.close()


def _device(stack) -> bytes:
    return hashlib.sha256(stack.protocol.own.binding.sign_pub).digest()


def _held_on(stack, device: bytes) -> int:
    return stack.engine.caps.exposure.by_device.get(device, 0)


def _commits(stack) -> list[Commit]:
    return [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in stack.protocol.own.offers]


def _restart(net, stack, root, now: float) -> None:
    """The host restarts: a new risk engine and desk over the same data directory; the runner resumes (Started)."""
    from node.app.stack import add_switchboard
    from node.contracts.desk.swaps import SwapDesk

    stack.engine.reputation.close()
    add_switchboard(stack, root / stack.datadir.name)
    stack.desk = SwapDesk(stack, clock=Clock(now))
    net.add(stack.peer_id, stack.protocol, stack.rfp, stack.desk.run, now=now)


def _offer(net, attacker, victim, kind: str, spec, at: float) -> tuple[bool, str]:
    """The attacker's ContractOffer of ``spec`` over /keyswitch/contract/1; the victim's answer."""
    rid, cmds = attacker.rfp.offer_contract(victim.peer_id, kind, spec.encode(), at)
    net.call(attacker.peer_id, attacker.rfp, cmds, at)
    return attacker.rfp.contract_answers[rid]


def _option(attacker, writer, k: int, height: int):
    """The attacker buys an option on the writer's chunk k, paying with its chunks 2k (premium) and 2k+1
    (strike); premium by ``height`` + 5, expiry at ``height`` + 10 blocks of BTC-REG."""
    params = {"height_asset": "BTC-REG", "premium_chunks": 1, "premium_by": height + 5, "expiry": height + 10}
    return make_spec("dev", stdlib.source("option"), params, [
        PartySpec(attacker.protocol.own.binding, _commits(attacker)[2 * k:2 * k + 2]),
        PartySpec(writer.protocol.own.binding, [_commits(writer)[k]])])


def _escrow(attacker, payee, arbiter, k: int, height: int):
    """The attacker pays its chunk k to ``payee`` on ``arbiter``'s approval, refunded at ``height`` + 10."""
    return make_spec("dev", stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": height + 10}, [
        PartySpec(attacker.protocol.own.binding, _commits(attacker)[k:k + 1]),
        PartySpec(payee.protocol.own.binding), PartySpec(arbiter.protocol.own.binding, [], False)])


def _ring(attacker, victim, third, k: int, height: int):
    """attacker -> victim -> third -> attacker, one chunk each (the victim's predecessor: the attacker)."""
    return make_spec("dev", stdlib.source("ring"), {"usd": CHUNK, "height_asset": "BTC-REG",
                                                    "deadline": height + 10}, [
        PartySpec(s.protocol.own.binding, _commits(s)[k:k + 1]) for s in (attacker, victim, third)])


def _spec(kind: str, attacker, victim, third, k: int, height: int):
    if kind == "option":
        return _option(attacker, victim, k, height)
    if kind == "escrow":
        return _escrow(attacker, victim, third, k, height)
    return _ring(attacker, victim, third, k, height)


# ------------------------------------------------------------------ (a) agreed, not opened yet, across a restart
@pytest.mark.parametrize("kind", ["option", "escrow", "ring"])
def test_contracts_agreed_before_a_restart_still_hold_the_cap_after_it(trio_, kind):
    """The victim agrees to two contracts with the attacker (its cap on the attacker's device is full); its host
    restarts before the attacker opens them. The runner keeps the agreements (``runs-agreed``) and takes the
    attacker's opens after the restart, but the holds were in memory only: the restarted victim agreed to two
    more against a cap it counted as empty, and four contracts opened against a $100 device. Now the agreements
    hold again after the restart: the third is refused naming the cap and its setting."""
    net, attacker, victim, third, now, ledger, root = trio_
    h = ledger.height("BTC-REG")
    first = [_spec(kind, attacker, victim, third, k, h) for k in (0, 1)]
    assert [_offer(net, attacker, victim, kind, s, now) for s in first] == [(True, "")] * 2
    assert _held_on(victim, _device(attacker)) == LIMIT
    _restart(net, victim, root, now + 1)
    victim.desk.tick(now + 1)  # the daemon's second
    assert all(victim.desk.run.expects(spec_id(s)) for s in first)  # (the agreements survived the restart)
    assert _held_on(victim, _device(attacker)) == LIMIT, "the restart forgot the holds of the agreed contracts"
    ok, why = _offer(net, attacker, victim, kind, _spec(kind, attacker, victim, third, 2, h), now + 1)
    assert not ok, f"the restarted victim agreed to a third {kind} against a full cap"
    assert "device cap:" in why and "would hold $150.00 of $100.00 allowed" in why and "device class limit" in why


def test_agreements_resumed_after_a_restart_lapse_like_any_reservation(trio_):
    """An agreement resumed after a restart holds only as long as one made in this process would
    (``RESERVE_TTL`` from when it was agreed): then it is withdrawn (a late open is refused, "not-expected"), so
    it can neither hold the cap for a day (the runner's ``agreement_ttl``) nor open beyond the cap later."""
    from node.contracts.desk.swaps import RESERVE_TTL

    net, attacker, victim, third, now, ledger, root = trio_
    h = ledger.height("BTC-REG")
    first = [_option(attacker, victim, k, h) for k in (0, 1)]
    assert [_offer(net, attacker, victim, "option", s, now) for s in first] == [(True, "")] * 2
    later = now + RESERVE_TTL + 1
    _restart(net, victim, root, later)
    victim.desk.tick(later)
    assert _held_on(victim, _device(attacker)) == 0
    assert not any(victim.desk.run.expects(spec_id(s)) for s in first)
    net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(first[0], later), later)
    assert not victim.desk.run.runs
    assert any(n.kind == "contract.refused" and n.detail["code"] == "not-expected"
               for n in net.peers[victim.peer_id].notes)


# ------------------------------------------------------------------ (a) running across a restart
def test_options_running_across_a_restart_hold_the_cap_and_release_it_when_they_end(trio_):
    """Two options the attacker opened with the victim (the writer) run when the victim's host restarts: they
    hold the cap after it (a third is refused naming it), and once they end (expired: every unmoved chunk home)
    the holds are released and a new option is agreed."""
    net, attacker, victim, third, now, ledger, root = trio_
    h = ledger.height("BTC-REG")
    first = [_option(attacker, victim, k, h) for k in (0, 1)]
    assert [_offer(net, attacker, victim, "option", s, now) for s in first] == [(True, "")] * 2
    for s in first:
        net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(s, now), now)
    assert sorted(r.rec.state for r in victim.desk.run.runs.values()) == ["running", "running"]
    _restart(net, victim, root, now + 1)
    victim.desk.tick(now + 1)
    assert _held_on(victim, _device(attacker)) == LIMIT, "the restart forgot the holds of the running options"
    ok, why = _offer(net, attacker, victim, "option", _option(attacker, victim, 2, h), now + 1)
    assert not ok and "device cap:" in why, why
    ledger.mine("BTC-REG", 12)  # past the expiry: every unmoved chunk goes home
    t = now + 2
    for _ in range(4):  # the daemon's seconds on both sides: heights in, refunds out, claims settled
        for s in (victim, attacker):
            s.desk.clock.t = t
            net.call(s.peer_id, s.desk.run, s.desk.feed_heights(t), t)
        t += 1
    assert sorted(r.rec.state for r in victim.desk.run.runs.values()) == ["done", "done"]
    victim.desk.tick(t)
    assert _held_on(victim, _device(attacker)) == 0, "the holds outlived their contracts"
    assert _offer(net, attacker, victim, "option", _option(attacker, victim, 2, ledger.height("BTC-REG")), t) == \
        (True, "")


# ------------------------------------------------------------------ (a) agreed, not opened yet: the wall clock steps
def _restart_on(net, stack, root, clock) -> None:
    """``_restart`` with the restarted desk reading ``clock`` (its wall and its monotonic clock)."""
    from node.app.stack import add_switchboard
    from node.contracts.desk.swaps import SwapDesk

    stack.engine.reputation.close()
    add_switchboard(stack, root / stack.datadir.name)
    stack.desk = SwapDesk(stack, clock=clock)
    net.add(stack.peer_id, stack.protocol, stack.rfp, stack.desk.run, now=clock.now())


def _two_agreed(net, attacker, victim, ledger, now: float) -> list:
    first = [_option(attacker, victim, k, ledger.height("BTC-REG")) for k in (0, 1)]
    assert [_offer(net, attacker, victim, "option", s, now) for s in first] == [(True, "")] * 2
    return first


def _holds(victim, attacker, specs, clock) -> bool:
    """The daemon's second on the victim: do the agreements still hold (and are they still expected)?"""
    victim.desk.tick(clock.now())
    held = _held_on(victim, _device(attacker))
    expected = [victim.desk.run.expects(spec_id(s)) for s in specs]
    assert (held, expected) in ((LIMIT, [True, True]), (0, [False, False])), (held, expected)  # hold and agreement
    return held == LIMIT  # go together: a lapsed agreement is withdrawn with its hold


def test_a_wall_clock_stepped_back_before_the_restart_does_not_stretch_a_resumed_agreement(trio_):
    """The victim agrees to two options, then its host restarts with the wall clock stepped back an hour (an NTP
    step; the host is hostile). Before, the lapse was counted from the stored agreement time on the wall clock:
    the agreements, their holds and the attacker's right to open them lasted an hour and a minute past the restart.
    Now what is left is at most ``RESERVE_TTL``, counted on the monotonic clock from the restart; and a second
    restart 30 s later counts from the first one, not from a whole TTL again (the stored time was rewritten)."""
    from node.clock import ManualClock
    from node.contracts.desk.swaps import RESERVE_TTL

    net, attacker, victim, third, now, ledger, root = trio_
    first = _two_agreed(net, attacker, victim, ledger, now)
    clock = ManualClock(now + 1)
    clock.step(-3600)  # the wall clock is an hour behind when the host starts again
    _restart_on(net, victim, root, clock)
    assert _holds(victim, attacker, first, clock)
    clock.advance(30)
    clock2 = ManualClock(clock.now())  # the host restarts again (a new process: a new monotonic origin)
    _restart_on(net, victim, root, clock2)
    assert _holds(victim, attacker, first, clock2)
    clock2.advance(RESERVE_TTL - 30 - 1)
    assert _holds(victim, attacker, first, clock2)
    clock2.advance(1)  # RESERVE_TTL after the first restart
    assert not _holds(victim, attacker, first, clock2), "a clock stepped back stretched the agreements past the TTL"
    net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(first[0], clock2.now()), clock2.now())
    assert not victim.desk.run.runs  # the attacker's late open is refused ("not-expected")


def test_a_wall_clock_step_after_the_restart_moves_no_lapse(trio_):
    """After the restart the lapse counts on the monotonic clock: the wall clock stepped back an hour does not keep
    the agreements (before: they held an hour longer), stepped forward a day does not withdraw them early (before:
    at once, the attacker's honest twin's open a second later refused)."""
    from node.clock import ManualClock
    from node.contracts.desk.swaps import RESERVE_TTL

    net, attacker, victim, third, now, ledger, root = trio_
    first = _two_agreed(net, attacker, victim, ledger, now)
    clock = ManualClock(now + 1)
    _restart_on(net, victim, root, clock)
    assert _holds(victim, attacker, first, clock)
    clock.step(86_400)
    clock.advance(1)
    assert _holds(victim, attacker, first, clock), "a wall clock stepped forward withdrew the agreements early"
    clock.step(-86_400 - 3600)
    clock.advance(RESERVE_TTL - 2 - 1)
    assert _holds(victim, attacker, first, clock)
    clock.advance(1)  # RESERVE_TTL after the agreement, by the monotonic clock
    assert not _holds(victim, attacker, first, clock), "a wall clock stepped back kept the agreements past the TTL"


def test_a_wall_clock_stepped_forward_before_the_restart_only_shortens_the_hold(trio_):
    """Stepped forward a day before the restart, the stored agreement looks a day old: the agreements lapse at
    once, withdrawn with their holds (the attacker's open is refused, so nothing opens beyond the cap): a step can
    shorten the hold, never extend it."""
    from node.clock import ManualClock

    net, attacker, victim, third, now, ledger, root = trio_
    first = _two_agreed(net, attacker, victim, ledger, now)
    clock = ManualClock(now + 1)
    clock.step(86_400)
    _restart_on(net, victim, root, clock)
    assert not _holds(victim, attacker, first, clock)
    net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(first[0], clock.now()), clock.now())
    assert not victim.desk.run.runs


def test_a_wall_clock_stepped_back_does_not_stretch_a_reservation_made_in_this_process(trio_):
    """The same within one process: the victim agrees to two options (its reservations, in memory), then the wall
    clock steps back an hour. Before, the reservations (and the attacker's right to open) lasted an hour longer;
    now they lapse ``RESERVE_TTL`` after the agreement on the monotonic clock."""
    from node.clock import ManualClock
    from node.contracts.desk.swaps import RESERVE_TTL

    net, attacker, victim, third, now, ledger, root = trio_
    clock = ManualClock(now)
    _restart_on(net, victim, root, clock)  # (a fresh desk reading this clock, before any agreement)
    first = _two_agreed(net, attacker, victim, ledger, clock.now())
    assert _holds(victim, attacker, first, clock)
    clock.step(-3600)
    clock.advance(RESERVE_TTL - 1)
    assert _holds(victim, attacker, first, clock)
    clock.advance(1)
    assert not _holds(victim, attacker, first, clock), "a wall clock stepped back kept the reservations past the TTL"


# ------------------------------------------------------------------ a lapse while a peer's open is being checked
def test_an_agreement_that_lapses_while_the_peers_open_is_checked_does_not_open_beyond_the_cap(trio_):
    """The attacker opens an option just as its reservation lapses: the victim's runner checks the attacker's
    funds on its ledger (a task, off the event loop), and meanwhile the daemon's second lapses the reservation (the
    agreement is withdrawn, its hold released) and the attacker gets two escrows agreed against the freed cap.
    Before, the funds check then opened the lapsed contract anyway: three contracts held $150 on a $100 device. Now
    the open is refused ("not-expected") once its check is done: the agreement it needed is gone."""
    from node.contracts.desk.swaps import RESERVE_TTL

    net, attacker, victim, third, now, ledger, root = trio_
    h = ledger.height("BTC-REG")
    first = [_option(attacker, victim, k, h) for k in (0, 1)]
    assert [_offer(net, attacker, victim, "option", s, now) for s in first] == [(True, "")] * 2
    late = now + RESERVE_TTL + 1
    answers = []

    class SlowLedger:  # the victim's ledger: the funds check of the attacker's open takes past the lapse
        def __init__(self, inner):
            self.inner, self.lapsed = inner, False

        def balance(self, asset, address):
            if not self.lapsed:
                self.lapsed = True
                victim.desk.tick(late)  # the daemon's second, on the event loop, while the check runs
                answers.extend(_offer(net, attacker, victim, "escrow", _escrow(attacker, victim, third, k, h), late)
                               for k in (4, 5))  # (the attacker's chunks the options do not name)
            return self.inner.balance(asset, address)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    victim.ledger = SlowLedger(victim.ledger)
    net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(first[0], now + RESERVE_TTL - 1), late)
    assert answers == [(True, "")] * 2  # the freed cap taken by two new agreements
    assert spec_id(first[0]).hex() not in victim.desk.run.runs, "the lapsed agreement opened after its check"
    assert any(n.kind == "contract.refused" and n.detail["code"] == "not-expected"
               for n in net.peers[victim.peer_id].notes)
    victim.desk.tick(late + 1)
    assert _held_on(victim, _device(attacker)) == LIMIT
