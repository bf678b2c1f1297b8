"""Contracts at the enclave boundary: whatever its host asks, in any order, an enclave releases only what the
contract's rules allow. Real in-memory enclaves, real signatures; hypothesis drives an adversarial host."""

from __future__ import annotations

import coincurve
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.assets import address_for
from node.contracts import Transfer, View, evaluate, stdlib
from node.contracts.spec import approval_digest, compile_spec, make_spec
from node.tee.client import EnclaveRefused, InProcessEnclave
from tests.tee.testbuild import RawOps, attest  # the test build: raw release; mutual attestation
from tests.tee.contractkit import NET, opened, parties


class Mirror:
    """The test's own account of one enclave's view, to check each answer against the pure language."""

    def __init__(self, spec, me):
        self.spec, self.me, self.moved, self.heights, self.sigs = spec, me, [], {}, set()

    def view(self):
        ids = self.spec.ids
        return View(self.spec.view_chunks(), [Transfer(ids[g], i, ids[r]) for g, i, r in self.moved], self.heights,
                    {}, sorted(self.sigs))

    def allowed(self):
        me = self.spec.ids[self.me]
        return {(r.index, self.spec.ids.index(r.receiver)) for r in evaluate(compile_spec(self.spec), self.view()).releases
                if r.giver == me}


def _try(fn, *args):
    try:
        return fn(*args)
    except EnclaveRefused as exc:
        return exc


OPS = st.lists(st.tuples(st.sampled_from(["release", "refund", "deliver", "height", "approve"]),
                         st.integers(0, 3), st.integers(0, 2), st.integers(0, 3)), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_a_swap_enclave_never_releases_more_than_the_rules_allow(ops):
    a, b = InProcessEnclave(None), InProcessEnclave(None)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                  "deadline": 300},
                     parties([a, b], ["A", "B"], ["BTC-REG", "LTC"], [3, 3]))
    cid = opened([a, b], spec, [0, 1])
    encs, mirrors = [a, b], [Mirror(spec, 0), Mirror(spec, 1)]
    records = {0: [], 1: []}  # records each side made, to deliver (or not) to the other
    for e in encs:
        e.contract_height(cid, "BTC-REG", 100)
    for m in mirrors:
        m.heights["BTC-REG"] = 100
    for op, x, who, y in ops:
        k = who % 2
        e, m = encs[k], mirrors[k]
        if op == "release":
            allowed = m.allowed()
            got = _try(e.contract_release, cid, x % 3, y % 2)
            if isinstance(got, bytes):
                assert (x % 3, y % 2) in allowed  # the enclave agrees with the language, never more
                m.moved.append((k, x % 3, y % 2))  # the other side learns of it only on delivery
                records[k].append((x % 3, got))
            else:
                assert (x % 3, y % 2) not in allowed or (y % 2 == k and got.code == "bad-request")  # use refund
        elif op == "refund":
            got = _try(e.contract_refund, cid, x % 3)
            if isinstance(got, bytes):
                assert (x % 3, k) in m.allowed() or (k, x % 3, k) in m.moved
                if (k, x % 3, k) not in m.moved:
                    m.moved.append((k, x % 3, k))
        elif op == "deliver" and records[1 - k]:
            idx, rec = records[1 - k][x % len(records[1 - k])]
            got = _try(e.contract_accept, cid, rec)
            if not isinstance(got, EnclaveRefused) and (1 - k, idx, k) not in m.moved:
                m.moved.append((1 - k, idx, k))
        elif op == "height":
            h = 100 + 100 * y
            e.contract_height(cid, "BTC-REG", h)
            m.heights["BTC-REG"] = max(m.heights["BTC-REG"], h)
        # the tit-for-tat bound, from each enclave's own view: given minus received stays within one chunk
        for j in (0, 1):
            mv = encs[j].contract_status(cid).moved
            gave = sum(1 for t in mv if t.giver == j and t.receiver != j)
            got_ = sum(1 for t in mv if t.receiver == j and t.giver != j)
            assert gave - got_ <= 1
    for e, k in ((a, 0), (b, 1)):  # no key left the enclave twice
        pubs = [j.pub for j in e._core.journal() if j.op in ("release", "export")]
        assert len(pubs) == len(set(pubs))


def _asked(e, cid):
    """The enclave's status answer asked for directly, past the client's reuse of answers."""
    from node.enclave import messages as m
    from node.enclave.contracts import ContractStatus

    return e._call(m.ContractStatusOp(cid), ContractStatus)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_a_status_the_client_reuses_is_always_the_one_the_enclave_would_give_now(ops):
    """``contract_status`` reuses an answer until any other call is sent: after every call of an adversarial
    sequence (releases, refunds, deliveries, heights, refused ones too), what it returns equals what the enclave
    answers when asked."""
    a, b = InProcessEnclave(None), InProcessEnclave(None)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                  "deadline": 300},
                     parties([a, b], ["A", "B"], ["BTC-REG", "LTC"], [3, 3]))
    cid = opened([a, b], spec, [0, 1])
    encs, records = [a, b], {0: [], 1: []}
    for e in encs:
        e.contract_height(cid, "BTC-REG", 100)
    for op, x, who, y in ops:
        k = who % 2
        e = encs[k]
        for j in (0, 1):  # asked before the call: the answer the call must not leave behind
            encs[j].contract_status(cid)
        if op == "release":
            got = _try(e.contract_release, cid, x % 3, y % 2)
            if isinstance(got, bytes):
                records[k].append(got)
        elif op == "refund":
            _try(e.contract_refund, cid, x % 3)
        elif op == "deliver" and records[1 - k]:
            _try(e.contract_accept, cid, records[1 - k][x % len(records[1 - k])])
        elif op in ("height", "approve"):
            e.contract_height(cid, "BTC-REG", 100 + 100 * y)
        for j in (0, 1):
            assert encs[j].contract_status(cid) == _asked(encs[j], cid)


def test_a_status_asked_again_with_no_call_between_costs_no_round_trip():
    a, b = InProcessEnclave(None), InProcessEnclave(None)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 15_000,
                                                  "deadline": 300},
                     parties([a, b], ["A", "B"], ["BTC-REG", "LTC"], [3, 3]))
    cid = opened([a, b], spec, [0, 1])
    a.contract_height(cid, "BTC-REG", 100)

    def asked() -> int:
        return a.call_stats().get("ContractStatusOp", {}).get("calls", 0)

    n = asked()
    first = a.contract_status(cid)
    assert a.contract_status(cid) is first and asked() == n + 1
    (g, i, r), = [t for t in first.allowed if t[2] != 0][:1] or [first.allowed[0]]
    a.contract_release(cid, i, r)  # a call between: the next status is asked, and shows the release
    after = a.contract_status(cid)
    assert asked() == n + 2 and after != first and any(t.index == i for t in after.moved)
    a.sign("approval", bytes(32))  # any call, even one that changes nothing the status shows, is a call between
    a.contract_status(cid)
    assert asked() == n + 3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_an_escrow_enclave_pays_only_on_an_approval_and_refunds_only_at_the_height(ops):
    payer, payee, arb = (InProcessEnclave(None) for _ in range(3))
    encs = [payer, payee, arb]
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 300},
                     parties(encs, ["P", "Q", "R"], ["BTC-REG", None, None], [2, 0, 0], runners=[True, True, False]))
    cid = opened(encs, spec, [0, 1])
    payer.contract_height(cid, "BTC-REG", 100)
    approvals: set[tuple[int, str]] = set()
    refunded: set[int] = set()
    height = 100
    for op, x, who, y in ops:
        if op == "approve":  # any party signs any of these messages; the host hands it in (or a forgery)
            msg = ["release", "refund", "other", "release"][y]
            sig = encs[who].sign("approval", approval_digest(cid, msg))
            claimed = (who + x) % 3  # sometimes claimed to be another party's
            got = _try(payer.contract_approve, cid, claimed, msg, sig)
            if claimed == who:
                assert got is None
                approvals.add((who, msg))
            else:
                assert isinstance(got, EnclaveRefused) and got.code == "bad-signature"
        elif op == "height":
            height = max(height, 100 + 100 * y)
            payer.contract_height(cid, "BTC-REG", 100 + 100 * y)
        elif op == "release":
            got = _try(payer.contract_release, cid, x % 2, 1 + y % 2)
            approved = bool({(2, "release"), (0, "release")} & approvals)
            cancelled = bool({(2, "refund"), (1, "refund")} & approvals)
            if isinstance(got, bytes):
                assert y % 2 == 0 and approved and not cancelled  # only to the payee, only when approved
        elif op == "refund":
            got = _try(payer.contract_refund, cid, x % 2)
            if isinstance(got, bytes) and x % 2 not in refunded:  # (asked again: the same key, nothing new)
                approved = bool({(2, "release"), (0, "release")} & approvals)
                cancelled = bool({(2, "refund"), (1, "refund")} & approvals)
                assert cancelled or (not approved and height >= 300)
                refunded.add(x % 2)
    pubs = [j.pub for j in payer._core.journal() if j.op in ("release", "export")]
    assert len(pubs) == len(set(pubs))


def test_a_committed_key_moves_only_by_its_contract():
    a, b = RawOps(None), InProcessEnclave(None)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 5_000,
                                                  "deadline": 300},
                     parties([a, b], ["A", "B"], ["BTC-REG", "LTC"], [1, 1]))
    pub = spec.parties[0].chunks[0].pubkey
    sig_a = a.contract_open(spec.encode())
    cid = sig_a.cid
    a.contract_height(cid, "BTC-REG", 100)
    assert sig_a.missing == [1]
    with pytest.raises(EnclaveRefused) as exc:  # B has not signed the contract id yet
        a.contract_release(cid, 0, 1)
    assert exc.value.code == "unsigned"
    with pytest.raises(EnclaveRefused) as exc:  # the raw release refuses a committed key
        a.release_key(pub, b.info().enc_pub, b"ctx")
    assert exc.value.code == "committed"
    with pytest.raises(EnclaveRefused) as exc:  # a signature over the id that is not B's
        a.contract_open(spec.encode(), [(1, a.contract_open(spec.encode()).sig)])
    assert exc.value.code == "bad-signature"
    with pytest.raises(EnclaveRefused) as exc:  # the host cannot make the enclave sign a contract id
        a.sign("contract-terms", cid)
    assert exc.value.code == "domain-not-allowed"
    with pytest.raises(EnclaveRefused) as exc:  # an enclave that is not a party does not open it
        InProcessEnclave(None).contract_open(spec.encode())
    assert exc.value.code == "not-a-party"


def test_opening_a_contract_again_reuses_the_sealed_spec_and_still_checks_every_signature(monkeypatch):
    """A contract is decoded and checked once, when it is first opened; later opens with the same bytes (the
    other party's signature, our own signature asked again) find the sealed contract and skip the decoding,
    but every signature handed in is still verified, and other bytes are a new contract, checked in full."""
    import node.enclave.contracts as enclave_contracts

    a, b = InProcessEnclave(None), InProcessEnclave(None)
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 5_000,
                                                  "deadline": 300},
                     parties([a, b], ["A", "B"], ["BTC-REG", "LTC"], [1, 1]))
    decoded = []
    real = enclave_contracts.decode_spec
    monkeypatch.setattr(enclave_contracts, "decode_spec", lambda data: decoded.append(data) or real(data))
    first = a.contract_open(spec.encode())
    assert decoded == [spec.encode()] and first.missing == [1]
    assert a.contract_open(spec.encode()) == first and len(decoded) == 1  # the sealed contract, not decoded again
    with pytest.raises(EnclaveRefused) as exc:  # a signature that is not B's, on the quick path too
        a.contract_open(spec.encode(), [(1, first.sig)])
    assert exc.value.code == "bad-signature" and len(decoded) == 1
    assert a.contract_open(spec.encode(), [(1, b.contract_open(spec.encode()).sig)]).missing == []
    assert len(decoded) == 2  # (B's enclave decoded it once, for its own opening)
    other = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 5_001,
                                                   "deadline": 300}, spec.parties)
    with pytest.raises(EnclaveRefused) as exc:  # other bytes are checked in full: its keys are committed (I1)
        a.contract_open(other.encode())
    assert exc.value.code == "committed" and len(decoded) == 3


def test_a_step_takes_the_key_signs_the_answer_and_releases_only_what_the_contract_allows():
    """``contract_step`` = ``contract_accept`` + a "release-msg" signature + ``contract_release``, in one call:
    a record refused by the accept releases nothing; a release the contract does not allow (yet) is not made
    and says why, while the key is still taken; the signature is the enclave's over the digest it was given."""
    from node.contracts.protocol.schedule import Chunk, chunk_index, schedule_spec, swap_schedule
    from node.tee.client import verify_domain_sig

    a, b = InProcessEnclave(None), InProcessEnclave(None)
    attest(a, b)
    chunks = [[Chunk(asset, address_for(asset, p), p, 1000) for p in e.generate_keys(2)]
              for e, asset in ((a, "BTC-REG"), (b, "LTC"))]
    sched = swap_schedule(*chunks)
    spec = schedule_spec(sched, [a.binding_for(NET, "A"), b.binding_for(NET, "B")]).encode()
    cid = b.contract_open(spec).cid
    a.contract_open(spec, [(1, b.contract_open(spec).sig)])
    rec0 = a.contract_release(cid, 0, 1)  # round 0: A's chunk 0
    digest = bytes(range(32))
    out = b.contract_step(cid, rec0, chunk_index(sched, 1), 0, digest)  # A's signature over the id is missing
    assert (out.giver, out.index, out.record, out.code) == (0, 0, b"", "unsigned")
    assert verify_domain_sig(b.info().sign_pub, "release-msg", digest, out.ack_sig)
    assert {k.pubkey: k.state for k in b.list_keys()}[chunks[0][0].pubkey] == "received"
    b.contract_open(spec, [(0, a.contract_open(spec).sig)])
    rec1 = b.contract_step(cid, rec0, chunk_index(sched, 1), 0, digest).record  # the same key again: idempotent
    assert a.contract_accept(cid, rec1) == (1, 0)  # B's chunk 0 reached A
    for bad, code in ((rec1, "wrong-recipient"), (rec0[:-1] + bytes([rec0[-1] ^ 1]), "bad-signature")):
        with pytest.raises(EnclaveRefused) as exc:  # the accept refuses: nothing is released
            b.contract_step(cid, bad, chunk_index(sched, 3), 0, digest)
        assert exc.value.code == code
    assert {k.pubkey: k.state for k in b.list_keys()}[chunks[1][1].pubkey] == "held"
    out = b.contract_step(cid, rec0, chunk_index(sched, 3), 0, digest)  # round 3 before A's round 2: not allowed
    assert (out.record, out.code) == (b"", "not-allowed")
    assert {k.pubkey: k.state for k in b.list_keys()}[chunks[1][1].pubkey] == "held"
    with pytest.raises(EnclaveRefused) as exc:  # the answer's digest is checked before anything is taken
        b.contract_step(cid, a.contract_release(cid, 1, 1), chunk_index(sched, 3), 0, b"short")
    assert exc.value.code == "bad-request"
    assert {k.pubkey: k.state for k in b.list_keys()}.get(chunks[0][1].pubkey) is None


def test_a_step_seals_once_and_a_failed_write_takes_and_releases_nothing(tmp_path, monkeypatch):
    from node.contracts.protocol.schedule import Chunk, chunk_index, schedule_spec, swap_schedule

    a, b = InProcessEnclave(None), InProcessEnclave(tmp_path / "b")
    attest(a, b)
    chunks = [[Chunk(asset, address_for(asset, p), p, 1000) for p in e.generate_keys(2)]
              for e, asset in ((a, "BTC-REG"), (b, "LTC"))]
    sched = swap_schedule(*chunks)
    spec = schedule_spec(sched, [a.binding_for(NET, "A"), b.binding_for(NET, "B")]).encode()
    cid = a.contract_open(spec, [(1, b.contract_open(spec).sig)]).cid
    b.contract_open(spec, [(0, a.contract_open(spec).sig)])
    before = b.info().counter
    out = b.contract_step(cid, a.contract_release(cid, 0, 1), chunk_index(sched, 1), 0, bytes(32), True)
    assert out.record and b.info().counter == before + 1  # taken, handed to the owner, ours released: one write
    taken = chunks[0][0].pubkey
    assert {k.pubkey: k.state for k in b.list_keys()}[taken] == "exported"
    priv = b.export_to_owner(taken)  # the owner's sweep reads it: no write of its own
    assert coincurve.PrivateKey(priv).public_key.format() == taken and b.info().counter == before + 1
    a.contract_accept(cid, out.record)
    rec2 = a.contract_release(cid, 1, 1)

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(b._core._store, "_write", boom)  # a whole state or a delta: every seal's write fails
    with pytest.raises(EnclaveRefused) as exc:
        b.contract_step(cid, rec2, chunk_index(sched, 3), 0, bytes(32))
    assert exc.value.code == "storage-failed"
    states = {k.pubkey: k.state for k in b.list_keys()}
    assert chunks[0][1].pubkey not in states and states[chunks[1][1].pubkey] == "held"  # nothing taken or released
    monkeypatch.undo()
    assert b.contract_step(cid, rec2, chunk_index(sched, 3), 0, bytes(32)).record  # the same step, sealed now
    assert {k.pubkey: k.state for k in b.list_keys()}[chunks[1][1].pubkey] == "released"
    states = {k.pubkey: k.state for k in b.list_keys()}
    b.close()  # and what is sealed is what the enclave holds (the seal after the failure was whole)
    assert {k.pubkey: k.state for k in InProcessEnclave(tmp_path / "b").list_keys()} == states
