"""``submit_many``: a batch verified and applied in one SQLite transaction, with exactly ``submit``'s rules.

The reference is the same transactions submitted one by one: per-transaction results (txid or the
typed error with its message) and the final ledger state must be identical.
"""

import coincurve
import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from node import wire
from node.assets import address_for
from node.crypto import sign_digest
from node.ledger.base import AlreadySpent, InsufficientFunds, InvalidTransaction, LedgerError, UnknownAsset
from node.ledger.devnet import FEES, AccountTx, DevLedger, Outpoint, TxOut, UtxoTx, Witness, sighash, txid_of

KEYS = [coincurve.PrivateKey((200 + i).to_bytes(32, "big")) for i in range(4)]
BTC, ETH = "BTC-REG", "ETH-DEV"


def addr(asset, k):
    return address_for(asset, k.public_key.format())


def utxo_tx(k, inputs, outputs):
    tx = UtxoTx(1, BTC, [Outpoint(t, v) for t, v in inputs], [TxOut(a, n) for a, n in outputs])
    w = Witness(k.public_key.format(), sign_digest(k, sighash(tx)))
    return msgspec.structs.replace(tx, witnesses=[w] * len(tx.inputs))


def account_tx(k, to, value, nonce, fee=FEES["account"]):
    tx = AccountTx(1, ETH, to, value, nonce, fee)
    return msgspec.structs.replace(tx, pubkey=k.public_key.format(), sig=sign_digest(k, sighash(tx)))


def state(led: DevLedger) -> dict:
    q = {"txs": "SELECT seq, asset, txid, height, raw FROM txs ORDER BY seq",
         "outputs": "SELECT * FROM outputs ORDER BY txid, vout",
         "moves": "SELECT * FROM moves ORDER BY rowid",
         "events": "SELECT * FROM events ORDER BY seq",
         "heights": "SELECT * FROM heights ORDER BY asset"}
    return {k: led.db.execute(v).fetchall() for k, v in q.items()}


def one_by_one(led, asset, raws):
    out = []
    for raw in raws:
        try:
            out.append(led.submit(asset, raw))
        except LedgerError as exc:
            out.append(exc)
    return out


def shape(results):
    return [r if isinstance(r, str) else (type(r).__name__, str(r)) for r in results]


def funded(path=None):
    led = DevLedger(path)
    coins = [led.faucet(BTC, addr(BTC, k), 100_000) for k in KEYS]
    for k in KEYS:
        led.faucet(ETH, addr(ETH, k), 10**18)
    return led, coins


def mixed_batch(coins):
    k0, k1, k2, k3 = KEYS
    first = utxo_tx(k0, [(coins[0], 0)], [(addr(BTC, k1), 60_000), (addr(BTC, k0), 39_000)])
    rival = utxo_tx(k0, [(coins[0], 0)], [(addr(BTC, k2), 90_000)])  # same coin: loses to `first`
    chained = utxo_tx(k1, [(txid_of(first), 0)], [(addr(BTC, k3), 59_000)])  # spends an output made in the batch
    forged = utxo_tx(k3, [(coins[1], 0)], [(addr(BTC, k3), 90_000)])  # k3 does not own coins[1]
    greedy = utxo_tx(k2, [(coins[2], 0)], [(addr(BTC, k2), 99_800)])  # fee below the minimum
    ghost = utxo_tx(k2, [("ab" * 32, 0)], [(addr(BTC, k2), 1)])
    e0 = account_tx(k0, addr(ETH, k1), 10**17, 0)
    e0_again = account_tx(k0, addr(ETH, k2), 10**17, 0)  # nonce 0 again
    e1 = account_tx(k0, addr(ETH, k1), 10**17, 1)
    broke = account_tx(k3, addr(ETH, k0), 10**18, 0)  # value + fee exceeds the balance
    return ([wire.encode(t) for t in (first, rival, chained, forged, greedy, ghost)] + [b"\x00junk"],
            [wire.encode(t) for t in (e0, e0_again, e1, broke)], txid_of(first))


def test_mixed_batch_gives_per_tx_results_and_the_same_state_as_one_by_one():
    batched, coins = funded()
    single, coins2 = funded()
    assert coins == coins2
    utxo_raws, eth_raws, first = mixed_batch(coins)
    r = batched.submit_many(BTC, utxo_raws)
    assert isinstance(r[0], str) and r[0] == first
    assert isinstance(r[1], AlreadySpent) and first in str(r[1]) and r[1].code == "already-spent"
    assert isinstance(r[2], str)
    assert isinstance(r[3], InvalidTransaction) and "ownership" in str(r[3])
    assert isinstance(r[4], InsufficientFunds)
    assert isinstance(r[5], InvalidTransaction) and "does not exist" in str(r[5])
    assert isinstance(r[6], InvalidTransaction) and "malformed" in str(r[6])
    assert batched.spent_by(BTC, coins[0], 0) == first  # the evidence behind the refusal
    e = batched.submit_many(ETH, eth_raws)
    assert [type(x).__name__ for x in e] == ["str", "AlreadySpent", "str", "InsufficientFunds"]
    assert shape(one_by_one(single, BTC, utxo_raws)) == shape(r)
    assert shape(one_by_one(single, ETH, eth_raws)) == shape(e)
    assert state(batched) == state(single)
    # across batches: a later batch's spend of the same coin gets the same typed error naming the winner
    again = batched.submit_many(BTC, [utxo_raws[1]])
    assert isinstance(again[0], AlreadySpent) and first in str(again[0])
    with pytest.raises(AlreadySpent, match=first):
        batched.submit(BTC, utxo_raws[1])


def test_a_batch_is_one_transaction_persisted_and_mined_together(tmp_path):
    led, coins = funded(tmp_path / "b.sqlite")
    led.automine = True
    utxo_raws, _, first = mixed_batch(coins)
    r = led.submit_many(BTC, utxo_raws)
    assert led.height(BTC) == 1  # one block for the whole batch
    assert led.confirmations(BTC, r[0]) == 1 and led.confirmations(BTC, r[2]) == 1
    led.close()
    again = DevLedger(tmp_path / "b.sqlite")
    assert again.spent_by(BTC, coins[0], 0) == first
    assert again.balance(BTC, addr(BTC, KEYS[3])).confirmed == 100_000 + 59_000
    assert again.submit_many(BTC, []) == []
    with pytest.raises(UnknownAsset):
        again.submit_many("NOPE", utxo_raws)


def test_submit_many_over_http(tmp_path):
    from node.ledger.client import DevLedgerClient
    from node.ledger.server import serve_in_thread

    led, coins = funded(tmp_path / "h.sqlite")
    single, _ = funded()
    utxo_raws, eth_raws, _ = mixed_batch(coins)
    url, stop = serve_in_thread(led)
    try:
        c = DevLedgerClient(url)
        r = c.submit_many(BTC, utxo_raws, max_body=1000)  # several calls, results still in order
        e = c.submit_many(ETH, eth_raws)
        c.close()
    finally:
        stop()
    assert shape(r) == shape(one_by_one(single, BTC, utxo_raws))
    assert shape(e) == shape(one_by_one(single, ETH, eth_raws))
    assert isinstance(r[1], AlreadySpent)
    led.close()


# ------------------------------------------------------------------ the property: batched == one by one
SPEC = st.lists(st.one_of(
    # a UTXO spend: the owner signs (or not), which known outpoints, recipient, fee, split in two outputs
    st.tuples(st.just("utxo"), st.sampled_from([True, True, True, False]),
              st.lists(st.integers(0, 40), min_size=1, max_size=3), st.integers(0, 3),
              st.sampled_from([500, 500, 777, 2000, 499, 0]), st.booleans()),
    # an account transfer: sender, recipient, value (in 10^14 units), nonce offset
    st.tuples(st.just("account"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 20_000),
              st.sampled_from([0, 0, 0, 0, -1, 1]), st.booleans()),
), max_size=30)


def build(spec, coins):
    """Signed transactions from a spec: chained, conflicting, forged, over-spending ones included."""
    known = [(t, 0, i, 100_000) for i, t in enumerate(coins)]  # (txid, vout, owner index, amount)
    nonces = [0] * 4
    out = []
    for s in spec:
        if s[0] == "utxo":
            _, signer, picks, to, fee, split = s
            first = known[picks[0] % len(known)]
            owner = first[2]  # usually the owner signs; sometimes someone else (a forgery)
            more = [known[p % len(known)] for p in picks[1:]]
            ins = list(dict.fromkeys([first] + [c for c in more if c[2] == owner]))
            total = sum(c[3] for c in ins)
            k = KEYS[owner if signer else (owner + 1) % 4]
            send = total - fee
            if send <= 0:
                continue
            if split and send > 1:
                outs = [(addr(BTC, KEYS[to]), send // 2), (addr(BTC, KEYS[owner]), send - send // 2)]
            else:
                outs = [(addr(BTC, KEYS[to]), send)]
            tx = utxo_tx(k, [(c[0], c[1]) for c in ins], outs)
            tid = txid_of(tx)
            known += [(tid, i, KEYS.index(next(kk for kk in KEYS if addr(BTC, kk) == a)), n)
                      for i, (a, n) in enumerate(outs)]
            out.append((BTC, wire.encode(tx), total - send))
        else:
            _, frm, to, value, off, _ = s
            n = max(0, nonces[frm] + off)
            nonces[frm] = max(nonces[frm], n + 1)
            tx = account_tx(KEYS[frm], addr(ETH, KEYS[to]), value * 10**14, n)
            out.append((ETH, wire.encode(tx), FEES["account"]))
    return out


@settings(max_examples=60, deadline=None)
@given(SPEC, st.lists(st.integers(1, 8), min_size=1, max_size=10))
def test_batched_equals_one_by_one_and_conserves_money(spec, cuts):
    single, coins = funded()
    batched, _ = funded()
    txs = build(spec, coins)
    ref = {BTC: [], ETH: []}
    for asset, raw, _ in txs:
        try:
            ref[asset].append(single.submit(asset, raw))
        except LedgerError as exc:
            ref[asset].append(exc)
    got = {BTC: [], ETH: []}
    for asset in (BTC, ETH):
        raws = [raw for a, raw, _ in txs if a == asset]
        k = 0
        for c in cuts * (len(raws) + 1):  # batches of varying sizes
            if k >= len(raws):
                break
            got[asset] += batched.submit_many(asset, raws[k:k + c])
            k += c
    for asset in (BTC, ETH):
        assert shape(got[asset]) == shape(ref[asset])
    assert state(batched)["outputs"] == state(single)["outputs"]
    assert state(batched)["moves"] == state(single)["moves"]
    # conservation: what the keys hold is the faucet's total minus the fees of accepted transactions
    fees = {BTC: 0, ETH: 0}
    it = {BTC: iter(got[BTC]), ETH: iter(got[ETH])}
    for asset, _, fee in txs:
        if isinstance(next(it[asset]), str):
            fees[asset] += fee
    assert sum(batched.balance(BTC, addr(BTC, k)).unconfirmed for k in KEYS) == 4 * 100_000 - fees[BTC]
    assert sum(batched.balance(ETH, addr(ETH, k)).unconfirmed for k in KEYS) == 4 * 10**18 - fees[ETH]
    assert all(batched.balance(ETH, addr(ETH, k)).unconfirmed >= 0 for k in KEYS)
    # no coin is spent twice
    spent = batched.db.execute("SELECT COUNT(*), COUNT(DISTINCT txid || ':' || vout) FROM outputs "
                               "WHERE spent_by IS NOT NULL").fetchone()
    assert spent[0] == spent[1]


def test_non_canonical_encodings_are_refused_in_a_batch():
    led, coins = funded()
    raw = wire.encode(utxo_tx(KEYS[0], [(coins[0], 0)], [(addr(BTC, KEYS[1]), 90_000)]))
    assert b"\xa4utxo\x01" in raw
    padded = raw.replace(b"\xa4utxo\x01", b"\xa4utxo\xcc\x01", 1)  # version 1 as a uint8: same value, other bytes
    r = led.submit_many(BTC, [padded, bytearray(raw)])
    assert isinstance(r[0], InvalidTransaction) and "non-canonical" in str(r[0])
    assert isinstance(r[1], str)  # the canonical bytes (any bytes-like) are accepted
