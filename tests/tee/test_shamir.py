"""Shamir shares of a deposit key: any k recover it, k-1 do not."""

import itertools
import random

import coincurve
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.enclave.shamir import N, ShareError, combine, split


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 7).flatmap(lambda k: st.tuples(st.just(k), st.integers(k, 9))), st.integers(0, 2**32))
def test_any_k_recover_and_k_minus_1_do_not(kn, seed):
    k, n = kn
    rng = random.Random(seed)
    key = coincurve.PrivateKey()
    shares = split(key.secret, k, n, randbelow=lambda m: rng.randrange(m))
    for subset in itertools.islice(itertools.combinations(shares, k), 20):
        assert combine(list(subset), k) == key.secret
    fewer = shares[: k - 1]
    with pytest.raises(ShareError, match="not enough shares"):
        combine(fewer, k)
    # pretending k-1 shares are enough gives some other number, not the key
    if k > 2:
        assert combine(fewer, k - 1) != key.secret


def test_k_minus_1_shares_are_consistent_with_every_secret():
    """Information-theoretic: for any candidate secret there is a polynomial through the k-1 shares."""
    k, n = 3, 5
    key = coincurve.PrivateKey()
    shares = split(key.secret, k, n)
    two = shares[:2]
    other = coincurve.PrivateKey().secret
    # the third point that makes `other` the secret exists and is a valid share value
    # (solve: with points (0, other), two shares, the polynomial of degree 2 is fixed; evaluate at x=5)
    pts = [(0, int.from_bytes(other, "big"))] + [(x, int.from_bytes(y, "big")) for x, y in two]

    def at(x):
        total = 0
        for i, yi in pts:
            num = den = 1
            for j, _ in pts:
                if j != i:
                    num = num * (x - j) % N
                    den = den * (i - j) % N
            total = (total + yi * num * pow(den, -1, N)) % N
        return total

    forged = (5, at(5).to_bytes(32, "big"))
    assert combine(two + [forged], k) == other


def test_bad_input():
    with pytest.raises(ShareError):
        split(b"\x00" * 32, 2, 3)
    with pytest.raises(ShareError):
        split(coincurve.PrivateKey().secret, 4, 3)
    with pytest.raises(ShareError):
        combine([(0, b"\x01" * 32), (1, b"\x01" * 32)], 2)
