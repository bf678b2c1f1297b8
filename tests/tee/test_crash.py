"""Crash safety of the release journal: SIGKILL the enclave process at random
instants while it releases keys, restart it, and check after every restart:

* the sealed state opens (atomic writes: never torn);
* no key is lost: every key ever generated is still in the vault;
* no key is released twice: the host has seen at most one ciphertext per key,
  and it is the journaled one; already-released keys stay refused;
* a key the host saw a ciphertext for is marked released (journal before send);
* a key released in the crash window (journaled, reply lost) is recovered
  with ``resend_release`` (the same journaled bytes, to the same recipient).

Seeded: the seed is printed; rerun with ``KEYSWITCH_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import threading
import time

import coincurve

from node.crypto import ecies_decrypt, pubkey_of
from node.tee.client import EnclaveRefused, EnclaveUnavailable, SubprocessEnclave
from node.enclave.core import release_aad
from tests.tee.testbuild import RawOps, RawOpsSubprocess  # the test build: raw release/resend/accept

TRIALS = 50
GEN_BATCH = 5


def test_sigkill_during_releases(tmp_path):
    seed = int(os.environ.get("KEYSWITCH_CRASH_SEED") or secrets.randbelow(2**32))
    print(f"\ncrash test seed {seed} (rerun: KEYSWITCH_CRASH_SEED={seed})")
    rng = random.Random(seed)
    d = tmp_path / "vault"
    recipients = [coincurve.PrivateKey(rng.randbytes(32)) for _ in range(3)]
    by_pub = {pubkey_of(r): r for r in recipients}

    attempted: dict[bytes, tuple[bytes, bytes]] = {}  # pub -> (recipient, context) of its first release attempt
    seen: dict[bytes, set[bytes]] = {}  # ciphertexts that reached the host, per key
    e = RawOpsSubprocess(d)
    known: set[bytes] = set(e.generate_keys(60))
    # How long does one release take here (two fsyncs)? Kill within ~a dozen of them.
    t0 = time.perf_counter()
    for pk in sorted(known)[:5]:
        attempted[pk] = (pubkey_of(recipients[0]), b"warm-up")
        seen[pk] = {e.release_key(pk, *attempted[pk])}
    window = max(0.04, 12 * (time.perf_counter() - t0) / 5)
    e.close()
    stats = dict(killed_in_call=0, recovered=0, releases=0, refusals=0, lost_generate_replies=0)
    last_counter = 0

    def check(enc: RawOpsSubprocess) -> list[bytes]:
        nonlocal last_counter
        info = enc.info()
        assert info.counter >= last_counter, "sealed state went backwards"
        last_counter = info.counter
        status = {k.pubkey: k for k in enc.list_keys()}
        missing = known - set(status)
        assert not missing, f"{len(missing)} keys lost (seed {seed})"
        new = set(status) - known
        assert len(new) in (0, GEN_BATCH), f"torn key generation: {len(new)} new keys (seed {seed})"
        stats["lost_generate_replies"] += bool(new)  # a generate call killed after sealing: all of its keys are there
        known.update(new)
        for pk, st in status.items():
            cts = seen.get(pk, set())
            assert len(cts) <= 1, f"key {pk.hex()} released twice (seed {seed})"
            if st.state == "held":
                assert not cts, f"host holds a ciphertext of key {pk.hex()} the journal says is held (seed {seed})"
                continue
            assert st.state == "released"
            recipient, ctx = attempted[pk]
            assert st.recipient == recipient
            ct = enc.resend_release(pk, recipient, ctx)
            if cts:
                assert cts == {ct}, f"the ciphertext that left is not the journaled one (seed {seed})"
            else:
                stats["recovered"] += 1
                seen[pk] = {ct}
            secret = ecies_decrypt(by_pub[recipient], ct, release_aad(pk, ctx))
            assert pubkey_of(coincurve.PrivateKey(secret)) == pk
        return [pk for pk, st in status.items() if st.state == "held"]

    for trial in range(TRIALS):
        enc = RawOpsSubprocess(d)  # the sealed state must always open
        held = check(enc)
        rng.shuffle(held)
        timer = threading.Timer(rng.uniform(0.0, window), os.kill, (enc.pid, signal.SIGKILL))
        timer.start()
        try:
            while True:
                r = rng.random()
                if r < 0.08 or not held:
                    known.update(enc.generate_keys(GEN_BATCH))
                    held.extend(k.pubkey for k in enc.list_keys() if k.state == "held" and k.pubkey not in held)
                elif r < 0.25 and attempted:
                    pk = rng.choice(sorted(attempted))
                    if pk not in seen:
                        continue  # its first release may still be in the crash window
                    try:
                        seen[pk].add(enc.release_key(pk, pubkey_of(rng.choice(recipients)), b"second"))
                    except EnclaveRefused as exc:
                        assert exc.code == "already-released"
                        stats["refusals"] += 1
                else:
                    pk = held.pop()
                    recipient, ctx = pubkey_of(rng.choice(recipients)), f"trial-{trial}".encode()
                    attempted[pk] = (recipient, ctx)
                    try:
                        ct = enc.release_key(pk, recipient, ctx)
                    except EnclaveUnavailable:
                        stats["killed_in_call"] += 1
                        raise
                    seen.setdefault(pk, set()).add(ct)
                    stats["releases"] += 1
        except EnclaveUnavailable:
            pass
        finally:
            timer.join()
            enc.close()

    enc = RawOpsSubprocess(d)
    check(enc)
    enc.close()
    print(f"crash test: {TRIALS} kills within {window * 1000:.0f} ms, {len(known)} keys, stats {stats}")
    assert stats["releases"] > TRIALS, "too few releases happened between kills to test anything"
    assert stats["killed_in_call"] > TRIALS // 3, "kills did not land inside release calls"
