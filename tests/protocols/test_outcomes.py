"""Outcome reports: signed by the reporter's enclave, every reason, weighed by standing, checked on the ledger."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.stores.offerbook import OfferBook, device_id_of
from node.protocols.base import GossipReceived, Result
from node.protocols.outcomes import OutcomeReport, OutcomesProtocol, make_report, validate_report
from node.risk.engine import RiskEngine
from node.risk.reputation import Action, LedgerCheck
from node.tee.client import InProcessEnclave

NET, NOW = "testnet", 10_000.0


@pytest.fixture(scope="module")
def enclaves():
    a, b = InProcessEnclave(None), InProcessEnclave(None)
    yield a, b
    a.close()
    b.close()


def report(enclave, **kw) -> OutcomeReport:
    base = dict(version=2, net=NET, contract_id=b"c" * 32, reporter=enclave.info().sign_pub, subject=b"s" * 32,
                outcome="withheld", asset="BTC-REG", address="bcrt1qexample", txid="", issued_at=NOW)
    base.update(kw)
    return OutcomeReport(**base)


def v(data, known=lambda d: True, seen=lambda b: False):
    return validate_report(data, net=NET, now=NOW, known_device=known, seen=seen)[0]


def test_every_reason(enclaves):
    a, b = enclaves
    me = device_id_of(a.info().sign_pub)
    cases = [
        (b"\x00" * 9000, Result.REJECT, "over size"),
        (b"\xc1", Result.REJECT, "malformed"),
        (make_report(report(a, version=1), a.sign), Result.REJECT, "unsupported report version"),
        (make_report(report(a, net="x"), a.sign), Result.REJECT, "wrong network"),
        (make_report(report(a, outcome="lost"), a.sign), Result.REJECT, "outcome must be"),
        (make_report(report(a, subject=b"s"), a.sign), Result.REJECT, "32 bytes"),
        (make_report(report(a, outcome="double-spent"), a.sign), Result.REJECT, "names the spending"),
        (make_report(report(a, outcome="double-spent", txid="ab" * 65), a.sign), Result.REJECT, "at most 128"),
        (make_report(report(a, address="x" * 129), a.sign), Result.REJECT, "at most 128"),
        (make_report(report(a, subject=me), a.sign), Result.REJECT, "on itself"),
        (make_report(report(a), b.sign), Result.REJECT, "bad signature"),
        (make_report(report(a, issued_at=NOW + 3600), a.sign), Result.IGNORE, "future"),
        (make_report(report(a, issued_at=NOW - 8 * 86400), a.sign), Result.IGNORE, "too old"),
    ]
    for data, result, reason in cases:
        got = v(data)
        assert got.result is result and reason in got.reason, (reason, got)
    good = make_report(report(a), a.sign)
    assert v(good).result is Result.ACCEPT
    assert v(good, seen=lambda body: True).reason == "duplicate report"
    assert "unknown reporter" in v(good, known=lambda d: False).reason


def engine_knowing(*enclaves) -> RiskEngine:
    eng = RiskEngine(OfferBook(None))
    for e in enclaves:
        eng.reputation.observe(device_id_of(e.info().sign_pub), "peer", "sim", 0.0)
    return eng


def test_reports_weighed_by_standing_and_checked_on_the_ledger(enclaves):
    a, b = enclaves
    subject = device_id_of(b.info().sign_pub)
    eng = engine_knowing(a, b)
    for _ in range(10):
        eng.reputation.apply(subject, Action.CLAIMED, 0.0)  # the subject has some standing: 20
    checks = {"tx-real": LedgerCheck.CONFIRMED, "tx-lie": LedgerCheck.REFUTED}
    proto = OutcomesProtocol(net=NET, engine=eng, ledger_check=lambda r: checks[r.txid])
    # a fresh reporter (no standing) reporting withheld: nothing changes
    data = make_report(report(a, subject=subject, contract_id=b"1" * 32), a.sign)
    before = eng.reputation.score(subject, NOW)
    assert proto.validate(proto.topic, data, "p", NOW).result is Result.ACCEPT
    proto.handle(GossipReceived(proto.topic, data, "p"), NOW)
    assert eng.reputation.score(subject, NOW) == before
    # a double spend the ledger refutes costs the reporter
    lie = make_report(report(a, subject=subject, outcome="double-spent", txid="tx-lie", contract_id=b"2" * 32),
                      a.sign)
    proto.handle(GossipReceived(proto.topic, lie, "p"), NOW)
    assert eng.reputation.score(device_id_of(a.info().sign_pub), NOW) < 0
    assert not eng.reputation.is_cheater(subject)
    # one the ledger confirms is weighed by the reporter's standing (none here) and is no proof: an emptied
    # deposit does not say who emptied it, and this one carries no release record to the reporter
    real = make_report(report(a, subject=subject, outcome="double-spent", txid="tx-real", contract_id=b"3" * 32),
                       a.sign)
    out = proto.handle(GossipReceived(proto.topic, real, "p"), NOW)
    assert not eng.reputation.is_cheater(subject) and eng.reputation.score(subject, NOW) == before
    assert [n.kind for n in out] == ["outcome.applied"]
    assert proto.stats == {"accepted": 3, "confirmed": 1, "refuted": 1, "published": 0, "proofs": 0,
                           "ledger_proofs": 0}
    # the same report again is a duplicate
    assert proto.validate(proto.topic, real, "p", NOW).reason == "duplicate report"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000))
def test_garbage_never_raises(blob):
    assert v(blob).result is not Result.ACCEPT


def test_the_daemon_ledger_check_on_a_real_dev_ledger():
    import coincurve

    from node.assets import address_for
    from node.app.stack import ledger_check
    from node.ledger.devnet import DevLedger

    led = DevLedger(None, automine=True)
    k1, k2 = coincurve.PrivateKey(), coincurve.PrivateKey()
    a1 = address_for("BTC-REG", k1.public_key.format())
    a2 = address_for("BTC-REG", k2.public_key.format())
    led.faucet("BTC-REG", a1, 100_000)
    led.faucet("BTC-REG", a2, 100_000)
    spend = led.sweep("BTC-REG", k1.secret, address_for("BTC-REG", coincurve.PrivateKey().public_key.format()))
    e = InProcessEnclave(None)
    try:
        def r(address, txid, asset="BTC-REG"):
            return report(e, outcome="double-spent", address=address, txid=txid, asset=asset)
        assert ledger_check(led, r(a1, spend)) is LedgerCheck.CONFIRMED  # emptied by that transaction
        assert ledger_check(led, r(a2, "00" * 32)) is LedgerCheck.REFUTED  # the funds are still there
        assert ledger_check(led, r(a1, "ab" * 32)) is LedgerCheck.UNCHECKED  # empty, but not by a tx we know
        # a mined transaction that spends nothing from the address: contradicted (a2's deposit; a1's funding)
        fund_a2 = led.watch([a2], 0)[0][0].txid
        assert ledger_check(led, r(a1, fund_a2)) is LedgerCheck.REFUTED
        never = address_for("BTC-REG", coincurve.PrivateKey().public_key.format())  # never funded: empty
        assert ledger_check(led, r(never, spend)) is LedgerCheck.REFUTED  # spend is a1's, not never's
        assert ledger_check(led, r(a1, spend, asset="NOPE")) is LedgerCheck.UNCHECKED
        assert ledger_check(None, r(a1, spend)) is LedgerCheck.UNCHECKED
    finally:
        e.close()
        led.close()


def test_a_spend_waiting_for_a_block_does_not_refute_the_report():
    """The victim's report can outrun the block that mines the winning sweep: not a lie, only not yet checkable."""
    import coincurve

    from node.assets import address_for
    from node.app.stack import ledger_check
    from node.ledger.devnet import DevLedger

    led = DevLedger(None, automine=False)
    k = coincurve.PrivateKey()
    addr = address_for("BTC-REG", k.public_key.format())
    led.faucet("BTC-REG", addr, 100_000)
    led.mine("BTC-REG")
    e = InProcessEnclave(None)
    try:
        r = lambda txid: report(e, outcome="double-spent", address=addr, txid=txid)  # noqa: E731
        assert ledger_check(led, r("00" * 32)) is LedgerCheck.REFUTED  # funded and unspent
        spend = led.sweep("BTC-REG", k.secret, address_for("BTC-REG", coincurve.PrivateKey().public_key.format()))
        assert ledger_check(led, r(spend)) is LedgerCheck.UNCHECKED  # spent, but not in a block yet
        led.mine("BTC-REG")
        assert ledger_check(led, r(spend)) is LedgerCheck.CONFIRMED
    finally:
        e.close()
        led.close()
