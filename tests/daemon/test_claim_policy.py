"""Claim policy "keep": the ``claims.policy`` setting, and kept keys becoming this node's deposits and offers
(real enclaves, a real dev ledger, real SQLite, real contract records on disk)."""

from __future__ import annotations

import coincurve
import pytest

from node import config
from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, make_spec
from node.crypto import ecies_encrypt
from node.app.deposits import DepositStore, adopt_kept, offers_from
from node.ledger.devnet import DevLedger
from node.contracts.protocol.run import RunRecord
from node.contracts.protocol.claims import ClaimRecord
from node.contracts.protocol.swap import ContractRecord
from node.contracts.protocol.schedule import Chunk, swap_schedule
from node.stores.contracts import ContractStore
from node.contracts.desk.swaps import kept_chunks
from node.tee.client import InProcessEnclave
from node.enclave.core import release_aad
from tests.sheetbody import sheet_body
from tests.tee.testbuild import RawOps  # the test build: raw release/accept

NET, NOW = "dev", 1_000.0


# ------------------------------------------------------------------ the setting
def test_claims_policy_defaults_to_sweep_and_takes_keep_from_file_env_or_flag(tmp_path):
    assert config.load(tmp_path, env={})["claims.policy"] == "sweep"
    assert config.load(tmp_path, env={"KEYSWITCH_CLAIMS_POLICY": "keep"})["claims.policy"] == "keep"
    assert config.load(tmp_path, env={}, overrides={"claims.policy": "keep"})["claims.policy"] == "keep"
    (tmp_path / "config.toml").write_text('[claims]\npolicy = "keep"\n')
    cfg = config.load(tmp_path, env={})
    assert cfg["claims.policy"] == "keep" and cfg.sources["claims.policy"].endswith("config.toml")
    assert '[claims]\n# what the node does with a key it receives' in config.render_default()


@pytest.mark.parametrize("bad", ["hold", "Keep", ""])
def test_a_bad_claims_policy_names_the_key_the_value_and_the_choices(tmp_path, bad):
    with pytest.raises(config.ConfigError) as ei:
        config.load(tmp_path, env={"KEYSWITCH_CLAIMS_POLICY": bad})
    assert ei.value.key == "claims.policy" and ei.value.value == bad
    assert "must be one of sweep, keep" in str(ei.value) and "KEYSWITCH_CLAIMS_POLICY" in str(ei.value)


# ------------------------------------------------------------------ kept keys become deposits
class World:
    """A giver enclave G and a receiver enclave R (each with its data directory), one dev ledger."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.ledger = DevLedger(None, automine=True)
        self.giver = RawOps(tmp_path / "G")
        self.recv = RawOps(tmp_path / "R")

    def fund(self, pub: bytes, amount: int = 100_000) -> Chunk:
        addr = address_for("BTC-REG", pub)
        self.ledger.faucet("BTC-REG", addr, amount)
        return Chunk("BTC-REG", addr, pub, amount)

    def give(self, chunk: Chunk, ctx: bytes = b"contract/round") -> None:
        """G's enclave releases the chunk's key to R's enclave, which accepts it (as in a contract round)."""
        ct = self.giver.release_key(chunk.pubkey, self.recv.info().enc_pub, ctx)
        assert self.recv.accept_key(ct, ctx, chunk.pubkey) == chunk.pubkey

    def swap_record(self, theirs: list[Chunk], kept: list[int]) -> ContractRecord:
        """R's record of a finished swap in which R (party 1) received ``theirs``; rounds in ``kept`` kept."""
        mine = [self.fund(p) for p in self.recv.generate_keys(len(theirs))]
        s = swap_schedule(theirs, mine)
        claims = [ClaimRecord(r, "kept") for r, rd in enumerate(s.rounds) if rd.giver == 0 and r in kept]
        b = [e.binding_for(NET, n) for e, n in ((self.giver, "G"), (self.recv, "R"))]
        return ContractRecord(NET, 1, "G", s, b, [b"q", b"q"], "done", claims=claims)

    def close(self):
        self.giver.close()
        self.recv.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def test_kept_keys_become_deposits_and_offers_once_across_a_restart(world):
    chunks = [world.fund(p) for p in world.giver.generate_keys(3)]
    for c in chunks[:2]:
        world.give(c)
    store = ContractStore(world.tmp / "R" / "contracts")
    store.put("ab" * 32, world.swap_record(chunks[:2], kept=[0, 2]))  # rounds 0 and 2: G's two chunks
    runs = ContractStore(world.tmp / "R" / "runs", record_type=RunRecord)
    kept = kept_chunks(store, runs)
    assert [(k, c.address) for k, c in kept] == [("ab" * 32, chunks[0].address), ("ab" * 32, chunks[1].address)]

    deposits = DepositStore(world.tmp / "R" / "deposits.sqlite")
    added = adopt_kept(deposits, kept, world.ledger, world.recv, now=NOW)
    assert [d.address for d in added] == [chunks[0].address, chunks[1].address]
    d = added[0]
    assert d.amount == 100_000 and d.usd_cents > 0 and world.ledger.confirmations("BTC-REG", d.txid) >= 1
    assert deposits.kept() == {chunks[0].pubkey: "ab" * 32, chunks[1].pubkey: "ab" * 32}
    offers = offers_from(deposits.all(), world.ledger, world.recv, now=NOW)
    assert sorted(o.address for o in offers) == sorted(c.address for c in chunks[:2])
    # the key stays in the enclave, counted in the keys its quote commits to; it can be offered (signed)
    assert chunks[0].pubkey in world.recv.held_pubkeys()
    assert world.recv.sign_offer_sheet(sheet_body([chunks[0].pubkey]), [chunks[0].pubkey])

    # again, and after a restart (a new store over the same file): nothing is added twice
    assert adopt_kept(deposits, kept, world.ledger, world.recv, now=NOW + 5) == []
    deposits.close()
    again = DepositStore(world.tmp / "R" / "deposits.sqlite")
    assert adopt_kept(again, kept_chunks(store, runs), world.ledger, world.recv, now=NOW + 10) == []
    assert sorted(d.address for d in again.all() if d.pubkey in again.kept()) == sorted(
        c.address for c in chunks[:2])
    assert len(again.all()) == 2
    again.close()


def test_a_kept_key_whose_funds_vanished_is_not_adopted_nor_offered(world):
    # the giver knows the key (a cheater's device): it hands it over and spends the deposit itself
    k = coincurve.PrivateKey(b"\x07" * 32)
    chunk = world.fund(k.public_key.format())
    ctx = b"contract/round"
    world.recv.accept_key(ecies_encrypt(world.recv.info().enc_pub, k.secret, release_aad(chunk.pubkey, ctx)),
                          ctx, chunk.pubkey)
    world.ledger.sweep("BTC-REG", k.secret, address_for("BTC-REG", coincurve.PrivateKey(b"\x08" * 32)
                                                        .public_key.format()))
    deposits = DepositStore(None)
    assert adopt_kept(deposits, [("cd" * 32, chunk)], world.ledger, world.recv, now=NOW) == []
    assert deposits.all() == [] and deposits.kept() == {}


def test_a_kept_key_exported_to_its_owner_is_not_adopted(world):
    (c,) = [world.fund(p) for p in world.giver.generate_keys(1)]
    world.give(c)
    world.recv.export_to_owner(c.pubkey)  # withdrawn: no longer the enclave's alone
    deposits = DepositStore(None)
    assert adopt_kept(deposits, [("ef" * 32, c)], world.ledger, world.recv, now=NOW) == []


def test_a_language_contract_s_kept_claims_are_found_in_its_run_record(world):
    chunks = [world.fund(p) for p in world.giver.generate_keys(2)]
    g, r = world.giver.binding_for(NET, "G"), world.recv.binding_for(NET, "R")
    with InProcessEnclave(None) as arbiter:
        a = arbiter.binding_for(NET, "A")
    spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 500},
                     [PartySpec(g, [Commit(c.pubkey, c.asset, c.address, c.amount, 5000) for c in chunks]),
                      PartySpec(r), PartySpec(a, [], False)])
    runs = ContractStore(world.tmp / "runs", record_type=RunRecord)
    runs.put("01" * 32, RunRecord(spec.encode(), "done", claims=[ClaimRecord(1, "kept"),
                                                                   ClaimRecord(0, "claimed", "tx")]))
    assert kept_chunks(ContractStore(None), runs) == [("01" * 32, chunks[1])]


def test_a_contract_store_version_moves_with_its_writes_only(tmp_path):
    # SwapDesk.kept reads the records again only when a version moved (the offers refresher asks every 5 s)
    store = ContractStore(tmp_path / "c")
    v0 = store.version
    store.items()
    assert store.version == v0
    store.put("aa" * 32, RunRecord(b"spec", "running"))
    v1 = store.version
    assert v1 > v0
    store.items()
    assert store.version == v1
    store.delete("aa" * 32)
    assert store.version > v1 and store.items() == []


def test_a_kept_key_waits_for_a_fresh_price_instead_of_failing_the_refresh(world):
    """With no fresh price (every source past prices.max_age), adopting a kept key is put off, not an error that
    would stop the daemon's start (its first offers refresh runs before the price refresher)."""
    from node.assets.prices import PriceError

    class NoPrice:
        def price(self, asset, at):
            raise PriceError("no fresh price: coinbase 301 s old (prices.max_age=300 s)")

    chunks = [world.fund(p) for p in world.giver.generate_keys(1)]
    world.give(chunks[0])
    store = ContractStore(world.tmp / "R" / "contracts")
    store.put("cd" * 32, world.swap_record(chunks, kept=[0]))
    kept = kept_chunks(store, ContractStore(world.tmp / "R" / "runs", record_type=RunRecord))
    deposits = DepositStore(None)
    assert adopt_kept(deposits, kept, world.ledger, world.recv, now=NOW, prices=NoPrice()) == []
    assert deposits.all() == []
    assert [d.address for d in adopt_kept(deposits, kept, world.ledger, world.recv, now=NOW)] == [chunks[0].address]


# ------------------------------------------------------------------ where claimed funds went (keyswitch balance)
def test_balance_says_where_each_received_key_went(world):
    from node.app.balance import KEPT, LOST, claim_rows, received_claims, totals

    theirs = [world.fund(p, 100_000 + i) for i, p in enumerate(world.giver.generate_keys(3))]
    rec = world.swap_record(theirs, kept=[])
    given = [r for r, rd in enumerate(rec.schedule.rounds) if rd.giver == 0]  # the rounds G gave us
    rec.claims = [ClaimRecord(given[0], "claimed", "tx0"), ClaimRecord(given[1], "kept"),
                  ClaimRecord(given[2], "double-spent", "", "spent by tx9"),
                  ClaimRecord(1, "claimed", "ours")]  # (round 1 is ours to give: never counted as received)
    store = ContractStore(None)
    store.put("ab" * 32, rec)
    rows = claim_rows(received_claims(store, ContractStore(None)), lambda c: "bcrt1-claim-of-" + c.address[-6:])
    by_round = {r["from_address"]: r for r in rows}
    assert len(rows) == 3
    first, second, third = (by_round[theirs[i].address] for i in range(3))
    assert (first["status"], first["destination"], first["txid"]) == (
        "claimed", "bcrt1-claim-of-" + theirs[0].address[-6:], "tx0")
    assert second["destination"] == KEPT and third["destination"] == LOST
    assert [(t["status"], t["amount"], t["keys"]) for t in totals(rows + [dict(first)])] == [
        ("claimed", 2 * theirs[0].amount, 2), ("double-spent", theirs[2].amount, 1), ("kept", theirs[1].amount, 1)]
