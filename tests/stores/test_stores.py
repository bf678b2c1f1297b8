"""node.stores: the files and databases the protocols used to open themselves (issue #19). A data directory
written before the stores moved opens as it is, and a contract record is replaced atomically and fsynced."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import node.fsutil
from node import wire
from node.protocols.outcomes import ReleaseRecords
from node.contracts.protocol.swap import ContractRecord
from node.contracts.protocol.schedule import Chunk, Round, Schedule
from node.risk.reputation import Reputation
from node.stores.contracts import ContractStore
from node.stores.release_records import ReleaseRecordsDB
from node.stores.reputation import ReputationDB

NET = "dev"


def record(state: str = "running", acked: int = -1) -> ContractRecord:
    chunk = Chunk("BTC-REG", "bcrt1qexample", b"\x02" * 33, 1000)
    return ContractRecord(NET, 0, "12D3KooWpeer", Schedule([Round(0, 1, chunk)]), [], [b"q"], state, acked=acked)


#: a data directory written by the protocols themselves before the stores moved out (commit 43fef4d: its
#: ``Reputation(path)``, ``ReleaseRecords(net, path=...)`` and ``release.ContractStore``)
OLD_DATADIR = Path(__file__).parent / "datadir_43fef4d"


def test_a_data_directory_written_before_the_stores_moved_opens_as_it_is(tmp_path):
    datadir = tmp_path / "data"
    shutil.copytree(OLD_DATADIR, datadir)
    (datadir / "contracts" / ".bb.tmp").write_bytes(b"half a record")  # a write the old store never finished
    (datadir / "contracts" / "cc.rec").write_bytes(b"\xff junk")
    got = ContractStore(datadir / "contracts").items()
    assert [k for k, _ in got] == ["aa" * 32, "cc"] and isinstance(got[1][1], str)  # junk: the reason
    assert got[0][1].state == "done" and got[0][1].acked == 0 and got[0][1].schedule.rounds[0].chunk.amount == 1000

    rep = Reputation(ReputationDB(datadir / "reputation.sqlite"))
    assert rep.record(b"\x01" * 32).reports == 1 and rep.score(b"\x01" * 32, 100.0) == 2.0
    assert rep.is_cheater(b"\x02" * 32) and not rep.is_cheater(b"\x01" * 32)
    assert [d.device_id for d in rep.devices_of("owner-1")] == [b"\x01" * 32]
    assert b"k" in rep._seen
    rep.close()

    records = ReleaseRecords(NET, store=ReleaseRecordsDB(datadir / "release-records.sqlite"))
    assert records.get(b"\xc1" * 32, b"\xd1" * 33) == b"record-1" and len(records) == 1
    assert records.reported("c1:claimed") and not records.first_report("c1:claimed")
    records.close()


def test_what_the_protocols_change_is_in_the_files_after_a_restart(tmp_path):
    rep = Reputation(ReputationDB(tmp_path / "rep.sqlite"))
    rep.observe(b"\x07", "o", "sgx", 10.0)
    rep.mark_cheater(b"\x07", 11.0)
    rep.close()
    rows = sqlite3.connect(tmp_path / "rep.sqlite").execute("SELECT device_id, cheater FROM devices").fetchall()
    assert rows == [(b"\x07", 1)]

    store = ContractStore(tmp_path / "runs")
    store.put("k1", record(acked=0))
    store.put("k1", record(acked=1))
    store.put("k2", record())
    store.delete("k2")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["k1.rec"]  # no temporary file left
    assert [(k, r.acked) for k, r in ContractStore(tmp_path / "runs").items()] == [("k1", 1)]


def test_a_crash_in_the_middle_of_a_record_write_leaves_the_old_record(tmp_path, monkeypatch):
    store = ContractStore(tmp_path / "c")
    store.put("k", record(acked=0))

    def crash(src, dst):
        raise OSError("power cut before the rename")

    monkeypatch.setattr(node.fsutil.os, "replace", crash)
    with pytest.raises(OSError):
        store.put("k", record(acked=5))
    monkeypatch.undo()
    assert [(k, r.acked) for k, r in ContractStore(tmp_path / "c").items()] == [("k", 0)]


@pytest.mark.parametrize("durable", [True, False])
def test_a_record_is_fsynced_unless_the_store_is_told_not_to(tmp_path, monkeypatch, durable):
    synced = []
    real = node.fsutil.os.fsync
    monkeypatch.setattr(node.fsutil.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    ContractStore(tmp_path / "c", durable=durable).put("k", record())
    assert bool(synced) is durable


def test_request_runs_survive_a_reopen_and_only_the_newest_finished_ones_are_kept(tmp_path):
    """``requests.sqlite``: a request to contracts' state, as the daemon stores it after every change, reads back
    after the store is reopened (a restart); runs not ended are never dropped; the finished ones beyond ``keep``
    are, oldest first; a row that does not read comes back as its reason."""
    from node.protocols.request_run import RequestRun
    from node.stores.requests import RequestStore

    path = tmp_path / "requests.sqlite"
    store = RequestStore(path, keep=2)
    runs = [RequestRun(f"r{i}", "BTC-REG", "ETH-DEV", 5_000, "me", started_at=float(i)) for i in range(5)]
    for i, run in enumerate(runs):
        done = i != 1  # r1 still runs
        store.save(run.request_id, run.started_at, done, {"run": run.to_state(), "contract": "swap"})
    store.close()
    store = RequestStore(path, keep=2)
    got = store.load()
    assert [rid for rid, _ in got] == ["r1", "r3", "r4"]
    assert RequestRun.from_state(got[0][1]["run"]).report() == runs[1].report() and got[0][1]["contract"] == "swap"
    store._db.execute("UPDATE runs SET state = '[1' WHERE request_id = 'r3'")
    assert isinstance(dict(store.load())["r3"], str)
    store.close()


def test_the_escrows_an_arbiter_agreed_to_read_back_after_a_crash_and_a_row_that_does_not_is_dropped(tmp_path):
    """``arbiter.sqlite`` (``node.contracts.desk.arbiter``): an escrow is on disk, durably (WAL,
    ``synchronous=FULL``), when ``agree`` returns, so a node killed right after answering yes finds it again; a
    row whose spec does not read back (or names another contract id) is dropped, with a warning, not kept."""
    from node.contracts import stdlib
    from node.contracts.desk.arbiter import Arbitrations
    from node.contracts.spec import PartySpec, make_spec, spec_id
    from node.stores.arbitrations import ArbitrationStore
    from node.tee.client import InProcessEnclave

    bindings = []
    for p in ("payer", "payee", "arbiter"):
        with InProcessEnclave(None) as e:
            bindings.append(e.binding_for(NET, p))
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 500},
                     [PartySpec(bindings[0]), PartySpec(bindings[1]), PartySpec(bindings[2], [], False)])
    path = tmp_path / "arbiter.sqlite"
    first = Arbitrations(ArbitrationStore(path))
    assert first.agree("payer", spec, 1.0) is None
    assert first.store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert first.store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = sqlite3.connect(path)  # (the first is never closed: a crash)
    with other:
        other.execute("INSERT INTO arbitrated VALUES (?, 'mallory', ?, 2.0)", ("ab" * 32, b"\x00junk"))
        other.execute("INSERT INTO arbitrated VALUES (?, 'mallory', ?, 3.0)", ("cd" * 32, spec.encode()))
    again = Arbitrations(ArbitrationStore(path))
    cid = spec_id(spec).hex()
    assert len(again) == 1 and again.get(cid) == spec
    assert [r[0] for r in other.execute("SELECT cid FROM arbitrated")] == [cid]


def test_the_designations_of_a_recovery_node_read_back_after_a_reopen(tmp_path):
    """``escrow.sqlite`` (moved out of the key-escrow desk into ``node.stores.designations``, same file and
    schema): a designation, the recovery asked and its result survive a reopen; the first one agreed is kept."""
    from node.stores.designations import DesignationStore

    db = DesignationStore(tmp_path / "escrow.sqlite")
    db.add("aa", "owner1", 0, b"spec-a", '{"02ab": "bcrt1q..."}', 100.0)
    db.add("aa", "owner2", 1, b"other", "{}", 200.0)  # (kept as first agreed)
    db.add("bb", "owner1", 1, b"spec-b", "{}", 150.0)
    db.ask_recover("aa", 300.0)
    db.close()
    db = DesignationStore(tmp_path / "escrow.sqlite")
    assert db.count() == 2 and db.has("aa") and not db.has("cc")
    assert db.get("aa") == (0, b"spec-a", '{"02ab": "bcrt1q..."}') and db.get("cc") is None
    assert db.unfinished() == ["aa"]
    db.ask_recover("aa", 400.0)  # asked again: the first time kept
    db.set_result("aa", '[{"index": 0, "state": "swept"}]')
    db.set_result("aa", "[]")  # a result is never replaced
    assert db.unfinished() == []
    assert [r[0] for r in db.rows()] == ["aa", "bb"]
    assert db.rows()[0][5:] == (300.0, '[{"index": 0, "state": "swept"}]')
    db.close()
