"""Declared amounts are never believed (issue #17, finding 4): attacks by a hostile peer on the receiver of its
chunks, driven over the protocols' wire messages between real enclaves and a real dev ledger, with the
in-memory harnesses of tests/protocols.

* A peer commits chunks that hold 1 base unit on the ledger but declares the full amount (a contract-run
  swap): refused at agreement, nothing of the victim's is released.
* A peer commits chunks that hold exactly what it commits (1 unit) but declares $50 for each (contract-run):
  refused at agreement by the victim's own price.
* A peer drains its chunks to 1 base unit as it releases them (a broken TEE leaked the keys): the swap stops
  after at most one chunk instead of losing every round.
* A proposer declares $50 for offers our price values at $10: its proposal is ignored, the reason counted.
"""

from __future__ import annotations

import os

import coincurve
import pytest

from node import wire
from node.assets import StaticPrices, address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, make_spec, spec_id
from node.ledger.devnet import FEES, DevLedger
from node.protocols.base import RequestReceived, Started
from node.contracts.spec import ReleaseBody
from node.contracts.protocol.run import FAILED
from node.contracts.protocol.schedule import Chunk, schedule_spec, swap_schedule
from node.protocols.testing import GossipNet
from node.protocols.rfp import CONTRACT_PROTOCOL, RFP_VERSION, Ack, Proposal, ProposedOffer, sign_msg
from tests.protocols import contract_run_kit as run_tests
from tests.protocols import rfp_kit as rfp_tests
from tests.protocols.contract_run_kit import AMOUNT

FEE = FEES["utxo"]


# ------------------------------------------------------------------ contract-run: agreement
def _run_pair(tmp_path, attacker_commits):
    ledger = DevLedger(None, automine=True)
    attacker = run_tests.Side("A", tmp_path, ledger, None, 0)
    victim = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    attacker.commits = attacker_commits(attacker, ledger)
    spec = make_spec("dev", stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                   "deadline": 300}, [attacker.party(), victim.party()])
    net = run_tests.Net(attacker, victim)
    net.height("BTC-REG", 100)
    victim.specs.append(spec)
    victim.proto.expect(spec)  # the victim agreed to run it; the attacker opens it
    net.call(attacker, attacker.proto.start, spec)
    cid = spec_id(spec)
    net.run(until=200, done=run_tests.stopped(cid, attacker, victim))
    return attacker, victim, cid


def _fund(attacker, ledger, n: int, hold: int, amount: int, usd: int) -> list[Commit]:
    out = []
    for pub in attacker.raw.generate_keys(n):
        addr = address_for("BTC-REG", pub)
        ledger.faucet("BTC-REG", addr, hold)
        out.append(Commit(pub, "BTC-REG", addr, amount, usd))
    return out


def test_a_contract_whose_chunks_hold_one_unit_but_commit_the_full_amount_is_refused_at_the_open(tmp_path):
    attacker, victim, cid = _run_pair(tmp_path, lambda a, led: _fund(a, led, 3, 1, run_tests.AMOUNT, 5_000))
    assert victim.journal_releases() == [], "the victim released its keys for chunks of 1 unit"
    assert victim.proto.state(cid) is None
    errs = [n.detail for n in attacker.notes if n.kind == "contract.peer-error"]
    assert errs and errs[0]["code"] == "funds"
    assert "holds 1 confirmed, less than the committed amount 1000000" in errs[0]["reason"]


def test_a_contract_whose_one_unit_chunks_are_declared_at_50_usd_is_refused_by_our_own_price(tmp_path):
    attacker, victim, cid = _run_pair(tmp_path, lambda a, led: _fund(a, led, 3, 1, 1, 5_000))
    assert victim.journal_releases() == [], "the victim released its keys for chunks declared $50, worth nothing"
    assert victim.proto.state(cid) is None
    errs = [n.detail for n in attacker.notes if n.kind == "contract.peer-error"]
    assert errs and errs[0]["code"] == "funds"
    assert "price check" in errs[0]["reason"] and "declared $50.00 but 1 units of BTC-REG" in errs[0]["reason"]
    assert "risk.price_tolerance=0.1" in errs[0]["reason"]


# ------------------------------------------------------------------ rfp: proposals
def test_a_proposal_declaring_50_usd_for_offers_our_price_values_at_10_is_ignored_and_counted():
    client_signer, client = rfp_tests.node(seed=os.urandom(32))
    client.prices = StaticPrices({"BTC": "100000"})  # our price: a 10,000-unit offer is worth $10
    client.handle(Started(client_signer.peer_id), rfp_tests.NOW)
    rid, _ = client.request("BTC-REG", 20_000, "swap", rfp_tests.NOW)
    signer, _ = rfp_tests.node(seed=bytes([7, 1]) * 16)
    book = client.engine.candidates("BTC-REG", rfp_tests.NOW)
    picked = book[:2]
    prop = Proposal(RFP_VERSION, rfp_tests.NET, rid, signer.peer_id,
                    [ProposedOffer(c.offer_id, c.device_id, c.owner_id, 5_000) for c in picked], 10_000,
                    rfp_tests.NOW, rfp_tests.NOW + 30)
    data = sign_msg("proposal", prop, signer.sign)
    cmds = client.handle(RequestReceived(CONTRACT_PROTOCOL, signer.peer_id, 1, data), rfp_tests.NOW)
    assert client.open[rid].proposals == {}, "a proposal valued at the proposer's word was counted"
    ack = wire.decode(cmds[0].data, Ack)
    assert not ack.accepted and ack.reason.startswith("[IGNORE] price check")
    assert "declared $50.00 but 10000 units of BTC-REG are worth $10.00" in ack.reason
    assert sum(v for k, v in client.reasons.items() if "price" in k) == 1


# ------------------------------------------------------------------ the host's swap policy (real nodes)
def test_a_swap_offered_with_chunks_of_one_unit_declared_at_50_usd_is_refused_by_the_hosts_policy(tmp_path):
    """The attacker's offer sheet (signed by its enclave, which signs whatever the host writes) offers chunks
    of 1 unit at $50 each, and each address holds exactly 1 unit, so no ledger check can tell; it offers a
    swap over /keyswitch/contract/1 (the turns spec of its schedule) and opens it over contract-run/1 anyway. The
    victim values what it gets at its own price."""
    import time

    from node.protocols.offers import Offer
    from tests.adversarial.deskkit import connect, make_node

    now = time.time()
    ledger = DevLedger(None, automine=True)
    attacker = make_node(tmp_path, "attacker", ledger, "BTC-REG", 1, now)
    victim = make_node(tmp_path, "victim", ledger, "BTC-REG", 3, now)
    try:
        forged = []
        for pub in attacker.enclave.generate_keys(3):
            addr = address_for("BTC-REG", pub)
            ledger.faucet("BTC-REG", addr, 1)
            forged.append(Offer("BTC-REG", addr, pub, 1, 5_000, "100000", now, now + 3_600))
        attacker.offers = forged
        attacker.protocol.own = attacker.own_sheet()
        net = GossipNet()
        connect(net, now, attacker, victim)
        mine = [Chunk(o.asset, o.address, o.pubkey, o.amount) for o in forged]
        theirs = [Chunk(o.asset, o.address, o.pubkey, o.amount) for o in victim.protocol.own.offers]
        attacker.desk.run.known[victim.peer_id] = victim.protocol.own.binding
        spec = attacker.desk.swaps.spec(victim.peer_id, swap_schedule(mine, theirs), [5_000] * 6)
        net.call(attacker.peer_id, attacker.desk.run, attacker.desk.swaps.propose(spec, now), now)
        rid, cmds = attacker.rfp.offer_contract(victim.peer_id, "swap", spec.encode(), now)
        net.call(attacker.peer_id, attacker.rfp, cmds, now)
        accepted, reason = attacker.rfp.contract_answers[rid]
        net.call(attacker.peer_id, attacker.desk.run, attacker.desk.run.start(spec, now), now)  # opened anyway
        released = [k for k in victim.enclave.list_keys() if k.state == "released"]
        assert released == [], f"the victim released {len(released)} chunk(s) for chunks of 1 unit"
        assert not accepted and "[REFUSED] price: chunk " in reason
        assert "declared $50.00 but 1 units of BTC-REG are worth $0.00 at our price" in reason
    finally:
        attacker.close()
        victim.close()


def test_chunks_funded_only_in_the_mempool_are_refused_at_agreement(tmp_path):
    """Confirmed, not merely seen: the attacker's deposits are unconfirmed transactions (which it may never let
    confirm, or double-spend); the victim's own deposits are confirmed."""
    ledger = DevLedger(None, automine=True)
    victim = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    ledger.automine = False
    attacker = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3)  # funded in the mempool only
    assert all(ledger.balance(c.asset, c.address).confirmed == 0 and ledger.balance(
        c.asset, c.address).unconfirmed == AMOUNT for c in attacker.commits)
    chunks = [[Chunk(c.asset, c.address, c.pubkey, c.amount) for c in s.commits] for s in (attacker, victim)]
    spec = schedule_spec(swap_schedule(*chunks), [attacker.binding, victim.binding])
    net = run_tests.Net(attacker, victim)
    victim.proto.expect(spec)  # the victim agreed to run it; the attacker opens it
    net.call(attacker, attacker.proto.start, spec)
    net.run(until=200, done=run_tests.stopped(spec_id(spec), attacker, victim))
    assert victim.journal_releases() == [], "the victim released its keys for unconfirmed chunks"
    funds = [reason for code, reason in victim.proto.refusals if code == "funds"]
    assert funds and "no confirmed funds at" in funds[0] and "committed 1000000" in funds[0], victim.proto.refusals


@pytest.mark.parametrize("left", [1, 1_000])
def test_a_contract_whose_chunks_are_drained_as_they_are_released_stops_after_at_most_one_chunk(tmp_path, left):
    """contract-run (the stdlib swap): the attacker's enclave leaked its keys; as each of its releases after the
    first leaves, all but ``left`` units of that chunk leave too. The victim checks each key's chunk on its
    ledger before it claims it and goes on."""
    ledger = DevLedger(None, automine=True)
    attacker = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3)
    victim = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    spec = make_spec("dev", stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                   "deadline": 300}, [attacker.party(), victim.party()])
    leaked = {r.pub: r.priv for r in attacker.raw._core.list_keys()}
    thief = address_for("BTC-REG", coincurve.PrivateKey(b"\x0c" * 32).public_key.format())
    steps = spec.steps()
    drained = []

    def drain(src, cmd):
        env = wire.decode(cmd.data, wire.Signed)
        if src is attacker and env.kind == "release":
            k, i = steps[wire.decode(env.body, ReleaseBody).round]
            c = attacker.commits[i]
            if i > 0 and i not in drained:
                drained.append(i)
                ledger.send(c.asset, leaked[c.pubkey], thief, run_tests.AMOUNT - left - FEE)

    net = run_tests.Net(attacker, victim)
    net.on_send = drain
    net.height("BTC-REG", 100)
    cid = run_tests.start(net, spec, attacker, victim)
    net.run(until=200, done=run_tests.stopped(cid, attacker, victim))
    released = len(victim.journal_releases())
    assert released <= 1 + 1, f"the victim released {released} chunks for 1 full one"  # at most one chunk lost
    assert victim.proto.state(cid) == FAILED
    reason = victim.proto.runs[cid.hex()].rec.reason
    assert f"holds {left} confirmed, less than the committed amount" in reason and drained[0] == 1


def test_a_contract_chunk_whose_value_falls_beyond_the_tolerance_mid_contract_is_refused(tmp_path):
    """contract-run (the stdlib swap, tit-for-tat): the attacker's chunks were worth what it declared at
    agreement; once the victim has claimed the first one, BTC-REG falls to half at the victim's own price. The
    victim checks each chunk it receives against the value fixed at agreement at its price NOW, before it
    releases its next one: the chunk received after the fall is refused (kept: claimed) and nothing more of the
    victim's goes out, the reason naming risk.price_tolerance. Old code checked the price at agreement only."""
    import dataclasses
    from decimal import Decimal

    ledger = DevLedger(None, automine=True)
    attacker = run_tests.Side("A", tmp_path, ledger, "BTC-REG", 3)
    victim = run_tests.Side("B", tmp_path, ledger, "LTC", 3)
    spec = make_spec("dev", stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                   "deadline": 300}, [attacker.party(), victim.party()])
    ours = run_tests.prices_for(victim.usd)

    def price_of(asset: str):
        fallen = asset == "BTC-REG" and any(r.rec.claims for r in victim.proto.runs.values())
        return dataclasses.replace(ours(asset), usd_per_unit=ours(asset).usd_per_unit * Decimal(
            "0.5" if fallen else "1"))

    victim.proto.price_of = price_of
    net = run_tests.Net(attacker, victim)
    net.height("BTC-REG", 100)
    cid = run_tests.start(net, spec, attacker, victim)
    net.run(until=200, done=run_tests.stopped(cid, attacker, victim))
    released = len(victim.journal_releases())
    assert released <= 2, f"the victim released {released} chunks; the value fell after its first claim"
    run = victim.proto.runs[cid.hex()]
    assert [c.status for c in run.rec.claims] == ["claimed", "claimed"]  # both keys received are the victim's
    assert victim.proto.state(cid) == FAILED and "risk.price_tolerance=0.1" in run.rec.reason, run.rec.reason
    assert run.rec.reason.startswith("step 1: price check") and "declared $50.00" in run.rec.reason
    assert "are worth $25.00 at our price" in run.rec.reason
