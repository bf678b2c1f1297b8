"""Key escrow: a deposit key in Shamir shares held by k-of-n other attested enclaves."""

import pytest

from node.tee.client import EnclaveRefused, InProcessEnclave, SubprocessEnclave
from tests.tee.testbuild import RawOps, RawOpsSubprocess  # the test build: raw release/resend/accept

CTX = b"contract-7f3a/time-lock"


@pytest.fixture
def world(tmp_path):
    owner = RawOps(tmp_path / "owner")
    holders = [InProcessEnclave(tmp_path / f"h{i}") for i in range(3)]
    heir = RawOps(tmp_path / "heir")
    stranger = InProcessEnclave(tmp_path / "stranger")
    yield tmp_path, owner, holders, heir, stranger
    for e in [owner, *holders, heir, stranger]:
        e.close()


def escrow(owner, holders, heir, k=2):
    (pub,) = owner.generate_keys(1)
    for e in (*holders, heir):  # the owner's enclave verified holders and heir itself (I3)
        binding = e.binding_for("dev", "peer")
        owner.attest_peer(binding, e.quote(binding))
    cts = owner.escrow_split(pub, [h.info().enc_pub for h in holders], k, heir.info().enc_pub, CTX)
    for h, ct in zip(holders, cts):
        h.escrow_accept(ct, pub, CTX)
    return pub


def test_k_of_n_recover_the_key_and_k_minus_1_do_not(world):
    tmp, owner, holders, heir, stranger = world
    pub = escrow(owner, holders, heir)
    one = holders[0].escrow_release_share(pub, CTX)
    with pytest.raises(EnclaveRefused) as e:
        heir.escrow_recover(pub, CTX, [one])
    assert e.value.code == "not-enough-shares"
    two = holders[2].escrow_release_share(pub, CTX)
    assert heir.escrow_recover(pub, CTX, [one, two]) == pub
    assert any(k.pubkey == pub and k.state == "received" for k in heir.list_keys())
    # the recovered key is a real key: the heir's enclave can export it to its owner, matching the pubkey
    import coincurve
    assert coincurve.PrivateKey(heir.export_to_owner(pub)).public_key.format() == pub


def test_only_the_beneficiary_can_use_the_shares_and_the_owner_is_bound_too(world):
    tmp, owner, holders, heir, stranger = world
    pub = escrow(owner, holders, heir)
    shares = [h.escrow_release_share(pub, CTX) for h in holders[:2]]
    with pytest.raises(EnclaveRefused) as e:
        stranger.escrow_recover(pub, CTX, shares)
    assert e.value.code == "undecryptable"
    with pytest.raises(EnclaveRefused) as e:
        owner.release_key(pub, stranger.info().enc_pub, b"ctx")
    assert e.value.code == "escrowed"
    with pytest.raises(EnclaveRefused) as e:
        owner.export_to_owner(pub)
    assert e.value.code == "escrowed"
    # ... but the normal path to the beneficiary still works
    ct = owner.release_key(pub, heir.info().enc_pub, b"ctx")
    assert heir.accept_key(ct, b"ctx", pub) == pub
    # a share sent to one holder cannot be accepted by another, nor twice
    (pub2,) = owner.generate_keys(1)
    cts = owner.escrow_split(pub2, [h.info().enc_pub for h in holders], 2, heir.info().enc_pub, CTX)
    with pytest.raises(EnclaveRefused):
        holders[1].escrow_accept(cts[0], pub2, CTX)
    holders[0].escrow_accept(cts[0], pub2, CTX)
    with pytest.raises(EnclaveRefused) as e:
        holders[0].escrow_accept(cts[0], pub2, CTX)
    assert e.value.code == "duplicate-share"


def test_shares_survive_a_holder_restart_and_bad_requests_are_refused(world):
    tmp, owner, holders, heir, stranger = world
    pub = escrow(owner, holders, heir)
    holders[1].close()
    again = InProcessEnclave(tmp / "h1")
    holders[1] = again  # closed by the fixture
    shares = [again.escrow_release_share(pub, CTX), holders[0].escrow_release_share(pub, CTX)]
    assert heir.escrow_recover(pub, CTX, shares) == pub
    (p,) = owner.generate_keys(1)
    with pytest.raises(EnclaveRefused) as e:
        owner.escrow_split(p, [holders[0].info().enc_pub], 2, heir.info().enc_pub, CTX)
    assert e.value.code == "bad-request"
    with pytest.raises(EnclaveRefused) as e:
        holders[0].escrow_release_share(p, CTX)
    assert e.value.code == "unknown-share"


def test_escrow_through_the_enclave_process(tmp_path):
    owner, heir = SubprocessEnclave(tmp_path / "o"), InProcessEnclave(tmp_path / "heir")
    holders = [InProcessEnclave(tmp_path / f"h{i}") for i in range(2)]
    try:
        pub = escrow(owner, holders, heir, k=2)
        shares = [h.escrow_release_share(pub, CTX) for h in holders]
        assert heir.escrow_recover(pub, CTX, shares) == pub
        assert any(k.pubkey == pub and k.state == "escrowed" for k in owner.list_keys())
    finally:
        for e in [owner, heir, *holders]:
            e.close()
