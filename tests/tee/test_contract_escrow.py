"""Key escrow under a contract, enclave side: the owner's enclave splits its committed keys to the holders
named in the spec; a holder's enclave releases its share only when the contract refunds the chunk to its
owner, only to the owner's recovery enclave; k shares rebuild the key there, k-1 do not. Real enclaves
(InProcessEnclave in tmp dirs, one SubprocessEnclave), real signatures, the stdlib escrow contract."""

from __future__ import annotations

import coincurve
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import (
    Commit, ContractSpec, EscrowHolder, EscrowTerm, PartySpec, approval_digest, decode_spec, make_spec, spec_id,
)
from node.tee.client import EnclaveRefused, InProcessEnclave, SubprocessEnclave
from tests.tee.testbuild import attest, verifies

NET = "dev"
ASSET = "BTC-REG"
REFUND = 200


class World:
    def __init__(self, root, n_holders=3, k=2, holder_cls=InProcessEnclave, refund=REFUND, holders_verify_owner=True):
        self.root = root
        self.payer, self.payee, self.arb, self.heir = (InProcessEnclave(root / n) for n in ("p", "q", "r", "heir"))
        self.holders = [holder_cls(root / f"h{i}") for i in range(n_holders)]
        attest(self.payer, self.payee)  # (I3: each runner's enclave verified the other's quote itself)
        verifies(self.payer, *self.holders, self.heir)  # (I3: the owner's enclave splits only to enclaves it verified)
        for h in self.holders:  # (and a holder takes shares only from an owner, releases only to a beneficiary,
            verifies(h, self.heir, *[self.payer] * holders_verify_owner)  # it verified)
        self.pubs = self.payer.generate_keys(2)
        commits = [Commit(p, ASSET, address_for(ASSET, p), 1000, 5) for p in self.pubs]
        self.parties = [PartySpec(self.payer.binding_for(NET, "P"), commits),
                        PartySpec(self.payee.binding_for(NET, "Q"), []),
                        PartySpec(self.arb.binding_for(NET, "R"), [], False)]
        self.term = EscrowTerm(0, [], [EscrowHolder(h.info().enc_pub, f"H{i}") for i, h in enumerate(self.holders)],
                               k, self.heir.info().enc_pub)
        self.spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": ASSET, "refund_height": refund},
                              self.parties, escrow=[self.term])
        self.cid = spec_id(self.spec)
        a = self.payer.contract_open(self.spec.encode())
        b = self.payee.contract_open(self.spec.encode(), [(0, a.sig)])
        self.payer.contract_open(self.spec.encode(), [(1, b.sig)])
        self.sigs = [(0, a.sig), (1, b.sig)]
        self.shares = self.payer.contract_escrow_split(self.cid)
        for h in self.holders if holders_verify_owner else []:
            h.escrow_hold(self.spec.encode(), self.sigs, self.mine(h))
        self.heir_enc = self.heir.info().enc_pub

    def mine(self, h):
        return [s for s in self.shares if s.holder == h.info().enc_pub]

    def height(self, h, *holders):
        for x in holders or self.holders:
            x.escrow_height(self.cid, ASSET, h)

    def close(self):
        for e in [self.payer, self.payee, self.arb, self.heir, *self.holders]:
            e.close()


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    yield world
    world.close()


def refused(fn, *args) -> str:
    with pytest.raises(EnclaveRefused) as e:
        fn(*args)
    return e.value.code


def test_a_spec_without_escrow_keeps_its_bytes_and_id_and_escrow_terms_are_validated(w):
    plain = make_spec(NET, stdlib.source("escrow"), {"height_asset": ASSET, "refund_height": REFUND}, w.parties)
    import msgspec

    # the plain spec keeps the 6-element shape it always had (so its bytes and spec id are unchanged)
    assert type(plain) is ContractSpec and len(msgspec.msgpack.decode(plain.encode())) == 6
    assert len(msgspec.msgpack.decode(w.spec.encode())) == 7
    assert len(plain.encode()) < len(w.spec.encode()) and spec_id(plain) != w.cid
    assert decode_spec(plain.encode()) == plain and decode_spec(w.spec.encode()) == w.spec
    bad = [EscrowTerm(0, [], w.term.holders, 1, w.heir_enc),  # k < 2
           EscrowTerm(0, [5], w.term.holders, 2, w.heir_enc),  # no such chunk
           EscrowTerm(1, [], w.term.holders, 2, w.heir_enc),  # the payee commits nothing
           EscrowTerm(0, [], w.term.holders, 2, w.term.holders[0].enc_pub),  # a holder as beneficiary
           EscrowTerm(0, [], w.term.holders[:1] * 2, 1, w.heir_enc)]
    for t in bad:
        s = make_spec(NET, stdlib.source("escrow"), {"height_asset": ASSET, "refund_height": REFUND}, w.parties,
                      escrow=[t])
        assert isinstance(decode_spec(s.encode()), str)


def test_the_split_is_deterministic_and_leaves_the_normal_path_alone(w):
    assert len(w.shares) == 2 * 3 and {(s.party, s.index) for s in w.shares} == {(0, 0), (0, 1)}
    again = w.payer.contract_escrow_split(w.cid)
    assert [(s.party, s.index, s.holder) for s in again] == [(s.party, s.index, s.holder) for s in w.shares]
    for h in w.holders:  # the re-split delivers the same shares: accepted as already held
        assert h.escrow_hold(w.spec.encode(), w.sigs, [s for s in again if s.holder == h.info().enc_pub]).held == [
            (0, 0), (0, 1)]
    assert {k.state for k in w.payer.list_keys()} == {"held"}  # not "escrowed": the contract still decides
    # the host cannot sign escrow shares itself
    assert refused(w.payer.sign, "escrow-share", b"\0" * 32) == "domain-not-allowed"
    # the normal path: the arbiter approves, the payer's enclave releases to the payee as before
    w.payer.contract_approve(w.cid, 2, "release", w.arb.sign("approval", approval_digest(w.cid, "release")))
    rec = w.payer.contract_release(w.cid, 0, 1)
    assert w.payee.contract_accept(w.cid, rec) == (0, 0)


def test_holders_refuse_before_the_height_for_another_recipient_contract_or_chunk(w):
    h = w.holders[0]
    assert refused(h.escrow_share, w.cid, 0, 0, w.heir_enc) == "not-allowed"  # no height yet
    w.height(REFUND - 1)
    assert refused(h.escrow_share, w.cid, 0, 0, w.heir_enc) == "not-allowed"
    assert not any(s.allowed for s in h.escrow_holdings(w.cid))
    w.height(REFUND)
    assert all(s.allowed for s in h.escrow_holdings(w.cid))
    assert refused(h.escrow_share, w.cid, 0, 0, w.payee.info().enc_pub) == "wrong-recipient"
    assert refused(h.escrow_share, w.cid, 0, 0, w.payer.info().enc_pub) == "wrong-recipient"
    assert refused(h.escrow_share, b"\1" * 32, 0, 0, w.heir_enc) == "unknown-contract"
    assert refused(h.escrow_share, w.cid, 0, 7, w.heir_enc) == "unknown-share"
    assert refused(h.escrow_share, w.cid, 1, 0, w.heir_enc) == "unknown-share"
    # a lower height handed in later does not take it back, and a share of chunk 0 opens only chunk 0
    w.height(REFUND - 50)
    ct = h.escrow_share(w.cid, 0, 0, w.heir_enc)
    assert refused(w.heir.escrow_rebuild, w.cid, 0, 1, w.pubs[1], [ct]) == "undecryptable"
    assert refused(w.heir.escrow_rebuild, b"\2" * 32, 0, 0, w.pubs[0], [ct]) == "undecryptable"


def test_k_of_n_rebuild_the_key_without_the_owner_and_k_minus_1_do_not(w):
    w.height(REFUND)
    w.payer.close()  # the owner's device is gone, with its data
    import shutil

    shutil.rmtree(w.root / "p")
    one = w.holders[2].escrow_share(w.cid, 0, 1, w.heir_enc)
    assert refused(w.heir.escrow_rebuild, w.cid, 0, 1, w.pubs[1], [one]) == "not-enough-shares"
    two = w.holders[0].escrow_share(w.cid, 0, 1, w.heir_enc)
    # a share only the heir can open: another enclave gets nothing from them
    assert refused(w.payee.escrow_rebuild, w.cid, 0, 1, w.pubs[1], [one, two]) == "undecryptable"
    assert w.heir.escrow_rebuild(w.cid, 0, 1, w.pubs[1], [one, two]) == w.pubs[1]
    key = coincurve.PrivateKey(w.heir.export_to_owner(w.pubs[1]))
    assert key.public_key.format() == w.pubs[1]
    assert refused(w.heir.escrow_rebuild, w.cid, 0, 1, w.pubs[1], [one, two]) == "duplicate-key"


def test_a_forged_share_slipped_in_by_a_host_is_skipped(w):
    from node.crypto import ecies_encrypt
    import msgspec
    from node.contracts.spec import escrow_context
    from node.enclave.contracts import SharePayloadV
    from node.enclave.core import ESCROW_RELEASE_TAG, escrow_aad

    w.height(REFUND)
    real = [h.escrow_share(w.cid, 0, 0, w.heir_enc) for h in w.holders[:2]]
    fake = ecies_encrypt(w.heir_enc, msgspec.msgpack.encode(SharePayloadV(
        w.cid, 0, 0, w.pubs[0], 3, 2, 3, b"\7" * 32, w.heir_enc)), escrow_aad(
        ESCROW_RELEASE_TAG, w.pubs[0], escrow_context(w.cid, 0, 0)))
    assert refused(w.heir.escrow_rebuild, w.cid, 0, 0, w.pubs[0], [fake, real[0]]) == "wrong-key"
    assert w.heir.escrow_rebuild(w.cid, 0, 0, w.pubs[0], [fake, real[0], real[1]]) == w.pubs[0]


def test_the_contracts_rules_decide_approval_moved_chunk_and_early_cancel(w):
    h0, h1 = w.holders[:2]
    # a chunk shown released to the payee (the giver's signed record) is never refunded by a holder
    w.payer.contract_approve(w.cid, 2, "release", w.arb.sign("approval", approval_digest(w.cid, "release")))
    rec = w.payer.contract_release(w.cid, 0, 1)
    assert h0.escrow_moved(w.cid, rec) == (0, 0, 1)
    assert refused(h0.escrow_moved, w.cid, rec[:-1] + bytes([rec[-1] ^ 1])) in ("bad-signature", "malformed")
    # the arbiter's approval shown to h1: escrow's "an approval wins" means no refund at the height
    h1.escrow_approve(w.cid, 2, "release", w.arb.sign("approval", approval_digest(w.cid, "release")))
    assert refused(h1.escrow_approve, w.cid, 2, "release", w.payee.sign("approval", approval_digest(
        w.cid, "release"))) == "bad-signature"
    w.height(REFUND + 10)
    assert refused(h0.escrow_share, w.cid, 0, 0, w.heir_enc) == "moved"  # final: chunk 0 went to the payee
    assert h0.escrow_share(w.cid, 0, 1, w.heir_enc)  # chunk 1 did not move: refunded at the height
    assert refused(h1.escrow_share, w.cid, 0, 1, w.heir_enc) == "not-allowed"
    # the payee's "refund" cancels at once, before any height: the rule says refund, the holder follows it
    h2 = w.holders[2]
    w2 = h2.escrow_holdings(w.cid)
    assert all(s.allowed for s in w2)  # h2 saw the height and no approval
    h2.escrow_approve(w.cid, 1, "refund", w.payee.sign("approval", approval_digest(w.cid, "refund")))
    assert h2.escrow_share(w.cid, 0, 0, w.heir_enc)


def test_a_holder_takes_only_its_own_shares_signed_by_the_owner(w, tmp_path):
    from node.enclave.contracts import SplitShare

    extra = InProcessEnclave(tmp_path / "x")
    try:
        assert refused(extra.escrow_hold, w.spec.encode(), w.sigs, w.mine(w.holders[0])) == "not-a-holder"
    finally:
        extra.close()
    h = w.holders[0]
    assert refused(h.escrow_hold, w.spec.encode(), w.sigs, w.mine(w.holders[1])) == "not-a-holder"
    s = w.mine(h)[0]
    forged = SplitShare(s.party, s.index, s.holder, s.ciphertext, w.payee.sign("approval", b"\0" * 32))
    assert refused(h.escrow_hold, w.spec.encode(), w.sigs, [forged]) == "bad-signature"
    assert refused(h.escrow_hold, w.spec.encode()[:-1], w.sigs) == "bad-spec"


def test_a_holder_takes_no_share_from_an_owner_it_never_verified(tmp_path):
    """I3 for holders: shares signed by an owner key this enclave never verified as an enclave (for all it knows
    a host key: anyone could fill its holdings, bounded per node, with contracts of its own making) are
    refused "unattested", and nothing is held; once it verified the owner, the same shares are held."""
    w = World(tmp_path, holders_verify_owner=False)
    try:
        h = w.holders[0]
        assert refused(h.escrow_hold, w.spec.encode(), w.sigs, w.mine(h)) == "unattested"
        assert h.escrow_holdings() == []
        verifies(h, w.payer)
        assert h.escrow_hold(w.spec.encode(), w.sigs, w.mine(h)).held
        assert {(s.party, s.index) for s in h.escrow_holdings(w.cid)} == {(0, 0), (0, 1)}
    finally:
        w.close()


def test_a_forgotten_holding_is_gone_for_good_and_its_shares_are_never_released(w):
    """A holder lets go of a contract (``escrow_forget``): its shares and facts leave the sealed state, the same
    hold sent again is refused "forgotten" (so a share is never released after its chunk moved, which a re-held
    share that lost its moved facts could be), across a restart too; other holdings stay."""
    h = w.holders[0]
    w.height(REFUND + 1, h)
    assert all(s.allowed for s in h.escrow_holdings(w.cid))  # refunded: the heir may have its shares now ...
    h.escrow_forget(w.cid)
    assert h.escrow_holdings() == []
    assert refused(h.escrow_share, w.cid, 0, 0, w.heir_enc) == "unknown-contract"  # ... not once forgotten
    assert refused(h.escrow_hold, w.spec.encode(), w.sigs, w.mine(h)) == "forgotten"
    assert refused(h.escrow_height, w.cid, ASSET, REFUND + 2) == "unknown-contract"
    assert len(w.holders[1].escrow_holdings(w.cid)) == 2  # the other holders keep theirs
    h.close()
    h = w.holders[0] = InProcessEnclave(w.root / "h0")
    assert h.escrow_holdings() == [] and refused(h.escrow_hold, w.spec.encode(), w.sigs, w.mine(h)) == "forgotten"
    assert refused(h.escrow_forget, w.cid) == "unknown-contract"


def test_a_holder_with_one_signature_waits_for_the_other(tmp_path):
    root = tmp_path
    payer, payee, arb, heir = (InProcessEnclave(root / n) for n in ("p", "q", "r", "heir"))
    hs = [InProcessEnclave(root / f"h{i}") for i in range(2)]
    try:
        verifies(payer, *hs, heir)
        verifies(hs[0], heir, payer)
        pubs = payer.generate_keys(1)
        parties = [PartySpec(payer.binding_for(NET, "P"), [Commit(pubs[0], ASSET, address_for(ASSET, pubs[0]), 9, 1)]),
                   PartySpec(payee.binding_for(NET, "Q"), []), PartySpec(arb.binding_for(NET, "R"), [], False)]
        term = EscrowTerm(0, [0], [EscrowHolder(h.info().enc_pub, f"H{i}") for i, h in enumerate(hs)], 2,
                          heir.info().enc_pub)
        spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": ASSET, "refund_height": 5}, parties,
                         escrow=[term])
        cid = spec_id(spec)
        a = payer.contract_open(spec.encode())
        shares = payer.contract_escrow_split(cid)
        bad = [s for s in shares if s.holder == hs[0].info().enc_pub]
        from node.enclave.contracts import SplitShare

        forged = [SplitShare(x.party, x.index, x.holder, x.ciphertext, payee.sign("approval", b"\0" * 32)) for x in bad]
        assert refused(hs[0].escrow_hold, spec.encode(), [(0, a.sig)], forged) == "bad-signature"
        assert hs[0].escrow_hold(spec.encode(), [(0, a.sig)], bad).missing == [1]
        hs[0].escrow_height(cid, ASSET, 5)
        assert refused(hs[0].escrow_share, cid, 0, 0, heir.info().enc_pub) == "not-allowed"  # unsigned by payee
        b = payee.contract_open(spec.encode(), [(0, a.sig)])
        assert refused(hs[0].escrow_hold, spec.encode(), [(1, a.sig)]) == "bad-signature"
        assert hs[0].escrow_hold(spec.encode(), [(1, b.sig)]).missing == []
        assert hs[0].escrow_share(cid, 0, 0, heir.info().enc_pub)
    finally:
        for e in [payer, payee, arb, heir, *hs]:
            e.close()


def test_a_holder_restart_keeps_shares_heights_and_the_released_ciphertext(w):
    w.height(REFUND)
    ct = w.holders[1].escrow_share(w.cid, 0, 0, w.heir_enc)
    w.holders[1].close()
    w.holders[1] = again = InProcessEnclave(w.root / "h1")
    assert again.escrow_share(w.cid, 0, 0, w.heir_enc) == ct  # the sealed release, not a new one
    st = {(s.party, s.index): s for s in again.escrow_holdings(w.cid)}
    assert st[(0, 0)].state == "released" and st[(0, 1)].state == "held" and st[(0, 1)].allowed
    assert any(e.op == "escrow-release" for e in again._core.journal())


def test_escrow_calls_through_the_enclave_process(tmp_path):
    w = World(tmp_path, holder_cls=SubprocessEnclave)
    try:
        w.height(REFUND)
        cts = [h.escrow_share(w.cid, 0, 0, w.heir_enc) for h in w.holders[:2]]
        assert w.heir.escrow_rebuild(w.cid, 0, 0, w.pubs[0], cts) == w.pubs[0]
    finally:
        w.close()


# ------------------------------------------------------------------ property: never more than the rules allow
OPS = st.lists(st.one_of(
    st.tuples(st.just("height"), st.integers(0, 2 * REFUND)),
    st.tuples(st.just("approve"), st.sampled_from([(2, "release"), (0, "release"), (2, "refund"), (1, "refund"),
                                                   (1, "release")])),
    st.tuples(st.just("moved"), st.integers(0, 1)),
    st.tuples(st.just("ask"), st.tuples(st.integers(0, 1), st.integers(0, 2))),
    st.tuples(st.sampled_from(["forget", "rehold", "restart"]), st.just(0)),
), max_size=12)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    world = World(root, n_holders=2)
    world.payer.contract_approve(world.cid, 2, "release", world.arb.sign("approval", approval_digest(
        world.cid, "release")))
    records = [world.payer.contract_release(world.cid, i, 1) for i in range(2)]
    sigs = {(p, m): e.sign("approval", approval_digest(world.cid, m)) for p, e in
            [(0, world.payer), (1, world.payee), (2, world.arb)] for m in ("release", "refund")}
    yield world, records, sigs
    world.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_a_holder_never_releases_more_than_the_escrow_contract_allows(base, ops, tmp_path_factory):
    """Random heights, approvals, moved records and asks (to the beneficiary, the payee, the payer), the host
    letting go of the contract, sending its hold again and restarting the holder, on a fresh holder: a share
    leaves only to the beneficiary, only when the escrow contract's refund rule holds over what the holder was
    shown, never for a chunk shown moved to the payee, and never once the holder let go of the contract."""
    w, records, sigs = base
    import shutil

    dst = tmp_path_factory.mktemp("h")
    shutil.copytree(w.root / "h0", dst / "h0")  # a fresh copy of holder 0's sealed state for every example
    holder = InProcessEnclave(dst / "h0")
    try:
        height, approved, cancelled, moved = None, False, False, set()
        released = set()
        forgotten = False
        for op, arg in ops:
            if op == "restart":
                holder.close()
                holder = InProcessEnclave(dst / "h0")
                continue
            if op == "rehold":
                if forgotten:
                    assert refused(holder.escrow_hold, w.spec.encode(), w.sigs, w.mine(w.holders[0])) == "forgotten"
                else:
                    holder.escrow_hold(w.spec.encode(), w.sigs, w.mine(w.holders[0]))
                continue
            if forgotten:  # every call about the contract: it is not held here any more
                call = {"forget": lambda: holder.escrow_forget(w.cid),
                        "height": lambda: holder.escrow_height(w.cid, ASSET, arg),
                        "approve": lambda: holder.escrow_approve(w.cid, *arg, sigs[arg]),
                        "moved": lambda: holder.escrow_moved(w.cid, records[arg]),
                        "ask": lambda: holder.escrow_share(w.cid, 0, arg[0], w.heir_enc)}[op]
                assert refused(call) == "unknown-contract", (ops, op)
                continue
            if op == "forget":
                holder.escrow_forget(w.cid)
                forgotten = True
                assert holder.escrow_holdings() == []
            elif op == "height":
                holder.escrow_height(w.cid, ASSET, arg)
                height = arg if height is None else max(height, arg)
            elif op == "approve":
                party, msg = arg
                holder.escrow_approve(w.cid, party, msg, sigs[(party, msg)])
                if msg == "release" and party in (0, 2):
                    approved = True
                if msg == "refund" and party in (1, 2):
                    cancelled = True
            elif op == "moved":
                holder.escrow_moved(w.cid, records[arg])
                moved.add(arg)
            else:
                index, who = arg
                to = [w.heir_enc, w.payee.info().enc_pub, w.payer.info().enc_pub][who]
                refund = cancelled or (not approved and height is not None and height >= REFUND)
                ok = index in released or (who == 0 and index not in moved and refund)
                try:
                    holder.escrow_share(w.cid, 0, index, to)
                    got = True
                except EnclaveRefused as e:
                    assert e.code in ("not-allowed", "wrong-recipient", "moved")
                    assert (e.code == "moved") == (who == 0 and index in moved and index not in released)
                    got = False
                assert got == (ok and who == 0), (ops, op, arg)
                if got:
                    released.add(index)
    finally:
        holder.close()


def test_in_a_swap_holders_refund_only_the_unmoved_chunks_at_the_deadline(tmp_path):
    """Another contract, its own refund rule: the stdlib swap refunds every unmoved chunk at ``deadline``."""
    a, b, heir = (InProcessEnclave(tmp_path / n) for n in ("a", "b", "heir"))
    hs = [InProcessEnclave(tmp_path / f"h{i}") for i in range(2)]
    attest(a, b)
    verifies(a, *hs, heir)
    for h in hs:
        verifies(h, heir, a)
    try:
        ca = [Commit(p, ASSET, address_for(ASSET, p), 1000, 5_000) for p in a.generate_keys(2)]
        cb = [Commit(p, "LTC", address_for("LTC", p), 1000, 5_000) for p in b.generate_keys(2)]
        term = EscrowTerm(0, [], [EscrowHolder(h.info().enc_pub, f"H{i}") for i, h in enumerate(hs)], 2,
                          heir.info().enc_pub)
        spec = make_spec(NET, stdlib.source("swap"), {"asset_a": ASSET, "asset_b": "LTC", "usd": 10_000,
                                                      "deadline": 300},
                         [PartySpec(a.binding_for(NET, "A"), ca), PartySpec(b.binding_for(NET, "B"), cb)],
                         escrow=[term])
        cid = spec_id(spec)
        x = a.contract_open(spec.encode())
        y = b.contract_open(spec.encode(), [(0, x.sig)])
        a.contract_open(spec.encode(), [(1, y.sig)])
        shares = a.contract_escrow_split(cid)
        for h in hs:
            h.escrow_hold(spec.encode(), [(0, x.sig), (1, y.sig)], [s for s in shares if s.holder == h.info().enc_pub])
        a.contract_height(cid, ASSET, 100)
        rec = a.contract_release(cid, 0, 1)  # a's chunk 0 goes to b, tit-for-tat
        hs[0].escrow_moved(cid, rec)
        hs[0].escrow_height(cid, ASSET, 299)
        assert refused(hs[0].escrow_share, cid, 0, 1, heir.info().enc_pub) == "not-allowed"
        hs[0].escrow_height(cid, ASSET, 300)
        assert refused(hs[0].escrow_share, cid, 0, 0, heir.info().enc_pub) == "moved"  # moved to b: final
        assert hs[0].escrow_share(cid, 0, 1, heir.info().enc_pub)  # unmoved: home at the deadline
    finally:
        for e in [a, b, heir, *hs]:
            e.close()
