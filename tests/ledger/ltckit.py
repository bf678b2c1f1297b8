"""LTC-REG keys and addresses, and a spend built and signed with embit alone (an independent wallet): the
litecoind tests' kit (tests/ledger/test_bitcoind.py, test_litecoind_above.py)."""

from __future__ import annotations

import coincurve
from embit import ec, script
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from node.assets import address_for, get_asset


A = "LTC-REG"


def key(i: int) -> coincurve.PrivateKey:
    return coincurve.PrivateKey((0x1000 + i).to_bytes(32, "big"))


def addr(k: coincurve.PrivateKey) -> str:
    return address_for(A, k.public_key.format())


def spend_by_hand(secret: bytes, coins: list[tuple[str, int, int]], to: str, fee: int) -> bytes:
    """A P2WPKH spend of ``coins`` (txid, vout, sats) built and signed with embit alone (an independent
    wallet: no node.ledger code)."""
    k = ec.PrivateKey(secret)
    pub = k.get_public_key()
    total = sum(s for _, _, s in coins)
    net = get_asset(A).network
    tx = Transaction(vin=[TransactionInput(bytes.fromhex(t), v) for t, v, _ in coins],
                     vout=[TransactionOutput(total - fee, script.address_to_scriptpubkey(to))])
    assert script.address_to_scriptpubkey(to).address(net) == to
    for i, (_, _, s) in enumerate(coins):
        sig = k.sign(tx.sighash_segwit(i, script.p2pkh(pub), s))
        tx.vin[i].witness = script.Witness([sig.serialize() + b"\x01", pub.sec()])
    return tx.serialize()
