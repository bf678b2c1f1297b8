"""The sealed store's append-only journal (``node.enclave.sealed``): a snapshot plus records appended per
save; torn tails, stale records after a compaction, gaps and rollbacks, on real files."""

from __future__ import annotations

import os

import msgspec
import pytest

from node.enclave import sealed as S
from node.enclave.sealed import COUNTER_FILE, JOURNAL_FILE, SEALED_FILE, SealedStateError, SealedStore

KEY = bytes(range(32))


def opened(d) -> tuple[SealedStore, bytes | None]:
    """The store and the whole state it holds (None: nothing sealed); these tests seal whole states only."""
    st = SealedStore(d, KEY)
    chain = st.load_chain()
    assert chain is None or chain[1] == [], "deltas in the journal"
    return st, None if chain is None else chain[0]


def test_saves_after_the_first_are_appended_and_the_newest_state_loads(tmp_path):
    st, plain = opened(tmp_path)
    assert plain is None
    st.save(b"state-1")
    snap = (tmp_path / SEALED_FILE).read_bytes()
    for i in range(2, 6):
        st.save(b"state-%d" % i)
    assert (tmp_path / SEALED_FILE).read_bytes() == snap  # the snapshot is not rewritten per save
    assert b"state-" not in (tmp_path / JOURNAL_FILE).read_bytes()  # records are encrypted
    again, plain = opened(tmp_path)
    assert plain == b"state-5" and again.counter == 5


def test_a_torn_append_loads_the_state_before_it_and_the_next_save_cuts_it_off(tmp_path):
    st, _ = opened(tmp_path)
    st.save(b"one")
    st.save(b"two")
    journal = tmp_path / JOURNAL_FILE
    good = journal.read_bytes()
    st.save(b"three")
    torn = journal.read_bytes()[: len(good) + 20]  # killed in the middle of the third append: the counter
    journal.write_bytes(torn)  # was advanced only after the append was durable, so it still says 2
    counter = tmp_path / COUNTER_FILE
    counter.write_bytes(counter.read_bytes()[:-8])
    again, plain = opened(tmp_path)
    assert plain == b"two" and again.counter == 2
    again.save(b"three again")
    assert journal.read_bytes().startswith(good) and len(journal.read_bytes()) > len(torn)
    assert opened(tmp_path)[1] == b"three again"


def test_a_compaction_writes_a_snapshot_and_empties_the_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "JOURNAL_MAX", 200)
    st, _ = opened(tmp_path)
    snapshots = set()
    for i in range(1, 30):
        st.save(b"state-%02d" % i + bytes(30))
        assert (tmp_path / JOURNAL_FILE).stat().st_size <= 200 if i > 1 else True
        snapshots.add(int.from_bytes((tmp_path / SEALED_FILE).read_bytes()[7:15], "big"))  # its counter
    assert len(snapshots) > 5  # compacted again and again
    again, plain = opened(tmp_path)
    assert plain == b"state-29" + bytes(30) and again.counter == 29


def test_records_left_by_a_compaction_that_stopped_early_are_stale(tmp_path):
    st, _ = opened(tmp_path)
    st.save(b"one")
    st.save(b"two")  # journal record 2
    old_journal = (tmp_path / JOURNAL_FILE).read_bytes()
    st._journal_end = S.JOURNAL_MAX  # force the next save to be a snapshot (counter 3) ...
    st.save(b"three")
    (tmp_path / JOURNAL_FILE).write_bytes(old_journal)  # ... killed before it emptied the journal
    again, plain = opened(tmp_path)
    assert plain == b"three" and again.counter == 3
    again.save(b"four")
    assert opened(tmp_path)[1] == b"four"


def test_a_cut_journal_and_a_forged_record_are_refused(tmp_path):
    st, _ = opened(tmp_path)
    for i in range(1, 5):
        st.save(b"state-%d" % i)
    journal = tmp_path / JOURNAL_FILE
    blob = journal.read_bytes()
    rec = len(blob) // 3  # three equal records (2, 3, 4)
    journal.write_bytes(blob[:rec])  # the host drops the last two releases
    with pytest.raises(SealedStateError, match="rollback detected"):
        opened(tmp_path)
    bad = bytearray(blob)
    bad[rec + 30] ^= 1  # a record in the middle does not authenticate: the chain ends there
    journal.write_bytes(bytes(bad))
    with pytest.raises(SealedStateError, match="rollback detected"):
        opened(tmp_path)
    journal.write_bytes(blob)
    assert opened(tmp_path)[1] == b"state-4"


def test_the_counter_log_takes_the_largest_value_and_is_rewritten_when_long(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "COUNTER_MAX", 64)
    st, _ = opened(tmp_path)
    for i in range(1, 20):
        st.save(b"s%d" % i)
        assert (tmp_path / COUNTER_FILE).stat().st_size <= 64
    counter = tmp_path / COUNTER_FILE
    counter.write_bytes(counter.read_bytes() + bytes(8))  # a torn append that left zeros cannot lower it
    again, plain = opened(tmp_path)
    assert plain == b"s19" and again.counter == 19
    counter.write_bytes(os.urandom(3))
    with pytest.raises(SealedStateError, match="corrupt"):
        opened(tmp_path)


def test_the_counter_advance_is_flushed_after_the_reply_and_may_trail_the_state(tmp_path):
    st, _ = opened(tmp_path)
    st.save(b"one")
    st.save(b"two")
    assert st._counter_dirty  # written, its fsync left for after the reply (EnclaveCore.flush)
    st.sync_counter()
    assert not st._counter_dirty
    st.save(b"three")
    counter = tmp_path / COUNTER_FILE
    counter.write_bytes(counter.read_bytes()[:-8])  # a power cut lost the unflushed advance: the state leads
    again, plain = opened(tmp_path)
    assert plain == b"three" and again.counter == 3


def test_contract_state_the_enclave_seals_is_journaled_and_survives_a_restart(tmp_path):
    """A contract opened, signed, fed a height, released from and accepted into (node.enclave.contracts)
    lives in the sealed state: each change is a journal record, and a restarted enclave resumes it exactly
    (the release resent byte for byte, never made twice), while a journal cut back before the release is
    refused as a rollback."""
    from node.contracts import stdlib
    from node.contracts.spec import make_spec
    from node.tee.client import EnclaveRefused, EnclaveUnavailable, InProcessEnclave
    from tests.tee.contractkit import NET, opened as opened_contract, parties

    a, b = InProcessEnclave(tmp_path / "a"), InProcessEnclave(tmp_path / "b")
    spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 5_000,
                                                  "deadline": 300},
                     parties([a, b], ["A", "B"], ["BTC-REG", "LTC"], [1, 1]))
    cid = opened_contract([a, b], spec, [0, 1])
    for e in (a, b):
        e.contract_height(cid, "BTC-REG", 100)
    vault = tmp_path / "a" / "enclave"
    journal = vault / JOURNAL_FILE
    before = journal.stat().st_size
    saved = {n: (vault / n).read_bytes() for n in (SEALED_FILE, JOURNAL_FILE)}  # before the release
    record = a.contract_release(cid, 0, 1)
    assert journal.stat().st_size > before  # the release (contract and key state) is one appended record
    assert b.contract_accept(cid, record) == (0, 0)
    a.close()
    b.close()
    a, b = InProcessEnclave(tmp_path / "a"), InProcessEnclave(tmp_path / "b")
    for e in (a, b):
        moved = [(m.giver, m.index, m.receiver) for m in e.contract_status(cid).moved]
        assert moved == [(0, 0, 1)]
    assert a.contract_resend(cid, 0) == record
    with pytest.raises(EnclaveRefused):  # released once: the resumed contract allows no second release
        a.contract_release(cid, 0, 1)
    a.close()
    for name, data in saved.items():  # the host puts back the sealed files from before the release
        (vault / name).write_bytes(data)
    with pytest.raises(EnclaveUnavailable, match="rollback"):
        InProcessEnclave(tmp_path / "a")


def _appended_by_one_release(vault, a, pub) -> int:
    journal = vault / JOURNAL_FILE
    before = journal.stat().st_size if journal.exists() else 0
    a.release_key(pub, a.info().enc_pub, b"one more")
    return journal.stat().st_size - before


def test_a_save_writes_what_changed_not_the_whole_history(tmp_path):
    """A sealed write after 400 releases costs what one after 10 does: the record appended for one more
    release holds the changed key and journal entry, not the whole state (which grows ~0.5 kB a release).
    Written as whole states, a long-lived enclave wrote megabytes per contract step."""
    from tests.tee.testbuild import RawOps

    a = RawOps(tmp_path / "a")
    vault = tmp_path / "a" / "enclave"
    pubs = a.generate_keys(420)
    for p in pubs[:10]:
        a.release_key(p, a.info().enc_pub, b"history")
    early = _appended_by_one_release(vault, a, pubs[10])
    for p in pubs[11:411]:
        a.release_key(p, a.info().enc_pub, b"history")
    late = _appended_by_one_release(vault, a, pubs[411])
    state = len(msgspec.msgpack.encode(a._core._state))
    assert state > 100_000  # the history is large ...
    assert late < 2_000 and late <= early + 64, (early, late, state)  # ... and a save does not carry it
    in_memory = msgspec.msgpack.encode(a._core._state)
    a.close()
    again = RawOps(tmp_path / "a")  # and the chain of changes reads back to the same state
    assert msgspec.msgpack.encode(again._core._state) == in_memory
    again.close()


def _journal_writes_reported_failed(monkeypatch) -> None:
    """The hostile host's disk: a journal append reaches the file, then the write is reported failed."""
    real = S._append

    def written_then_failed(path, data, at=None, *, sync=True):
        real(path, data, at, sync=sync)
        if path.name == JOURNAL_FILE and data:
            raise OSError("fsync failed (so the host says)")

    monkeypatch.setattr(S, "_append", written_then_failed)


def test_a_seal_reported_failed_never_shares_its_counter_with_a_later_state(tmp_path, monkeypatch):
    """A hostile host lets a record reach the disk, reports the write failed (the enclave undoes the operation
    and refuses it), keeps the record's bytes, and lets the next operation seal. Were that next state sealed
    under the same counter, the host could later put the kept record back: two states at one counter, both
    accepted (a key released to two recipients). The failed counter is burned and the next save is a
    snapshot past it, so the kept record is stale."""
    st, _ = opened(tmp_path)
    st.save(b"one")
    st.save(b"two")
    _journal_writes_reported_failed(monkeypatch)
    with pytest.raises(OSError):
        st.save(b"released to A")
    monkeypatch.undo()
    kept = (tmp_path / JOURNAL_FILE).read_bytes()  # the host's copy, with the refused state in it
    st.save(b"released to B")
    assert opened(tmp_path)[1] == b"released to B"
    (tmp_path / JOURNAL_FILE).write_bytes(kept)  # the host puts its record back
    again, plain = opened(tmp_path)
    assert plain == b"released to B", plain  # the kept record is stale under the snapshot: never read
    assert again.counter == st.counter == 4  # counter 3 was burned
    (tmp_path / JOURNAL_FILE).write_bytes(b"")
    st.save_delta(b"a delta", lambda: b"whole")  # and deltas go on from the snapshot
    assert SealedStore(tmp_path, KEY).load_chain() == (b"released to B", [b"a delta"])


def test_a_host_reporting_a_seal_failed_cannot_get_one_key_released_to_two_recipients(tmp_path, monkeypatch):
    """The same attack through the enclave's operations: the release to A is sealed but reported failed (the
    enclave refuses it), the host keeps the journal, the release to B goes through, then the host restarts the
    enclave on its kept journal and asks for A's ciphertext again. The key went to B only."""
    from node.tee.client import EnclaveRefused, EnclaveUnavailable
    from tests.tee.testbuild import RawOps

    a = RawOps(tmp_path / "a")
    vault = tmp_path / "a" / "enclave"
    key, = a.generate_keys(1)
    alice, bob = a.generate_keys(2)  # two ECIES recipients (any valid public keys)
    _journal_writes_reported_failed(monkeypatch)
    with pytest.raises(EnclaveRefused, match="storage-failed"):
        a.release_key(key, alice, b"ctx")
    monkeypatch.undo()
    kept = {n: (vault / n).read_bytes() for n in (SEALED_FILE, JOURNAL_FILE)}
    a.release_key(key, bob, b"ctx")
    a.close()
    (vault / JOURNAL_FILE).write_bytes(kept[JOURNAL_FILE])  # the record of the refused release put back
    again = RawOps(tmp_path / "a")
    with pytest.raises(EnclaveRefused, match="already-released"):
        again.resend_release(key, alice, b"ctx")
    assert again.resend_release(key, bob, b"ctx")
    again.close()
    (vault / SEALED_FILE).write_bytes(kept[SEALED_FILE])  # and the snapshot from before: a rollback, refused
    with pytest.raises(EnclaveUnavailable, match="rollback"):
        RawOps(tmp_path / "a")


def test_deltas_read_back_across_compactions_and_restarts(tmp_path, monkeypatch):
    """Releases, exports and key generation sealed as deltas, with a small journal bound so that snapshots come
    and go between them, and restarts anywhere: every reopen reads back the exact state held in memory."""
    from tests.tee.testbuild import RawOps

    monkeypatch.setattr(S, "JOURNAL_MAX", 3_000)
    a = RawOps(tmp_path / "a")
    pubs = a.generate_keys(40)
    snapshots = set()
    for i, p in enumerate(pubs):
        if i % 3 == 0:
            a.export_to_owner(p)
        else:
            a.release_key(p, a.info().enc_pub, b"ctx %d" % i)
        if i % 4 == 0:
            a.generate_keys(1)
        snapshots.add((tmp_path / "a" / "enclave" / SEALED_FILE).read_bytes()[7:15])
        if i % 7 == 6:
            want = msgspec.msgpack.encode(a._core._state)
            a.close()
            a = RawOps(tmp_path / "a")
            assert msgspec.msgpack.encode(a._core._state) == want
    assert len(snapshots) >= 3  # the first snapshot and two compactions at least
    a.close()


def test_a_vault_sealed_whole_before_deltas_opens_and_goes_on_in_deltas(tmp_path):
    """A journal of whole states (every vault before deltas) reads back; the next seals are delta records."""
    from node.enclave.core import State
    from node.enclave.sealed import DELTA_MAGIC, JOURNAL_MAGIC
    from tests.tee.testbuild import RawOps

    a = RawOps(tmp_path / "a")
    pubs = a.generate_keys(3)
    vault = tmp_path / "a" / "enclave"
    state = a._core._state
    a.close()
    for name in (SEALED_FILE, JOURNAL_FILE, COUNTER_FILE):
        (vault / name).unlink()
    store = SealedStore(vault, S.sim_sealing_key(vault))  # the same vault, as the code before deltas sealed it:
    assert store.load_chain() is None
    store.save(msgspec.msgpack.encode(state))  # a snapshot ...
    store.save(msgspec.msgpack.encode(state))  # ... and a whole state appended for every change
    journal = (vault / JOURNAL_FILE).read_bytes()
    assert journal[:4] == JOURNAL_MAGIC and DELTA_MAGIC not in journal
    a = RawOps(tmp_path / "a")
    assert [k.pubkey for k in a.list_keys()] == pubs
    a.release_key(pubs[0], a.info().enc_pub, b"after")
    assert (vault / JOURNAL_FILE).read_bytes()[len(journal):][:4] == DELTA_MAGIC
    want = msgspec.msgpack.encode(a._core._state)
    a.close()
    a = RawOps(tmp_path / "a")
    assert msgspec.msgpack.encode(a._core._state) == want
    assert isinstance(a._core._state, State)
    a.close()


def test_a_delta_that_does_not_fit_its_state_is_refused_and_a_cut_joins_to_msgspecs_own_encoding():
    from node.enclave.core import State, _fresh_state
    from node.enclave.statedelta import Change, Delta, DeltaError, Layout
    import coincurve

    state = _fresh_state(coincurve.PrivateKey)
    layout = Layout(State)
    parts, delta = layout.cut(state)
    assert delta is None and layout.join(parts) == msgspec.msgpack.encode(state)
    keys = layout.names.index("keys")
    older = Delta(1, len(parts) - 1, [Change(keys, length=0, items=[])])  # sealed before the last field came
    work = [list(p) if isinstance(p, list) else p for p in parts]
    layout.apply(work, msgspec.msgpack.encode(older))
    assert layout.join(work) == msgspec.msgpack.encode(state)
    bad = [Delta(1, len(parts) + 1, []),  # a layout this build does not know
           Delta(1, len(parts) - 1, [Change(len(parts) - 1, length=0, items=[])]),  # a field it did not have
           Delta(2, len(parts), []),  # another version
           Delta(1, len(parts), [Change(99, value=b"\xc0")]),  # no such field
           Delta(1, len(parts), [Change(0, length=1, items=[(0, b"\x01")])]),  # a scalar as a list
           Delta(1, len(parts), [Change(keys, length=2, items=[(1, b"\x90")])]),  # a gap in a list
           Delta(1, len(parts), [Change(keys, length=-1, items=[])])]  # a negative length
    for d in bad:
        with pytest.raises(DeltaError):
            layout.apply([list(p) if isinstance(p, list) else p for p in parts], msgspec.msgpack.encode(d))
    with pytest.raises(DeltaError):
        layout.apply(list(parts), b"\xff not a delta")
