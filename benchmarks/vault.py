"""Enclave vault throughput through the real interface (``SubprocessEnclave``:
a separate process, framed messages over pipes), beside raw coincurve in the
same run.

    .venv/bin/python -m benchmarks.vault [--quick]

Prints keys generated/s, quotes produced and verified/s, offer sheets signed
(real one-offer sheet bodies, batched; and sheets of 100 offers) and verified/s, raw coincurve sign and verify/s, and the ratio of the
enclave interface to raw coincurve against the 0.5x target.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import coincurve

TARGET = 0.5


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def raw_coincurve(n: int) -> tuple[float, float]:
    key = coincurve.PrivateKey()
    pub = key.public_key
    digests = [os.urandom(32) for _ in range(n)]
    t0 = time.perf_counter()
    sigs = [key.sign(d, hasher=None) for d in digests]
    t_sign = time.perf_counter() - t0
    t0 = time.perf_counter()
    ok = all(pub.verify(s, d, hasher=None) for s, d in zip(sigs, digests))
    t_verify = time.perf_counter() - t0
    assert ok
    return rate(n, t_sign), rate(n, t_verify)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    from node.attest import simquote
    from node.tee.client import SubprocessEnclave, verify_offer_sheet_sig
    from node.attest.policy import AttestationPolicy
    from tests.sheetbody import sheet_body

    n_keys = 500 if quick else 2000
    n_quotes = 100 if quick else 400
    n_sheets, batch = (2000, 500) if quick else (20000, 1000)
    n_big = 100 if quick else 1000

    with tempfile.TemporaryDirectory(prefix="ks-bench-vault-") as tmp:
        enc = SubprocessEnclave(Path(tmp) / "node")
        try:
            pubs, t = timed(enc.generate_keys, n_keys)
            keys_rate = rate(n_keys, t)

            binding = enc.binding_for("dev", "12D3KooWbenchmark")
            t0 = time.perf_counter()
            quotes = [enc.quote(binding, nonce=i.to_bytes(8, "big")) for i in range(n_quotes)]
            quote_rate = rate(n_quotes, time.perf_counter() - t0)
            policy = AttestationPolicy.dev()
            at = datetime.now(timezone.utc)
            t0 = time.perf_counter()
            verdicts = [simquote.verify_sim_quote(q, policy=policy, at=at) for q in quotes]
            qverify_rate = rate(n_quotes, time.perf_counter() - t0)
            assert all(v.ok for v in verdicts)

            # real version-3 sheet bodies (the enclave reads the keys each offers: I4), one offer each
            sheets = [(sheet_body([pubs[i % n_keys]], seq=i), [pubs[i % n_keys]]) for i in range(n_sheets)]
            t0 = time.perf_counter()
            sigs: list[bytes] = []
            for i in range(0, n_sheets, batch):
                sigs.extend(enc.sign_offer_sheets(sheets[i : i + batch]))
            sign_rate = rate(n_sheets, time.perf_counter() - t0)
            big = [(sheet_body(pubs[:100], seq=i), pubs[:100]) for i in range(n_big)]  # 100 offers a sheet
            t0 = time.perf_counter()
            for i in range(0, n_big, 10):
                enc.sign_offer_sheets(big[i : i + 10])
            big_rate = rate(n_big, time.perf_counter() - t0)
            sign_pub = enc.info().sign_pub
            t0 = time.perf_counter()
            ok = all(verify_offer_sheet_sig(sign_pub, s, sig) for (s, _), sig in zip(sheets, sigs))
            verify_rate = rate(n_sheets, time.perf_counter() - t0)
            assert ok
        finally:
            enc.close()

    raw_sign, raw_verify = raw_coincurve(n_sheets)
    print(f"enclave: SubprocessEnclave (separate process, SIMULATED), batch {batch} sheets per round trip")
    print(f"keys generated        {keys_rate:10.0f} /s   ({n_keys} in one call, sealed once)")
    print(f"quotes produced       {quote_rate:10.0f} /s   (one round trip each)")
    print(f"quotes verified       {qverify_rate:10.0f} /s")
    print(f"offers signed         {sign_rate:10.0f} /s   through the enclave interface")
    print(f"100-offer sheets      {big_rate:10.0f} /s   signed, 10 per round trip (each key checked)")
    print(f"offers verified       {verify_rate:10.0f} /s   verify_offer_sheet_sig")
    print(f"raw coincurve sign    {raw_sign:10.0f} /s   (anchor, same run)")
    print(f"raw coincurve verify  {raw_verify:10.0f} /s   (anchor, same run)")
    rs, rv = sign_rate / raw_sign, verify_rate / raw_verify
    for name, r in (("sign", rs), ("verify", rv)):
        print(f"{name:6} ratio {r:5.2f}x raw coincurve (target >= {TARGET}x): {'MET' if r >= TARGET else 'MISSED'}")
    return 0 if min(rs, rv) >= TARGET else 1


if __name__ == "__main__":
    rc = main(sys.argv[1:])
    if rc:  # only on a missed target: a plain return keeps `python -m benchmarks` running the others
        sys.exit(rc)
