"""Contract key escrow: what the owner's split and the beneficiary's rebuild cost, through the real enclave
interface (``InProcessEnclave``: framed messages, sealed state on disk), beside one raw coincurve key
derivation measured in the same run (the unit of the rebuild's search).

    .venv/bin/python -m benchmarks.escrow [--quick]

Prints, for k of n holders: the split of one chunk's key (n shares, each encrypted and signed), one holder's
release of its share at the height, the rebuild from k honest shares, and the worst case of the rebuild when
a host slipped in one forged share first (every k-subset with it is tried before an honest one). No target
is set by issue 7; the figures say what a recovery node spends in its enclave per chunk.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from math import comb

    import coincurve

    from node.assets import address_for
    from node.contracts import stdlib
    from node.contracts.spec import Commit, EscrowHolder, EscrowTerm, PartySpec, make_spec, spec_id
    from node.tee.client import InProcessEnclave
    from node.enclave import shamir

    quick = "--quick" in argv
    cases = [(2, 3), (3, 5)] if quick else [(2, 3), (3, 5), (5, 9), (8, 16)]
    t0 = time.perf_counter()
    n_raw = 2000
    for _ in range(n_raw):
        coincurve.PrivateKey().public_key.format()
    raw_us = (time.perf_counter() - t0) / n_raw * 1e6
    print(f"raw coincurve key + pubkey: {raw_us:.0f} us")
    for k, n in cases:
        with tempfile.TemporaryDirectory(prefix="ks-bench-escrow-") as tmp:
            root = Path(tmp)
            e = {x: InProcessEnclave(root / x) for x in ("p", "q", "r", "heir")}
            holders = [InProcessEnclave(root / f"h{i}") for i in range(n)]
            (pub,) = e["p"].generate_keys(1)
            parties = [PartySpec(e["p"].binding_for("dev", "P"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub),
                                                                         1000, 5)]),
                       PartySpec(e["q"].binding_for("dev", "Q"), []), PartySpec(e["r"].binding_for("dev", "R"), [],
                                                                                 False)]
            heir = e["heir"].info().enc_pub
            term = EscrowTerm(0, [], [EscrowHolder(h.info().enc_pub, f"H{i}") for i, h in enumerate(holders)], k, heir)
            spec = make_spec("dev", stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 10}, parties,
                             escrow=[term])
            cid = spec_id(spec)
            a = e["p"].contract_open(spec.encode())
            b = e["q"].contract_open(spec.encode(), [(0, a.sig)])
            sigs = [(0, a.sig), (1, b.sig)]
            t = time.perf_counter()
            shares = e["p"].contract_escrow_split(cid)
            split_ms = (time.perf_counter() - t) * 1e3
            for h in holders:
                h.escrow_hold(spec.encode(), sigs, [s for s in shares if s.holder == h.info().enc_pub])
                h.escrow_height(cid, "BTC-REG", 10)
            t = time.perf_counter()
            cts = [h.escrow_share(cid, 0, 0, heir) for h in holders[:k]]
            share_ms = (time.perf_counter() - t) * 1e3 / k
            t = time.perf_counter()
            e["heir"].escrow_rebuild(cid, 0, 0, pub, cts)
            rebuild_ms = (time.perf_counter() - t) * 1e3
            # the worst case, in the enclave's own code (``EnclaveCore._combine``, no I/O): a forged share with
            # the first index, then the n-1 honest others: every k-subset holding the forgery fails first
            secret = coincurve.PrivateKey()
            honest = shamir.split(secret.secret, k, n)
            forged = [(1, b"\7" * 32)] + honest[1:]
            t = time.perf_counter()
            got = e["heir"]._core._combine(secret.public_key.format(), {k}, forged)  # noqa: SLF001
            worst_ms = (time.perf_counter() - t) * 1e3
            assert got == secret.secret
            print(f"k={k} n={n}: split {split_ms:.1f} ms ({n} shares), one share released {share_ms:.1f} ms, "
                  f"rebuild from k honest {rebuild_ms:.1f} ms, worst case with one forged share "
                  f"{worst_ms:.1f} ms ({comb(n - 1, k - 1)} subsets tried first)")
            for x in [*e.values(), *holders]:
                x.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
