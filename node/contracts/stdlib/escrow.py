"""The stdlib ``escrow`` contract: its source text, byte for byte what ``SOURCE_HASHES`` pins."""

SOURCE = '''\
# escrow: the payer's chunks go to the payee once the arbiter (or the payer
# itself) has signed "release"; they go back to the payer if the arbiter (or
# the payee) signs "refund", or once `refund_height` is reached on the ledger
# of `height_asset` without an approval. An approval, once given, wins: chunks
# keep flowing to the payee even after the refund height.
contract escrow
parties payer, payee, arbiter
param height_asset: str
param refund_height: int

let approved = signed(arbiter, "release") or signed(payer, "release")
let cancelled = signed(arbiter, "refund") or signed(payee, "refund")

for i in 0 .. chunks(payer) {
    release payer[i] to payee when approved and not cancelled
}

complete when approved and not cancelled and sent_count(payer, payee) == chunks(payer)
refund when cancelled or (not approved and height(height_asset) >= refund_height)
'''
