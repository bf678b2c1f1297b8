"""Slander: a device with no standing cannot get an honest device marked a cheater with outcome reports.

Driven as a hostile node would: its own simulated enclave (a genuine, freshly made device identity),
reports it signs itself, gossiped as wire bytes to receivers wired as ``node.app.daemon`` wires them
(``OutcomesProtocol`` with ``node.app.stack.ledger_check`` on a real ``DevLedger``)."""

from __future__ import annotations

import coincurve
import pytest

from node import wire
from node.assets import address_for
from node.app.stack import ledger_check
from node.ledger.devnet import DevLedger
from node.stores.offerbook import OfferBook, device_id_of
from node.protocols.base import GossipReceived, Result
from node.protocols.outcomes import OutcomeReport, OutcomesProtocol, SignedReport, make_report
from node.risk.engine import RiskEngine
from node.risk.reputation import Action
from node.tee.client import InProcessEnclave

NET, NOW = "testnet", 10_000.0


def fresh_address(asset: str = "BTC-REG") -> str:
    return address_for(asset, coincurve.PrivateKey().public_key.format())


class Receiver:
    """One full node's outcome gossip, wired as the daemon wires it."""

    def __init__(self, ledger, *, honest: list[bytes], attested: set[bytes], enc_keys: dict | None = None,
                 net: str = NET, now: float = NOW, in_book: bool = True) -> None:
        self.engine = RiskEngine(OfferBook(None))
        rep = self.engine.reputation
        for d in honest:  # old, honest devices this node traded with: full standing
            rep.observe(d, "honest", "sim", 0.0)
            for _ in range(40):
                rep.apply(d, Action.CLAIMED, now)
        for d in attested if in_book else ():  # a fresh device whose attested offer sheet is in the book: score 0
            rep.observe(d, "12D3KooWslanderer", "sim", now)
        self.proto = OutcomesProtocol(net=net, engine=self.engine, ledger_check=lambda r: ledger_check(ledger, r),
                                      attested=lambda dev: dev in attested)
        # the attested encryption key of each device whose quote this node verified (the daemon learns them
        # from the offer sheets' bindings)
        self.proto.enc_key_of = (enc_keys or {}).get

    def gossip(self, data: bytes, now: float = NOW):
        v = self.proto.validate(self.proto.topic, data, "12D3KooWslanderer", now)
        assert v.result is Result.ACCEPT, v.reason  # well formed, signed by an attested enclave: forwarded
        return self.proto.handle(GossipReceived(self.proto.topic, data, "12D3KooWslanderer"), now)

    def rep(self):
        return self.engine.reputation


@pytest.mark.parametrize("in_book", [True, False], ids=["offering", "attested-only"])
def test_a_fresh_device_cannot_mark_an_honest_device_a_cheater_with_an_empty_address_and_any_txid(in_book):
    ledger = DevLedger(None, automine=True)
    honest, hostile = InProcessEnclave(None), InProcessEnclave(None)
    try:
        subject = device_id_of(honest.info().sign_pub)
        attacker = device_id_of(hostile.info().sign_pub)
        # any confirmed transaction on the ledger, nothing to do with the subject
        some_txid = ledger.faucet("BTC-REG", fresh_address(), 70_000)
        assert ledger.confirmations("BTC-REG", some_txid) > 0
        empty = fresh_address()  # never funded: its balance is 0
        lie = make_report(OutcomeReport(2, NET, b"\x01" * 32, hostile.info().sign_pub, subject, "double-spent",
                                        "BTC-REG", empty, some_txid, NOW), hostile.sign)
        receivers = [Receiver(ledger, honest=[subject], attested={attacker}, in_book=in_book) for _ in range(3)]
        before = [r.rep().score(subject, NOW) for r in receivers]
        for r in receivers:
            r.gossip(lie)
        for r, b in zip(receivers, before):
            assert not r.rep().is_cheater(subject), "one gossiped report marked an honest device a cheater"
            assert r.rep().acceptable(subject, NOW)
            assert r.rep().score(subject, NOW) == b  # a reporter without standing moves nothing
            # the ledger contradicts the report (that txid spends nothing from that address): the reporter pays
            assert r.rep().score(attacker, NOW) <= Action.SLANDER.penalty
            assert not r.rep().acceptable(attacker, NOW)
            assert r.proto.stats["refuted"] == 1 and r.proto.stats["confirmed"] == 0
    finally:
        honest.close()
        hostile.close()
        ledger.close()


def test_a_release_record_seen_in_gossip_and_its_real_claim_do_not_make_a_proof(tmp_path):
    """The slanderer attaches a genuine release record of the subject it saw in another device's report
    and names that device's own sweep: the ledger shows that txid spending the deposit, but the record
    names another enclave than the reporter's."""
    from tests.protocols.outcomes_kit import Reporting
    from tests.protocols.contract_run_kit import NET as CNET
    from tests.protocols.contract_run_kit import stopped, swap_setup

    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    net.run(done=stopped(cid, a, b))
    rb = Reporting(b)
    rb.feed(net.now)
    [claim] = [wire.decode(wire.decode(d, SignedReport).body, OutcomeReport) for d in rb.published]
    assert claim.outcome == "claimed" and claim.release and claim.txid
    hostile = InProcessEnclave(None)
    try:
        attacker = device_id_of(hostile.info().sign_pub)
        lie = make_report(OutcomeReport(2, CNET, cid, hostile.info().sign_pub, claim.subject, "double-spent",
                                        claim.asset, claim.address, claim.txid, net.now, claim.release),
                          hostile.sign)
        enc = {b.binding.sign_pub: b.binding.enc_pub, hostile.info().sign_pub: hostile.info().enc_pub}
        receivers = [Receiver(ledger, honest=[claim.subject], attested={attacker}, enc_keys=enc, net=CNET,
                              now=net.now) for _ in range(3)]
        for r in receivers:
            cmds = r.gossip(lie, net.now)
            assert not r.rep().is_cheater(claim.subject), "a record seen in gossip made a proof of cheating"
            [applied] = [c for c in cmds if getattr(c, "kind", "") == "outcome.applied"]
            assert applied.detail["not_a_proof"] == "the release record names another enclave than the reporter's"
            assert r.rep().acceptable(claim.subject, net.now)
            assert r.rep().score(attacker, net.now) <= 0.0
    finally:
        hostile.close()


def test_a_counterparty_naming_its_own_claimed_sweep_as_a_double_spend_is_refuted_and_pays(tmp_path):
    """The device the subject really released a key to sweeps it, reports it claimed (with the genuine
    release record to itself), then reports the same deposit double-spent naming its own sweep."""
    from tests.protocols.outcomes_kit import Reporting
    from tests.protocols.contract_run_kit import NET as CNET
    from tests.protocols.contract_run_kit import stopped, swap_setup

    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    net.run(done=stopped(cid, a, b))
    rb = Reporting(b)
    rb.feed(net.now)
    [claim_bytes] = rb.published
    claim = wire.decode(wire.decode(claim_bytes, SignedReport).body, OutcomeReport)
    assert claim.outcome == "claimed" and claim.release and claim.subject == device_id_of(a.binding.sign_pub)
    liar = device_id_of(b.binding.sign_pub)
    lie = make_report(OutcomeReport(2, CNET, cid, b.binding.sign_pub, claim.subject, "double-spent", claim.asset,
                                    claim.address, claim.txid, net.now + 1, claim.release), b.raw.sign)
    enc = {b.binding.sign_pub: b.binding.enc_pub}
    receivers = [Receiver(ledger, honest=[claim.subject], attested={liar}, enc_keys=enc, net=CNET, now=net.now)
                 for _ in range(3)]
    for r in receivers:
        r.gossip(claim_bytes, net.now)
        before = r.rep().score(liar, net.now)
        r.gossip(lie, net.now + 1)
        assert not r.rep().is_cheater(claim.subject), "its own claimed sweep made a proof of cheating"
        assert r.rep().acceptable(claim.subject, net.now + 1)
        assert r.rep().score(liar, net.now + 1) <= before + Action.SLANDER.penalty + 1e-6
        assert r.proto.stats["refuted"] == 1


def test_the_daemon_learns_a_reporters_attested_key_only_from_a_quote_it_verified(tmp_path):
    """``node.app.stack.add_switchboard`` wires ``enc_key_of`` to the bindings of the quotes its offers protocol
    verifies: a binding with a quote that does not commit to it teaches nothing."""
    import time

    from node.app.stack import add_switchboard, make_offer_stack
    from node.identity import peer_id

    stack = make_offer_stack(tmp_path, NET, peer_id(tmp_path), in_process=True)
    other, forger = InProcessEnclave(None), InProcessEnclave(None)
    try:
        add_switchboard(stack, tmp_path)
        now = time.time()
        binding = other.binding_for(NET, "12D3KooWother")
        assert stack.outcomes.enc_key_of(binding.sign_pub) is None
        assert stack.protocol.attestations.check(other.quote(binding, now=now), binding, now) is None
        assert stack.outcomes.enc_key_of(binding.sign_pub) == binding.enc_pub == other.info().enc_pub
        # the forger's binding claims another enclave's encryption key; its quote commits to its own binding
        fake = forger.binding_for(NET, "12D3KooWforger")
        claimed = type(fake)(**{**{f: getattr(fake, f) for f in fake.__struct_fields__}, "enc_pub": binding.enc_pub})
        assert stack.protocol.attestations.check(forger.quote(fake, now=now), claimed, now) is not None
        assert stack.outcomes.enc_key_of(fake.sign_pub) is None
    finally:
        other.close()
        forger.close()
        stack.close()


def _double_spent_report(tmp_path):
    """A broken TEE (a) releases its chunk to b and spends it at once; b's report carries a's release record
    to b's enclave and names the spend. Returns (ledger, a, b, the report bytes, its OutcomeReport)."""
    from tests.protocols.outcomes_kit import Reporting
    from tests.protocols.contract_run_kit import stopped, swap_setup

    ledger, a, b, spec, cid, net = swap_setup(tmp_path, n=1)
    ch = a.commits[0]
    leaked = {r.pub: r.priv for r in a.raw._core.list_keys()}[ch.pubkey]  # a broken TEE: the key got out
    winner = []

    def double_spend(src, cmd):
        if src is a and wire.decode(cmd.data, wire.Signed).kind == "release" and not winner:
            winner.append(ledger.sweep(ch.asset, leaked, fresh_address(ch.asset)))

    net.on_send = double_spend
    rb = Reporting(b)
    net.run(done=stopped(cid, b))
    rb.feed(net.now)
    [data] = rb.published
    r = wire.decode(wire.decode(data, SignedReport).body, OutcomeReport)
    assert r.outcome == "double-spent" and r.txid == winner[0] and r.release
    return ledger, a, b, data, r, net


def test_dust_sent_to_the_spent_deposit_does_not_turn_the_victims_proof_into_slander(tmp_path):
    """The cheater refills its emptied deposit address with dust so that the ledger seems to say the funds are
    still there: the victim's report would be refuted and the victim charged as a slanderer."""
    from tests.protocols.contract_run_kit import NET as CNET

    ledger, a, b, data, r, net = _double_spent_report(tmp_path)
    ledger.faucet(r.asset, r.address, 1_000)  # dust, mined
    cheater, victim = device_id_of(a.binding.sign_pub), device_id_of(b.binding.sign_pub)
    rcv = Receiver(ledger, honest=[cheater, victim], attested=set(), enc_keys={b.binding.sign_pub: b.binding.enc_pub},
                   net=CNET, now=net.now)
    before = rcv.rep().score(victim, net.now)
    rcv.gossip(data, net.now)
    assert rcv.rep().score(victim, net.now) >= before, "the victim was charged as a slanderer"
    assert rcv.rep().is_cheater(cheater) and rcv.proto.stats["ledger_proofs"] == 1


def test_a_bare_claimed_report_naming_the_thiefs_spend_does_not_shield_the_cheater(tmp_path):
    """An accomplice gossips "claimed" naming the double spend as its own sweep, before the victim's report,
    so that the spend looks like a legitimate claim."""
    from tests.protocols.contract_run_kit import NET as CNET

    ledger, a, b, data, r, net = _double_spent_report(tmp_path)
    accomplice = InProcessEnclave(None)
    try:
        cheater = device_id_of(a.binding.sign_pub)
        shield = make_report(OutcomeReport(2, CNET, b"\x07" * 32, accomplice.info().sign_pub, cheater, "claimed",
                                           r.asset, r.address, r.txid, net.now), accomplice.sign)
        enc = {b.binding.sign_pub: b.binding.enc_pub, accomplice.info().sign_pub: accomplice.info().enc_pub}
        rcv = Receiver(ledger, honest=[cheater, device_id_of(b.binding.sign_pub)],
                       attested={device_id_of(accomplice.info().sign_pub)}, enc_keys=enc, net=CNET, now=net.now)
        rcv.gossip(shield, net.now)
        rcv.gossip(data, net.now)
        assert rcv.rep().is_cheater(cheater) and rcv.proto.stats["ledger_proofs"] == 1
    finally:
        accomplice.close()
