"""The stdlib ``swap`` contract: its source text, byte for byte what ``SOURCE_HASHES`` pins."""

SOURCE = '''\
# swap: `usd` cents of asset_a (party a's chunks) against `usd` cents of asset_b
# (party b's chunks), tit-for-tat, one chunk at a time.
#
# Each party releases its chunks in index order. A party may release its next
# chunk only if, after it, the value it has given minus the value it has
# received stays within one chunk (the largest chunk of the contract). Both
# parties can therefore never be stuck at once, and a cheater gains at most
# one chunk. After `deadline` (a height on asset_a's ledger) unmoved chunks go
# back to their owners; a malformed deposit set refunds at once.
contract swap
parties a, b
param asset_a: str
param asset_b: str
param usd: int
param deadline: int

let cap = max(max_usd(a), max_usd(b))
let valid = all_asset(a, asset_a) and all_asset(b, asset_b)
    and total_usd(a) >= usd and total_usd(b) >= usd
let expired = height(asset_a) >= deadline
let open = valid and not expired

let ia = next_chunk(a)
release a[ia] to b when open and ia < chunks(a)
    and sent_usd(a, b) + usd(a, ia) - sent_usd(b, a) <= cap

let ib = next_chunk(b)
release b[ib] to a when open and ib < chunks(b)
    and sent_usd(b, a) + usd(b, ib) - sent_usd(a, b) <= cap

complete when sent_count(a, b) == chunks(a) and sent_count(b, a) == chunks(b)
refund when expired or not valid
'''
