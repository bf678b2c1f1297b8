"""Attacks by a hostile host on its own enclave (issue #17), driven over the enclave's IPC (the client's
framed requests, or raw request bytes): I1 (a committed key leaves only by its contract), I4 (offer sheets
name only held, uncommitted keys) and the test-only operations' absence from the production enclave."""

from __future__ import annotations

import coincurve
import msgspec
import pytest

from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, approval_digest, make_spec
from node.crypto import pubkey_of
from node.tee.client import EnclaveRefused, InProcessEnclave, SubprocessEnclave
from node.enclave import messages as m
from tests.sheetbody import sheet_body
from tests.tee.testbuild import attest, verifies

NET = "dev"


def _escrow(payer, payee, arb, *, refund_height=300):
    """An escrow contract: the payer commits one chunk, released to the payee on the arbiter's approval,
    refunded to the payer at ``refund_height``. Both runners opened it and exchanged signatures."""
    attest(payer, payee)  # the runners' enclaves verified each other's quotes (I3)
    (pub,) = payer.generate_keys(1)
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": refund_height}, [
        PartySpec(payer.binding_for(NET, "P"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
        PartySpec(payee.binding_for(NET, "Q"), []),
        PartySpec(arb.binding_for(NET, "R"), [], runner=False)])
    sp = payer.contract_open(spec.encode())
    sq = payee.contract_open(spec.encode(), [(0, sp.sig)])
    assert payer.contract_open(spec.encode(), [(1, sq.sig)]).missing == []
    payer.contract_height(sp.cid, "BTC-REG", 100)
    return spec, sp.cid, pub


@pytest.fixture
def three():
    es = [InProcessEnclave(None) for _ in range(3)]
    yield es
    for e in es:
        e.close()


def test_a_host_cannot_export_a_key_committed_to_an_open_contract(three):
    """I1 via ExportKey (``POST /v1/sweep``): the payer's host pulls its committed chunk out mid-contract."""
    payer, payee, arb = three
    spec, cid, pub = _escrow(payer, payee, arb)
    with pytest.raises(EnclaveRefused) as exc:
        payer.export_to_owner(pub)
    assert exc.value.code == "committed" and cid.hex()[:16] in exc.value.reason
    # the payee's release still goes through once the arbiter approves
    payer.contract_approve(cid, 2, "release", arb.sign("approval", approval_digest(cid, "release")))
    record = payer.contract_release(cid, 0, 1)
    assert payee.contract_accept(cid, record) == (0, 0)
    assert pub in payee.held_pubkeys()


def test_a_committed_key_goes_back_to_its_owner_only_by_the_contract_refund(three):
    """I1, the allowed way back: at the refund height the contract refunds, and then the owner may export."""
    payer, payee, arb = three
    spec, cid, pub = _escrow(payer, payee, arb)
    payer.contract_height(cid, "BTC-REG", 300)
    priv = payer.contract_refund(cid, 0)
    assert pubkey_of(coincurve.PrivateKey(priv)) == pub
    assert payer.export_to_owner(pub) == priv  # after the refund: the owner's again


def test_a_host_cannot_raw_split_a_committed_key_to_holders_it_owns(three):
    """I1 via EscrowSplit: the host splits the committed key to "holder" keys it made, then rebuilds it."""
    payer, payee, arb = three
    spec, cid, pub = _escrow(payer, payee, arb)
    host_keys = [coincurve.PrivateKey() for _ in range(2)]
    with pytest.raises(EnclaveRefused) as exc:
        payer.escrow_split(pub, [pubkey_of(k) for k in host_keys], 2, pubkey_of(coincurve.PrivateKey()), b"ctx")
    assert exc.value.code == "committed"


def test_a_host_cannot_commit_a_key_to_a_second_contract_with_a_counterparty_it_plays(three):
    """I1 via a second ContractOpen: the same key in a contract whose other "party" is plain host keys; the
    host then signs that contract's id with its own key and has the enclave release the chunk to itself."""
    from node.crypto import sign_digest, tagged_hash
    from node.attest.binding import Binding

    payer, payee, arb = three
    spec, cid, pub = _escrow(payer, payee, arb)
    hs, he = coincurve.PrivateKey(), coincurve.PrivateKey()  # the host's fake "enclave"
    fake = Binding(NET, "H", pubkey_of(hs), pubkey_of(he))
    spec2 = make_spec(NET, stdlib.source("turns"), {}, [
        PartySpec(payer.binding_for(NET, "P"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
        PartySpec(fake, [], runner=False)])
    with pytest.raises(EnclaveRefused) as exc:
        opened = payer.contract_open(spec2.encode())
        from node.contracts.spec import spec_id

        cid2 = spec_id(spec2)
        payer.contract_open(spec2.encode(), [(1, sign_digest(hs, tagged_hash("keyswitch/contract-terms", cid2)))])
        payer.contract_release(opened.cid, 0, 1)  # the key, encrypted to the host's own ECIES key
    assert exc.value.code == "committed"


def test_an_offer_sheet_naming_a_committed_key_is_not_signed(three):
    """I4: the host sells a key that is committed to an open contract (it would be sold twice)."""
    payer, payee, arb = three
    spec, cid, pub = _escrow(payer, payee, arb)
    (free,) = payer.generate_keys(1)
    assert payer.sign_offer_sheet(sheet_body([free]), [free])  # an uncommitted held key: signed
    with pytest.raises(EnclaveRefused) as exc:
        payer.sign_offer_sheet(sheet_body([pub]), [pub])
    assert exc.value.code == "committed"


def _refused(enc, body: bytes, pubs: list[bytes]) -> str:
    with pytest.raises(EnclaveRefused) as exc:
        enc.sign_offer_sheets([(body, pubs)])
    return exc.value.code


def test_the_enclave_reads_the_keys_a_sheet_offers_not_the_hosts_list(three):
    """I4 in full: a real version-3 sheet body offers a committed key, another enclave's key, an exported key;
    the hostile host lists only a free held key with it (the enclave of c95c458 checked only that list, and
    signed all three)."""
    payer, payee, arb = three
    spec, cid, committed = _escrow(payer, payee, arb)
    free, gone = payer.generate_keys(2)
    payer.export_to_owner(gone)
    (foreign,) = payee.generate_keys(1)
    assert _refused(payer, sheet_body([free, committed]), [free]) == "committed"
    assert _refused(payer, sheet_body([free, foreign]), [free]) == "unknown-key"
    assert _refused(payer, sheet_body([free, gone]), [free]) == "key-not-held"
    # the host's list is the sheet's keys, no more and no fewer
    assert _refused(payer, sheet_body([free]), [free, committed]) == "keys-mismatch"
    assert _refused(payer, sheet_body([free]), []) == "keys-mismatch"
    # bytes that are not a version-3 sheet body are not signed at all
    assert _refused(payer, b"sheet:" + free, [free]) == "sheet-unreadable"
    body = sheet_body([free])
    assert body[1] == 3  # [version=3, ...]: the same sheet as version 2
    assert _refused(payer, body[:1] + b"\x02" + body[2:], [free]) == "sheet-unreadable"
    # one bad sheet refuses the batch; a retraction (no key offered) is signed
    assert _refused(payer, sheet_body([foreign]), [foreign]) == "unknown-key"
    with pytest.raises(EnclaveRefused):
        payer.sign_offer_sheets([(sheet_body([free]), [free]), (sheet_body([committed]), [committed])])
    assert len(payer.sign_offer_sheets([(sheet_body([free]), [free]), (sheet_body([]), [])])) == 2


def test_the_host_offers_only_what_its_enclave_would_sign(three, tmp_path):
    """The host derives its offers from the enclave's own answer (``offerable_pubkeys``: held, uncommitted), so
    a key committed to an open contract leaves the node's sheet at once, and its re-announcement is never a
    refused signature (on the first merge of I4 the daemon logged a traceback at every re-announcement)."""
    from node.app.deposits import Deposit, offers_from

    payer, payee, arb = three
    spec, cid, pub = _escrow(payer, payee, arb)
    (free,) = payer.generate_keys(1)
    assert pub in payer.held_pubkeys() and pub not in payer.offerable_pubkeys()
    assert free in payer.offerable_pubkeys()

    class Ledger:
        def balance(self, asset, address):
            from node.ledger.base import Balance

            return Balance(10**8, 10**8)

    deps = [Deposit(p, "BTC-REG", f"addr-{p.hex()[:6]}", 10**6, 5000, "100000", 0.0, "tx" + p.hex()[:6], 0.0)
            for p in (pub, free)]
    offered = offers_from(deps, Ledger(), payer, now=100.0)
    assert [o.pubkey for o in offered] == [free]


def _raw(tag: str, *fields) -> bytes:
    return msgspec.msgpack.encode([m.PROTOCOL_VERSION, 7, [tag, *fields]])


@pytest.mark.parametrize("tag", ["release", "resend", "accept"])
def test_the_in_process_enclave_refuses_test_only_operations(tag):
    """The raw release / resend / accept are not in the production handler table (raw request bytes)."""
    e = InProcessEnclave(None)
    (pub,) = e.generate_keys(1)
    other = pubkey_of(coincurve.PrivateKey())
    args = {"release": (pub, other, b"c"), "resend": (pub, other, b"c"), "accept": (b"x" * 80, b"c", pub)}[tag]
    resp = msgspec.msgpack.decode(m.handle(e._core, _raw(tag, *args)), type=m.Response)
    assert not resp.ok and resp.code == "test-only-op" and repr(tag) in resp.reason
    assert [k.state for k in e.list_keys()] == ["held"]


def test_the_production_enclave_process_refuses_test_only_operations(tmp_path):
    """``python -m node.enclave`` as the client spawns it: a raw release is refused with a reason."""
    e = SubprocessEnclave(tmp_path / "n")
    try:
        (pub,) = e.generate_keys(1)
        for tag, args in (("release", (pub, pubkey_of(coincurve.PrivateKey()), b"c")),
                          ("resend", (pub, pubkey_of(coincurve.PrivateKey()), b"c")),
                          ("accept", (b"x" * 80, b"c", pub))):
            resp = msgspec.msgpack.decode(e._roundtrip(_raw(tag, *args)), type=m.Response)
            assert not resp.ok and resp.code == "test-only-op", resp
            assert "test-only" in resp.reason and repr(tag) in resp.reason
        assert [k.state for k in e.list_keys()] == ["held"]
    finally:
        e.close()


def _host_binding(peer: str = "H"):
    """A "party" made of plain host keys: the host holds both private keys."""
    from node.attest.binding import Binding

    hs, he = coincurve.PrivateKey(), coincurve.PrivateKey()
    return hs, he, Binding(NET, peer, pubkey_of(hs), pubkey_of(he))


def test_a_contract_party_made_of_host_keys_receives_nothing():
    """I3: a first contract (the key is not committed elsewhere) whose receiving party is the host's own keys;
    the enclave never saw that party's quote. Old code: the release record's ciphertext opens with the host's
    ECIES key, so the host reads the deposit key."""
    from node.contracts.spec import release_context
    from node.crypto import ecies_decrypt
    from node.contracts.spec import ReleaseBody
    from node import wire
    from node.enclave.core import release_aad

    e = InProcessEnclave(None)
    (pub,) = e.generate_keys(1)
    hs, he, fake = _host_binding()
    spec = make_spec(NET, stdlib.source("turns"), {}, [
        PartySpec(e.binding_for(NET, "giver"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
        PartySpec(fake, [], runner=False)])
    cid = e.contract_open(spec.encode()).cid
    try:
        record = e.contract_release(cid, 0, 1)
    except EnclaveRefused as exc:
        assert exc.code == "unattested" and "[1]" in exc.reason
        return
    body = wire.decode(wire.decode(record, wire.Signed).body, ReleaseBody)
    secret = ecies_decrypt(he, body.ciphertext, release_aad(pub, release_context(cid, body.round)))
    pytest.fail(f"the host read the deposit key of {pub.hex()[:16]}... ({len(secret)} bytes)")


def test_a_peer_quote_that_is_not_for_the_binding_or_not_our_build_is_refused():
    """I3, the verification itself: a genuine quote of another enclave replayed for host keys, and a
    quote of the right keys but another measurement, are both refused with the verifier's reason."""
    from node.enclave import simformat

    a, b = InProcessEnclave(None), InProcessEnclave(None)
    hs, he, fake = _host_binding()
    real = b.binding_for(NET, "B")
    with pytest.raises(EnclaveRefused) as exc:  # b's real quote, for a binding naming host keys
        a.attest_peer(fake, b.quote(real))
    assert exc.value.code == "untrusted-quote" and "binding-mismatch" in exc.value.reason
    device = coincurve.PrivateKey()  # a host-made "device" certified by the (public) dev root, other code
    other = simformat.make_quote(device, simformat.certify_device(pubkey_of(device)), measurement=b"\x11" * 32,
                                 report_data=fake.report_data(), timestamp=int(__import__("time").time()))
    with pytest.raises(EnclaveRefused) as exc:
        a.attest_peer(fake, other)
    assert exc.value.code == "untrusted-quote" and "measurement-not-allowed" in exc.value.reason
    assert a.attest_peer(real, b.quote(real)) == real.enc_pub  # the real thing


def test_a_raw_escrow_split_to_host_made_holders_is_refused():
    """I3 via EscrowSplit: "holders" and "beneficiary" that are host keys (the host then rebuilds the key)."""
    e = InProcessEnclave(None)
    (pub,) = e.generate_keys(1)
    holders = [pubkey_of(coincurve.PrivateKey()) for _ in range(2)]
    with pytest.raises(EnclaveRefused) as exc:
        e.escrow_split(pub, holders, 2, pubkey_of(coincurve.PrivateKey()), b"ctx")
    assert exc.value.code == "unattested" and "holder" in exc.value.reason
    assert [k.state for k in e.list_keys()] == ["held"]


def test_a_key_whose_counterparty_never_signed_comes_back_by_the_refund_rule(three):
    """I1 without a dead end: the payee never signs the contract id; the key stays committed (no export),
    and comes back to its owner only when the contract's own refund rule says so (the refund height)."""
    payer, payee, arb = three
    attest(payer, payee)
    (pub,) = payer.generate_keys(1)
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 300}, [
        PartySpec(payer.binding_for(NET, "P"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
        PartySpec(payee.binding_for(NET, "Q"), []),
        PartySpec(arb.binding_for(NET, "R"), [], runner=False)])
    cid = payer.contract_open(spec.encode()).cid
    payer.contract_height(cid, "BTC-REG", 100)
    for fn in (lambda: payer.export_to_owner(pub), lambda: payer.contract_refund(cid, 0)):
        with pytest.raises(EnclaveRefused) as exc:
            fn()
        assert exc.value.code in ("committed", "not-allowed")
    payer.contract_height(cid, "BTC-REG", 300)
    assert pubkey_of(coincurve.PrivateKey(payer.contract_refund(cid, 0))) == pub


def test_a_host_drops_only_a_contract_no_one_can_have_released_under(three):
    """I1 and the drop (issue 18 c): the payee never signs; the payer's host may drop the contract (its key is
    uncommitted: exportable), but not once a key moved under it (here: refunded at the height, without the payee's
    signature), not one under which its keys are escrowed, and not one every runner signed: those run until the
    contract ends them."""
    from node.contracts.spec import EscrowHolder, EscrowTerm

    payer, payee, arb = three
    attest(payer, payee)
    pubs = payer.generate_keys(3)

    def opened(pub: bytes, refund_height: int = 300, escrow=()) -> bytes:
        spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": refund_height}, [
            PartySpec(payer.binding_for(NET, "P"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
            PartySpec(payee.binding_for(NET, "Q"), []), PartySpec(arb.binding_for(NET, "R"), [], runner=False)],
            escrow=list(escrow))
        return payer.contract_open(spec.encode()).cid

    unsigned = opened(pubs[0])
    payer.contract_drop(unsigned)
    assert pubkey_of(coincurve.PrivateKey(payer.export_to_owner(pubs[0]))) == pubs[0]  # ours again
    refunded = opened(pubs[1], refund_height=200)
    payer.contract_height(refunded, "BTC-REG", 200)
    payer.contract_refund(refunded, 0)
    hk = [pubkey_of(coincurve.PrivateKey()) for _ in range(3)]
    escrowed = opened(pubs[2], escrow=[EscrowTerm(0, [], [EscrowHolder(h, f"H{i}") for i, h in enumerate(hk[:2])],
                                                  2, hk[2])])
    _, signed, spub, _ = _escrowed(payer, payee, arb, hk[:2], hk[2])
    for cid, code in ((refunded, "moved"), (escrowed, "escrowed"), (signed, "signed")):
        with pytest.raises(EnclaveRefused) as exc:
            payer.contract_drop(cid)
        assert exc.value.code == code
    for pub in (pubs[2], spub):
        with pytest.raises(EnclaveRefused) as exc:
            payer.export_to_owner(pub)
        assert exc.value.code == "committed"


def _escrowed(owner, payee, arb, holder_keys: list[bytes], beneficiary: bytes, *, k: int = 2):
    """An escrow contract whose payer's chunk is key-escrowed to ``holder_keys`` (k of them rebuild it), shares
    released only to ``beneficiary``; both runners opened it and signed its id (an honest-looking contract)."""
    from node.contracts.spec import EscrowHolder, EscrowTerm

    attest(owner, payee)
    (pub,) = owner.generate_keys(1)
    term = EscrowTerm(0, [], [EscrowHolder(h, f"H{i}") for i, h in enumerate(holder_keys)], k, beneficiary)
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 300}, [
        PartySpec(owner.binding_for(NET, "P"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)]),
        PartySpec(payee.binding_for(NET, "Q"), []),
        PartySpec(arb.binding_for(NET, "R"), [], runner=False)], escrow=[term])
    sp = owner.contract_open(spec.encode())
    sq = payee.contract_open(spec.encode(), [(0, sp.sig)])
    owner.contract_open(spec.encode(), [(1, sq.sig)])
    owner.contract_height(sp.cid, "BTC-REG", 100)
    return spec, sp.cid, pub, [(0, sp.sig), (1, sq.sig)]


def _host_rebuilds(pub: bytes, cts: list[tuple[coincurve.PrivateKey, bytes]], context: bytes, tag: bytes) -> bytes:
    """The host opens escrow shares with its own ECIES keys and combines them: the deposit key, or b""."""
    from node.crypto import DecryptError, ecies_decrypt
    from node.enclave import shamir
    from node.enclave.common import escrow_aad
    from node.enclave.contracts import SharePayloadV

    got = []
    for key, ct in cts:
        try:
            p = msgspec.msgpack.decode(ecies_decrypt(key, ct, escrow_aad(tag, pub, context)), type=SharePayloadV)
        except (DecryptError, msgspec.MsgspecError):
            continue
        got.append((p.x, p.y))
    if len(got) < 2:
        return b""
    secret = shamir.combine(got[:2], 2)
    return secret if pubkey_of(coincurve.PrivateKey(secret)) == pub else b""


def test_a_contract_escrow_term_naming_host_made_holders_gets_no_shares(three):
    """I3 via a contract's key-escrow terms: the payer's host names two ECIES keys of its own as the escrow
    holders of its committed chunk (and a third as the beneficiary), then asks its enclave for the split and
    opens the shares itself. Old code: the split is made, the host combines the two shares mid-contract and
    holds the committed key (the payee's release is then worthless)."""
    from node.contracts.spec import escrow_context
    from node.enclave.common import ESCROW_SPLIT_TAG

    payer, payee, arb = three
    hk = [coincurve.PrivateKey() for _ in range(3)]
    spec, cid, pub, _ = _escrowed(payer, payee, arb, [pubkey_of(k) for k in hk[:2]], pubkey_of(hk[2]))
    try:
        shares = payer.contract_escrow_split(cid)
    except EnclaveRefused as exc:
        assert exc.code == "unattested" and "holder" in exc.reason and "attest_peer" in exc.reason, exc
        assert [k.state for k in payer.list_keys()] == ["held"]
        return
    secret = _host_rebuilds(pub, [(k, s.ciphertext) for s in shares for k in hk[:2]], escrow_context(cid, 0, 0),
                            ESCROW_SPLIT_TAG)
    pytest.fail(f"{len(shares)} shares split to host keys; host rebuilt the committed key: {bool(secret)}")


def test_a_contract_escrow_term_naming_a_host_made_beneficiary_gets_no_shares(three, tmp_path):
    """I3, the beneficiary: genuine holder enclaves (the payer's enclave verified them), but the recovery
    "enclave" is a host key. Old code: the payer's enclave splits, the holders hold, and at the refund height
    each releases its share to the host's key, which rebuilds the key."""
    from node.contracts.spec import escrow_context
    from node.enclave.common import ESCROW_RELEASE_TAG

    payer, payee, arb = three
    holders = [InProcessEnclave(None) for _ in range(2)]
    try:
        verifies(payer, *holders)
        ben = coincurve.PrivateKey()
        spec, cid, pub, sigs = _escrowed(payer, payee, arb, [h.info().enc_pub for h in holders], pubkey_of(ben))
        try:
            shares = payer.contract_escrow_split(cid)
        except EnclaveRefused as exc:
            assert exc.code == "unattested" and "beneficiary" in exc.reason, exc
            return
        cts = []
        for h in holders:
            h.escrow_hold(spec.encode(), sigs, [s for s in shares if s.holder == h.info().enc_pub])
            h.escrow_height(cid, "BTC-REG", 300)
            cts.append((ben, h.escrow_share(cid, 0, 0, pubkey_of(ben))))
        secret = _host_rebuilds(pub, cts, escrow_context(cid, 0, 0), ESCROW_RELEASE_TAG)
        pytest.fail(f"holders released to a host-made beneficiary; host rebuilt the key: {bool(secret)}")
    finally:
        for h in holders:
            h.close()


def test_a_holder_releases_its_share_only_to_a_beneficiary_its_own_enclave_verified(three):
    """I3 on the holder's side: the beneficiary the terms name must be an enclave the HOLDER's enclave verified
    itself (the owner's word for it is not enough); once its quote is handed in, the share goes to it."""
    payer, payee, arb = three
    holders = [InProcessEnclave(None) for _ in range(2)]
    heir = InProcessEnclave(None)
    try:
        verifies(payer, *holders, heir)  # (the owner's enclave verified the beneficiary; the holders' never did)
        spec, cid, pub, sigs = _escrowed(payer, payee, arb, [h.info().enc_pub for h in holders], heir.info().enc_pub)
        shares = payer.contract_escrow_split(cid)
        h = holders[0]
        verifies(h, payer)  # (it takes shares only from an owner it verified)
        h.escrow_hold(spec.encode(), sigs, [s for s in shares if s.holder == h.info().enc_pub])
        h.escrow_height(cid, "BTC-REG", 300)
        with pytest.raises(EnclaveRefused) as exc:
            h.escrow_share(cid, 0, 0, heir.info().enc_pub)
        assert exc.value.code == "unattested" and "beneficiary" in exc.value.reason
        b = heir.binding_for(NET, "heir")
        h.attest_peer(b, heir.quote(b))
        assert h.escrow_share(cid, 0, 0, heir.info().enc_pub)
    finally:
        for e in (*holders, heir):
            e.close()
