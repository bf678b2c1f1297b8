"""The layers above the ledger on a real litecoind -regtest (the ``ltc`` fixture, tests/ledger/conftest.py):

* a key an enclave released in a contract spends on litecoind through an independent library (embit alone),
  as its new owner's wallet would: ``testmempoolaccept`` accepts it;
* a reorganisation under offered deposits: the block holding them leaves the best chain, their offers are
  retracted from the next sheet and leave a peer's book, nothing is counted twice, and once the chain re-mines
  they are offered again.

Both sides run the node's own code (enclaves, release protocol, offer stacks and books) over in-memory
transports; only the ledger is remote. LTC-REG comes from litecoind, every other asset from a dev ledger
(``RoutedLedger``, as a daemon with ``ledger.rpc_url`` has it).
"""

from __future__ import annotations

import time

import pytest

from node.assets import address_for
from node.ledger.base import Balance
from node.ledger.devnet import DevLedger
from node.ledger.router import RoutedLedger
from tests.ledger.ltckit import addr, key, spend_by_hand

A = "LTC-REG"
NET = "dev"


@pytest.fixture
def routed(ltc):
    dev = DevLedger(None, automine=True)
    yield RoutedLedger(dev, {A: ltc})
    dev.close()


def coins_of(ltc, address: str) -> list[tuple[str, int, int]]:
    """(txid, vout, sats) of the address's confirmed coins, read from litecoind."""
    return [(t, v, s) for t, v, _, s in ltc.utxos(A, [address])]


# ------------------------------------------------------------------ a key released in a contract
def test_a_key_released_in_a_contract_spends_on_litecoind_with_another_library(ltc, routed, tmp_path, monkeypatch):
    """L gives two LTC-REG chunks (litecoind) for B's two BTC-REG chunks (dev ledger) in a swap (the turns
    contract over contract-run/1), enclave to enclave; B keeps what it received in its enclave (claims.policy keep), then exports
    one key to its owner. A spend of that chunk built and signed with embit alone, not our ledger code, is
    what litecoind accepts; the other chunk's key, still in L's enclave's hands only as released, spends too."""
    from node.contracts.protocol.run import DONE
    from node.contracts.protocol.schedule import Chunk, schedule_spec, swap_schedule
    from tests.protocols import contract_run_kit as tr

    monkeypatch.setattr(tr, "AMOUNT", 3_000_000)
    giver = tr.Side("L", tmp_path, routed, A, 2, claim_policy="keep")
    taker = tr.Side("B", tmp_path, routed, "BTC-REG", 2, claim_policy="keep")
    giver.chunks = [Chunk(c.asset, c.address, c.pubkey, c.amount) for c in giver.commits]
    ltc.mine(A, 1)  # L's chunks confirmed: B checks them before it releases anything
    spec = schedule_spec(swap_schedule(giver.chunks, [Chunk(c.asset, c.address, c.pubkey, c.amount)
                                                      for c in taker.commits]), [giver.binding, taker.binding])
    cid, pair = tr.running(spec, giver, taker)
    pair.run(done=tr.stopped(cid, giver, taker))
    assert taker.proto.state(cid) == DONE and giver.proto.state(cid) == DONE, taker.proto.runs[cid.hex()].rec.reason
    states = {k.pubkey: k.state for k in taker.raw.list_keys()}
    assert all(states[c.pubkey] == "received" for c in giver.chunks)  # in B's enclave, not swept
    dest = addr(key(60))
    for chunk in giver.chunks:
        assert chunk.address.startswith("rltc1q") and routed.balance(A, chunk.address) == Balance(3_000_000, 3_000_000)
        secret = taker.raw.export_to_owner(chunk.pubkey)  # B's owner now holds the key L's enclave released
        coins = coins_of(ltc, chunk.address)
        assert sum(s for _, _, s in coins) == 3_000_000
        raw = spend_by_hand(secret, coins, dest, 1_000)
        res = ltc.rpc("testmempoolaccept", [raw.hex()])[0]
        assert res["allowed"] is True, res
        assert ltc.submit(A, raw) == res["txid"]
    ltc.mine(A, 1)
    assert ltc.balance(A, dest).confirmed == 2 * (3_000_000 - 1_000)
    assert all(ltc.balance(A, c.address) == Balance(0, 0) for c in giver.chunks)
    # and L's enclave cannot give the same key out again, nor its owner take it back
    with pytest.raises(Exception, match="released"):
        giver.raw.export_to_owner(giver.chunks[0].pubkey)


# ------------------------------------------------------------------ a reorganisation under offers
def node(root, name: str, ledger):
    from node import identity
    from node.app.stack import make_offer_stack
    from node.app.deposits import DepositStore

    d = root / name
    d.mkdir(parents=True)
    stack = make_offer_stack(d, NET, identity.peer_id(d), in_process=True)
    stack.ledger, stack.deposits, stack.datadir = ledger, DepositStore(d / "deposits.sqlite"), d
    stack.chunk_usd_cents = 5_000
    return stack


def test_a_reorganisation_retracts_the_offers_counts_nothing_twice_and_the_chain_resumes(ltc, routed, tmp_path):
    from node.app.deposits import deposit_status, make_deposits
    from node.contracts.protocol.claims import FUNDS_GONE, FUNDS_OK, funds_state
    from node.contracts.protocol.schedule import Chunk
    from node.protocols.testing import GossipNet

    now = time.time()
    seller, buyer = node(tmp_path, "seller", routed), node(tmp_path, "buyer", routed)
    try:
        made = make_deposits(seller.enclave, routed, seller.deposits, asset=A, chunks=2,
                             chunk_usd_cents=5_000, now=now, net=NET, peer_id=seller.peer_id)
        net = GossipNet()
        for s in (seller, buyer):
            net.add(s.peer_id, s.protocol, now=now)

        def refresh(t: float) -> bool:
            """The daemon's offers refresher, one pass: re-derive the offers, retract what left, publish."""
            before = seller.offered()
            seller.refresh_offers(t)
            changed = seller.retract_gone(before)
            net.call(seller.peer_id, seller.protocol, seller.protocol.set_own_sheet(seller.protocol.own, t), t)
            return changed

        def book() -> set[str]:
            return {r["address"] for r in buyer.book.rows(now=now + 10, asset=A)}

        def statuses() -> list[str]:
            return [deposit_status(d, routed)["status"] for d in made]

        def funds() -> list[str]:
            """What a counterparty's release protocol finds, checking these chunks before it agrees."""
            return [funds_state(routed.balance, Chunk(A, d.address, d.pubkey, d.amount))[0] for d in made]

        addresses = {d.address for d in made}
        assert statuses() == ["funded", "funded"]
        refresh(now)
        assert seller.offered() == set() and book() == set()  # in the mempool: not offered
        h0 = ltc.height(A)
        ltc.mine(A, 3)  # N = 3 confirmations
        assert refresh(now + 1) and book() == addresses  # offered; the buyer's book holds both
        assert statuses() == ["confirmed(3)", "confirmed(3)"] and funds() == [FUNDS_OK, FUNDS_OK]
        total = sum(routed.balance(A, a).confirmed for a in addresses)
        assert total == sum(d.amount for d in made)

        blocks = {ltc.rpc("getrawtransaction", d.txid, True)["blockhash"] for d in made}
        assert len(blocks) == 1  # both funding transactions in the first block mined
        ltc.rpc("invalidateblock", blocks.pop())  # the block holding the deposits leaves the best chain
        assert ltc.height(A) == h0
        assert [routed.confirmations(A, d.txid) for d in made] == [0, 0]
        assert statuses() == ["funded", "funded"]
        assert funds() == [FUNDS_GONE, FUNDS_GONE]  # no contract agrees on them now: no confirmed funds
        # nothing counted twice: each deposit is once in the unconfirmed balance and no longer in the confirmed one
        assert [routed.balance(A, d.address) for d in made] == [Balance(0, d.amount) for d in made]
        assert refresh(now + 2)  # the next sheet retracts both offers (it offers nothing)
        assert seller.offered() == set() and book() == set()
        assert not refresh(now + 3) and book() == set()  # and stays so until they confirm again

        ltc.mine(A, 3)  # the chain re-mines: the deposits confirm in new blocks
        assert [routed.confirmations(A, d.txid) for d in made] == [3, 3]
        assert refresh(now + 4) and book() == addresses  # offered again, once each
        assert statuses() == ["confirmed(3)", "confirmed(3)"] and funds() == [FUNDS_OK, FUNDS_OK]
        assert [routed.balance(A, d.address) for d in made] == [Balance(d.amount, d.amount) for d in made]
        assert len(buyer.book.rows(now=now + 10, asset=A)) == 2
    finally:
        for s in (seller, buyer):
            s.ledger = None  # the module's litecoind client: the fixtures close it
            s.close()


# ------------------------------------------------------------------ the local network's litecoind
def test_the_local_networks_litecoind_mines_a_block_a_second_and_stops_with_the_rest(tmp_path):
    """``start_litecoind_network`` (make demo, keyswitch dev): a mature faucet at once, then a block every
    ``block_time`` seconds from the miner process; ``stop_all`` stops both, cleanly."""
    from node.app.deposits import wait_confirmations
    from node.ledger.bitcoind import BitcoindLedger
    from node.dev.localnet import find_litecoind, start_litecoind_network, stop_all, timeout_factor

    exe = find_litecoind()
    if exe is None:
        pytest.skip("litecoind not installed: apt-get install litecoind (scripts/sysdeps.sh litecoind; make test does)")
    procs, url, cookie = start_litecoind_network(exe, tmp_path / "ltc", block_time=0.5)
    try:
        led = BitcoindLedger(url, asset=A, cookie=cookie)
        try:
            h0 = led.height(A)
            assert h0 >= 101  # the faucet's coinbase is mature before the first deposit
            fund = led.faucet(A, addr(key(70)), 10**8)
            got = wait_confirmations(led, [(A, fund)], 3, timeout=30 * timeout_factor())  # the miner's blocks
            assert got[fund] >= 3 and led.height(A) >= h0 + 3
        finally:
            led.close()
    finally:
        stop_all(procs, timeout=30)
    assert [p.returncode for p in procs] == [0, 0]  # litecoind and the miner, both stopped cleanly
    assert not (tmp_path / "ltc" / "regtest" / ".cookie").exists()
