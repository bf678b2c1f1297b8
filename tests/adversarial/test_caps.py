"""Exposure held in the live node: caps on both sides of every contract, across concurrent contracts and a restart.

Real nodes in process (offer stacks, enclaves, the switchboard, the swap desk) on the in-memory network: the
attacker speaks /keyswitch/contract/1 and /keyswitch/contract-run/1 as the wire carries them. A simulated device starts with a
$100 limit (class ``sim`` at score 0) and every chunk here is $50: a swap puts one chunk at risk (tit-for-tat),
so at most two swaps may run at once against one device.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import trio

from node.ledger.devnet import DevLedger
from node.contracts.protocol.schedule import Chunk, swap_schedule
from node.protocols.testing import GossipNet
from node.risk.engine import RiskEngine
from tests.adversarial.deskkit import Clock, DrainedLedger as _Drained, connect, deliver, make_node

LIMIT = 10_000  # cents: a fresh simulated device's limit
CHUNK = 5_000


def _chunks(stack) -> list[Chunk]:
    return [Chunk(o.asset, o.address, o.pubkey, o.amount) for o in stack.protocol.own.offers]


def _device(stack) -> bytes:
    return hashlib.sha256(stack.protocol.own.binding.sign_pub).digest()


def _held_on(engine: RiskEngine, device: bytes) -> int:
    return engine.caps.exposure.by_device.get(device, 0)


def _plan(desk, peer, give: str, take: str, n: int):
    """``desk.plan_swap`` with ``peer``'s attested binding known (``NodeServices.plan_swap`` asks it with who): the
    turns spec of the schedule."""
    desk.run.known[peer.peer_id] = peer.protocol.own.binding
    return desk.plan_swap(peer.peer_id, give, take, n)


def _keys(plan) -> set[bytes]:
    return {c.pubkey for p in plan.parties for c in p.chunks}


def _payload(plan) -> bytes:
    return plan.encode()


def _swap(attacker, victim, give: list[Chunk], take: list[Chunk]):
    """The turns spec of the swap of ``give`` (the attacker's) for ``take`` (the victim's), each chunk declared at
    ``CHUNK``, as the attacker's desk builds it (``SwapRuns.spec``)."""
    attacker.desk.run.known[victim.peer_id] = victim.protocol.own.binding
    sched = swap_schedule(give, take)
    return attacker.desk.swaps.spec(victim.peer_id, sched, [CHUNK] * len(sched.rounds))


def _offer(net, attacker, victim, spec, now: float) -> tuple[bool, str]:
    """The attacker's ContractOffer of the swap ``spec`` over /keyswitch/contract/1 (its desk expecting the
    contract first, as ``NodeServices`` does); the victim's answer."""
    net.call(attacker.peer_id, attacker.desk.run, attacker.desk.swaps.propose(spec, now), now)
    rid, cmds = attacker.rfp.offer_contract(victim.peer_id, "swap", spec.encode(), now)
    net.call(attacker.peer_id, attacker.rfp, cmds, now)
    return attacker.rfp.contract_answers[rid]


def _run(net, now: float, *stacks) -> None:
    """What the daemons' drivers hand the desks (``on_notify``), and what follows, until nothing is left: the
    responder opens the swaps it agreed to, the initiator's enclave takes them, they run over contract-run/1."""
    for s in stacks:
        if getattr(s.desk, "node", None) is None:
            s.desk.node = _Node(net, s, now)
    deliver(net, *stacks)


def _states(stack) -> list[str]:
    return [r.rec.state for r in stack.desk.run.runs.values()]


def _in_flight(desk) -> int:
    """Our swaps in flight: proposed over contract-run/1 and not opened yet, or running."""
    return len(desk.swaps.proposed) + sum(r.rec.state not in ("done", "failed") for r in desk.run.runs.values())


@pytest.fixture
def pair(tmp_path):
    now = time.time()
    ledger = DevLedger(None, automine=True)
    attacker = make_node(tmp_path, "attacker", ledger, "BTC-REG", 6, now)
    victim = make_node(tmp_path, "victim", ledger, "BTC-REG", 6, now)
    net = GossipNet()
    connect(net, now, attacker, victim)
    yield net, attacker, victim, now, ledger, tmp_path
    for s in (attacker, victim):
        s.close()


# ------------------------------------------------------------------ the responder's side
def test_concurrent_swap_offers_against_one_device_never_exceed_its_cap(pair):
    """The attacker offers six one-chunk swaps at once over /keyswitch/contract/1 (each would be agreed, then
    opened over contract-run/1 later): the victim may agree to as many as its cap on the attacker's device allows,
    never all six against an exposure of zero."""
    net, attacker, victim, now, _, _ = pair
    mine, theirs = _chunks(attacker), _chunks(victim)
    answers = [_offer(net, attacker, victim, _swap(attacker, victim, [a], [b]), now) for a, b in zip(mine, theirs)]
    agreed = [r for ok, r in answers if ok]
    assert len(agreed) * CHUNK <= LIMIT, f"the victim agreed to {len(agreed)} swaps of $50 against one $100 device"
    assert len(agreed) == LIMIT // CHUNK
    refused = [r for ok, r in answers if not ok]
    assert all("device cap:" in r and f"device {_device(attacker).hex()[:12]}.." in r for r in refused), refused
    assert "would hold $150.00 of $100.00 allowed" in refused[0] and "device class limit" in refused[0]
    assert _held_on(victim.engine, _device(attacker)) == LIMIT


def test_a_contract_answer_wakes_its_listener_once_with_the_answer_in_place(pair):
    """How the daemon awaits a peer's answer to a contract offer without polling (``rfp.answer_listeners``)."""
    net, attacker, victim, now, _, _ = pair
    heard = []
    for spec in (_swap(attacker, victim, _chunks(attacker)[:1], _chunks(victim)[:1]),
                 _swap(attacker, victim, _chunks(attacker)[1:2], _chunks(attacker)[2:3])):  # (the second: refused)
        rid, cmds = attacker.rfp.offer_contract(victim.peer_id, "swap", spec.encode(), now)
        attacker.rfp.answer_listeners.add(rid, lambda rid=rid: heard.append(attacker.rfp.contract_answers[rid]))
        net.call(attacker.peer_id, attacker.rfp, cmds, now)
    assert [ok for ok, _ in heard] == [True, False] and heard[1][1], heard
    assert len(attacker.rfp.answer_listeners) == 0


def test_a_hold_is_taken_when_a_swap_is_agreed_and_released_when_it_ends(pair):
    net, attacker, victim, now, _, _ = pair
    spec = _swap(attacker, victim, _chunks(attacker)[:1], _chunks(victim)[:1])
    assert _offer(net, attacker, victim, spec, now)[0]
    assert _held_on(victim.engine, _device(attacker)) == CHUNK  # agreed: held before the contract starts
    _run(net, now, attacker, victim)
    victim.desk.feed_heights(now)  # the daemon's one-second tick
    states = set(_states(victim))
    assert states == {"done"}, states
    assert _held_on(victim.engine, _device(attacker)) == 0, "the hold outlived its contract"
    assert victim.engine.holds == {}


def test_a_chunk_released_in_a_swap_leaves_the_givers_sheet_in_its_peers_books_at_once(pair):
    """A released key's offer is retracted and the sheet published at once, not at the next re-announcement
    (which backs off up to 30 min): else a requester's allocation picks the stale offer, and its giver refuses
    the contract ("not one of this node's current offers"), as ``python -m benchmarks.request`` found."""
    net, attacker, victim, now, _, _ = pair
    gone = _chunks(victim)[0]
    spec = _swap(attacker, victim, _chunks(attacker)[:1], [gone])
    assert _offer(net, attacker, victim, spec, now)[0]
    assert attacker.desk._book_offer(gone.address, victim.peer_id) is not None
    _run(net, now, attacker, victim)
    assert set(_states(victim)) == {"done"}
    victim.desk.node = _Node(net, victim, now)
    for n in list(net.peers[victim.peer_id].notes):  # what the daemon's driver hands the desk
        victim.desk.on_notify(n)
    assert all(o.pubkey != gone.pubkey for o in victim.protocol.own.offers)
    assert attacker.desk._book_offer(gone.address, victim.peer_id) is None, "the released chunk is still offered"


# ------------------------------------------------------------------ the initiator's side (swap --peer)
class _Node:
    """The daemon's host as NodeServices sees it: commands go to the in-memory network."""

    def __init__(self, net, stack, now):
        outer = self

        class Driver:
            def submit(self, proto, fn):
                net.call(stack.peer_id, proto, fn(now), now)

            async def call(self, proto, fn, *, timeout):
                value, cmds = fn(now)
                net.call(stack.peer_id, proto, cmds, now)
                return value

        self.driver, self.peer_id, self.listen_addrs = Driver(), stack.peer_id, []
        del outer


def _swap_by_hand(net, victim, attacker_id: str, now: float, n: int) -> list[tuple[int, str]]:
    """The victim's operator runs ``keyswitch swap --peer <attacker> --chunks k`` for k = 1..n (the API call;
    each a different contract, all in flight at once)."""
    from node.api.services import ApiError
    from node.app.services import NodeServices

    svc = NodeServices(_Node(net, victim, now), victim, Clock(now), now)
    out: list[tuple[int, str]] = []

    async def main():
        for k in range(1, n + 1):
            try:
                r = await svc.contract(attacker_id, "BTC-REG", "BTC-REG", k)
                out.append((200, r["state"]))
            except ApiError as exc:
                out.append((exc.status, str(exc)))

    trio.run(main)
    return out


def _silent(net, attacker) -> None:
    """A hostile peer: agrees to any contract offer over /keyswitch/contract/1, then never opens it (the victim's
    proposals stay in flight)."""
    attacker.rfp.on_contract = lambda peer, offer, now: None
    net.peers[attacker.peer_id].protocols = [attacker.protocol, attacker.rfp, attacker.desk.run]


def test_a_key_already_in_one_of_our_contracts_is_never_bought_again(pair):
    """A device whose offer of key K is still in our book while K is already in a contract of ours (a broken TEE
    sells a chunk twice; or its retraction has not reached us): a second swap never takes K. Without this, our
    own enclave refused the second copy and the contract ended "failed" with our chunk paid and no report naming
    the device (found by the simulator's real-contract mode)."""
    net, attacker, victim, now, _, _ = pair
    k = _chunks(attacker)[0]
    victim.desk.run.known[attacker.peer_id] = attacker.protocol.own.binding
    first = victim.desk.swaps.spec(attacker.peer_id, swap_schedule(_chunks(victim)[:1], [k]), [CHUNK, CHUNK])
    net.call(victim.peer_id, victim.desk.run, victim.desk.swaps.propose(first, now), now)  # (not opened yet)
    assert victim.desk._book_offer(k.address, attacker.peer_id) is not None  # K is still offered to us
    plan, _summary = _plan(victim.desk, attacker, "BTC-REG", "BTC-REG", 5)
    assert k.pubkey not in _keys(plan)
    with pytest.raises(ValueError, match="that are in none of our contracts, 6 needed"):
        _plan(victim.desk, attacker, "BTC-REG", "BTC-REG", 6)


def test_swap_peer_named_by_hand_is_held_to_the_initiators_caps(pair):
    net, attacker, victim, now, _, _ = pair
    _silent(net, attacker)
    out = _swap_by_hand(net, victim, attacker.peer_id, now, 4)
    ok = [o for o in out if o[0] == 200]
    assert len(ok) * CHUNK <= LIMIT, f"the initiator started {len(ok)} swaps of $50 against one $100 device: {out}"
    assert [s for s, _ in out] == [200, 200, 409, 409], out
    assert "device cap:" in out[2][1] and "would hold $150.00 of $100.00 allowed" in out[2][1]
    assert _held_on(victim.engine, _device(attacker)) == LIMIT


def test_swap_peer_named_by_hand_whose_device_is_a_proven_cheater_is_refused(pair):
    net, attacker, victim, now, _, _ = pair
    _silent(net, attacker)
    rep = victim.engine.reputation
    if rep.record(_device(attacker)) is None:
        rep.observe(_device(attacker), attacker.peer_id, "sim", now)
    rep.mark_cheater(_device(attacker), now)  # a double spend the ledger proved, earlier
    out = _swap_by_hand(net, victim, attacker.peer_id, now, 1)
    assert out[0][0] == 409, f"the initiator swapped with a proven cheater: {out}"
    assert "proven cheater" in out[0][1]
    assert not victim.desk.swaps.proposed and not victim.desk.run.runs


@pytest.mark.parametrize("tick", ["feed_heights", "tick"])  # the daemon's second: language contracts run, or none
def test_holds_survive_a_restart_with_contracts_in_flight(pair, tick):
    """Two swaps in flight (the peer went silent); the victim's host restarts (new risk engine, new desk, same
    data directory): the contracts are rebuilt from the store and hold again, so a third is still refused."""
    from node.app.stack import add_switchboard
    from node.contracts.desk.swaps import SwapDesk

    net, attacker, victim, now, _, root = pair
    _silent(net, attacker)
    assert [s for s, _ in _swap_by_hand(net, victim, attacker.peer_id, now, 2)] == [200, 200]
    assert _in_flight(victim.desk) == 2
    # restart
    victim.engine.reputation.close()
    add_switchboard(victim, root / "victim")
    victim.desk = SwapDesk(victim, clock=Clock(now))
    net.add(victim.peer_id, victim.protocol, victim.rfp, victim.desk.run, now=now)
    assert not victim.desk.heights_wanted()
    getattr(victim.desk, tick)(now)  # the daemon's tick (also run before every cap check)
    assert _in_flight(victim.desk) == 2
    assert _held_on(victim.engine, _device(attacker)) == LIMIT, "the restart forgot the holds in flight"
    out = _swap_by_hand(net, victim, attacker.peer_id, now, 1)
    assert out[0][0] == 409 and "device cap:" in out[0][1], out


# ------------------------------------------------------------------ defaults that work on a small network
def test_a_100_usd_request_on_a_four_node_network_of_50_usd_chunks_is_covered_and_says_how(tmp_path):
    """The README's ``keyswitch dev`` network: four nodes, $50 chunks, the default limits
    (risk.max_share_device = 0.25). A $100 request left every device a $25 share, under one chunk: it always
    failed with "device cap kept out ...". A share cap is never below one chunk now, and the answer says so."""
    now = time.time()
    ledger = DevLedger(None, automine=True)
    nodes = [make_node(tmp_path, f"n{i}", ledger, "BTC-REG", 3, now) for i in range(4)]
    try:
        net = GossipNet()
        connect(net, now, *nodes)
        me = nodes[0]
        for usd in (100, 150):
            rid, cmds = me.rfp.request("BTC-REG", usd * 100, "swap", now)
            net.call(me.peer_id, me.rfp, cmds, now)
            net.advance(now + 10)
            res = me.rfp.results[rid]
            assert res.ok, f"a ${usd} request on a 4-node network failed: {res.reason}"
            assert res.total_cents == usd * 100
            devices = {c.device_id for c in res.offers}
            assert len(devices) == usd // 50, "one chunk per device: the diversity rule still spreads the request"
            assert any("risk.max_share_device=0.25" in n and "raised to one chunk" in n for n in res.notes), res.notes
            assert "risk.max_share_device=0.25" in res.to_json()["notes"][0]
        # what cannot be covered says which setting kept it out: $200 allows one $50 chunk per device (a quarter),
        # and three providers hold $150 that way
        rid, cmds = me.rfp.request("BTC-REG", 200 * 100, "swap", now + 1)
        net.call(me.peer_id, me.rfp, cmds, now + 1)
        net.advance(now + 20)
        res = me.rfp.results[rid]
        assert not res.ok, res
        assert "device cap kept out" in res.reason and "risk.max_share_device=0.25" in res.reason, res.reason
    finally:
        for s in nodes:
            s.close()


class _LedgerDuring:
    """The node's ledger, as its offers refresher reads it in a worker thread: once the balance of ``address``
    is read, ``during()`` runs (what the event loop does meanwhile), once."""

    def __init__(self, ledger, address, during):
        self._ledger, self._address, self._during = ledger, address, during

    def balance(self, asset, address):
        out = self._ledger.balance(asset, address)
        if address == self._address and self._during is not None:
            during, self._during = self._during, None
            during()
        return out

    def __getattr__(self, name):
        return getattr(self._ledger, name)


def test_a_chunk_released_while_the_offers_refresh_runs_is_not_offered_again(pair):
    """The daemon re-derives its offers every few seconds in a worker thread (``refresh_offers``: the enclave's
    offerable keys, then the ledger); the event loop meanwhile runs contracts. A swap that releases our chunk K
    between the enclave read and the end of the refresh retracts K from our sheet at once (published); the
    refresh then put K back from its older enclave read, and nothing published it: our sheet offered K to our
    own planner but to no peer. The next swap we planned used K and the peer refused it ("not an offer of <us> in
    this node's book"), as ``python -m benchmarks.request``'s closing anchor swap found."""
    net, attacker, victim, now, ledger, _ = pair
    gone = _chunks(victim)[0]
    victim.desk.node = _Node(net, victim, now)

    def swap_released_k() -> None:  # the attacker's swap takes K, over the wire, while the refresh runs
        spec = _swap(attacker, victim, _chunks(attacker)[:1], [gone])
        assert _offer(net, attacker, victim, spec, now)[0]
        _run(net, now, attacker, victim)
        for n in list(net.peers[victim.peer_id].notes):  # what the daemon's driver hands the desk
            victim.desk.on_notify(n)

    victim.ledger = _LedgerDuring(ledger, gone.address, swap_released_k)
    before = victim.offered()
    victim.refresh_offers(now + 1)
    if victim.retract_gone(before):
        victim.desk.node.driver.submit(victim.protocol, lambda t: victim.protocol.set_own_sheet(victim.protocol.own, t))
    assert set(_states(victim)) == {"done"}
    assert gone.pubkey not in victim.offered(), "the released chunk is on our sheet again"
    assert attacker.desk._book_offer(gone.address, victim.peer_id) is None
    # the next swap the victim plans with the attacker is one the attacker can agree to
    victim.ledger = ledger
    plan, _summary = _plan(victim.desk, attacker, "BTC-REG", "BTC-REG", 1)
    rid, cmds = victim.rfp.offer_contract(attacker.peer_id, "swap", _payload(plan), now)
    net.call(victim.peer_id, victim.rfp, cmds, now)
    assert victim.rfp.contract_answers[rid] == (True, ""), victim.rfp.contract_answers[rid]


def test_a_request_to_contracts_under_escrow_is_refused_with_why_and_option_terms_out_of_bounds_too(pair):
    """``request --give B --contract escrow|option`` ran plain swaps whatever the contract said. Escrow (and any
    kind but swap and option) is refused with one line saying why and what to run instead (docs/risk.md,
    "Escrow and option"); an option request whose terms are out of their bounds is refused with the range
    before anything starts."""
    from node.api.services import ApiError
    from node.app.services import NodeServices

    net, attacker, victim, now, _, _ = pair
    svc = NodeServices(_Node(net, victim, now), victim, Clock(now), now)
    for terms, why in (({"premium_chunks": 50}, "premium_chunks must be 1..4"),
                       ({"expiry_blocks": 10**6}, "expiry_blocks must be 1..10000")):
        with pytest.raises(ApiError) as exc:  # (svc.requests is None: a run started would fail otherwise)
            trio.run(lambda: svc.request("BTC-REG", 100, "option", give="ETH-DEV", terms=terms))
        assert exc.value.status == 400 and why in exc.value.reason
    for kind, why in (("escrow", "keyswitch escrow --payee"), ("escrow", "no arbiter"),
                      ("ring", "runs swaps or options only")):
        with pytest.raises(ApiError) as exc:
            trio.run(lambda: svc.request("BTC-REG", 100, kind, give="ETH-DEV"))
        assert exc.value.status == 400 and why in exc.value.reason and "\n" not in exc.value.reason


# ------------------------------------------------------------------ agreed, then refused at open (issue #18)
def test_an_option_whose_open_is_refused_releases_its_reservation_at_once(pair):
    """The same over /keyswitch/contract-run/1: two options agreed on one chunk of the writer (the victim), each
    holding $50 of its cap on the buyer's device; the buyer opens both; the first runs (and holds), the victim's
    enclave refuses the second. Its reservation held the rest of the cap for 60 s: a third, honest option was
    refused naming the cap. Released at the refusal now."""
    from node.contracts import stdlib
    from node.contracts.spec import Commit, PartySpec, make_spec

    net, attacker, victim, now, _, _ = pair
    mine = [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in attacker.protocol.own.offers]
    theirs = [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in victim.protocol.own.offers]
    params = {"height_asset": "BTC-REG", "premium_chunks": 1, "premium_by": 10_000, "expiry": 10_000}

    def option(k: int, writer_chunk: int):  # the buyer's chunks 2k, 2k+1 (premium, strike) for one of the writer's
        return make_spec("dev", stdlib.source("option"), params, [
            PartySpec(attacker.protocol.own.binding, mine[2 * k:2 * k + 2]),
            PartySpec(victim.protocol.own.binding, [theirs[writer_chunk]])])

    def offer(spec, at: float) -> tuple[bool, str]:
        rid, cmds = attacker.rfp.offer_contract(victim.peer_id, "option", spec.encode(), at)
        net.call(attacker.peer_id, attacker.rfp, cmds, at)
        return attacker.rfp.contract_answers[rid]

    reused = [option(0, 0), option(1, 0)]
    assert [offer(s, now) for s in reused] == [(True, "")] * 2
    assert _held_on(victim.engine, _device(attacker)) == LIMIT
    for s in reused:
        net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(s, now), now)
    assert [r.rec.state for r in victim.desk.run.runs.values()] == ["running"]  # the second never opened here
    assert any(n.kind == "contract.refused" and n.detail["code"] == "not-held"
               for n in net.peers[victim.peer_id].notes)
    later = now + 1  # far within RESERVE_TTL
    victim.desk.clock.t = later
    assert offer(option(2, 1), later) == (True, ""), "a refused open still holds the victim's cap"
    assert _held_on(victim.engine, _device(attacker)) == LIMIT  # the running option and the new one


def test_a_lapsed_reservation_withdraws_its_agreement_so_a_late_open_cannot_exceed_the_cap(pair):
    """The TTL is the backstop for a peer that vanished after agreeing. The attacker agrees two swaps (the cap
    on its device), stays silent past ``RESERVE_TTL`` (the reservations lapse), agrees two more, then opens
    all four: the victim opened every one, holding $200 on a $100 device. A lapsed reservation's agreement is
    withdrawn now: the victim opens only the two it still agrees to, the attacker's opens of the lapsed ones are
    refused, and the cap holds.""" 
    from node.contracts.spec import spec_id
    from node.contracts.desk.swaps import RESERVE_TTL

    net, attacker, victim, now, _, _ = pair
    mine, theirs = _chunks(attacker), _chunks(victim)
    first = [_swap(attacker, victim, [mine[k]], [theirs[k]]) for k in (0, 1)]
    assert [_offer(net, attacker, victim, s, now) for s in first] == [(True, "")] * 2
    later = now + RESERVE_TTL + 1
    victim.desk.clock.t = later
    victim.desk.tick(later)  # the daemon's second
    assert _held_on(victim.engine, _device(attacker)) == 0  # lapsed
    second = [_swap(attacker, victim, [mine[k]], [theirs[k]]) for k in (2, 3)]
    assert [_offer(net, attacker, victim, s, later) for s in second] == [(True, "")] * 2
    _run(net, later, attacker, victim)  # the victim's desk opens what it still agrees to, the attacker takes it
    for s in first:  # and the attacker opens the lapsed ones itself
        net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(s, later), later)
    opened = list(victim.desk.run.runs)
    assert len(opened) * CHUNK <= LIMIT, f"the victim opened {len(opened)} swaps of $50 against one $100 device"
    assert sorted(opened) == sorted(spec_id(s).hex() for s in second)
    refused = [n.detail for n in net.peers[victim.peer_id].notes if n.kind == "contract.refused"]
    assert sorted(d["contract"] for d in refused) == sorted(spec_id(s).hex() for s in first), refused


def test_an_option_we_buy_that_fails_to_start_releases_our_reservation_at_once(pair):
    """The initiator's side: ``keyswitch option --peer <attacker>`` is agreed, then our own start finds the
    writer's chunk gone (its funds spent), and the API answers 409. The reservation taken before the offer stayed
    for 60 s (the start was outside the path that released it): our next contract with that device was refused
    naming the cap. Released with the refusal now."""
    from node.api.services import ApiError
    from node.app.services import NodeServices

    net, attacker, victim, now, ledger, _ = pair
    victim.desk.node = _Node(net, victim, now)
    svc = NodeServices(victim.desk.node, victim, Clock(now), now)
    victim.ledger = _Drained(ledger, [o.address for o in attacker.protocol.own.offers])
    terms = {"premium_chunks": 1, "premium_blocks": 20, "expiry_blocks": 100}
    with pytest.raises(ApiError) as exc:
        trio.run(lambda: svc.contract(attacker.peer_id, "BTC-REG", "BTC-REG", 1, kind="option", terms=terms))
    assert exc.value.status == 409 and "funds" in exc.value.reason, exc.value.reason
    assert attacker.desk.run.agreed.items(), "the writer agreed to it"
    assert not victim.desk.run.runs
    assert _held_on(victim.engine, _device(attacker)) == 0, "a contract that never started still holds the cap"
