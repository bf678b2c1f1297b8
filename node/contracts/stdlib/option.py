"""The stdlib ``option`` contract: its source text, byte for byte what ``SOURCE_HASHES`` pins."""

SOURCE = '''\
# option: a call option. The writer's chunks (the underlying) are held for
# the buyer. The buyer's chunks 0 .. premium_chunks-1 are the premium, paid to
# the writer before `premium_by`; the remaining buyer chunks are the strike,
# one strike chunk per writer chunk. Once the premium is paid and the buyer has
# signed "exercise", before `expiry` the buyer pays strike chunk j and receives
# writer chunk j in return, tit-for-tat (strike j only after writer chunk j-1
# has arrived). Heights are read on the ledger of `height_asset`.
# After expiry (or an unpaid premium at `premium_by`) unmoved chunks go home,
# except that a writer chunk already paid for still goes to the buyer.
contract option
parties buyer, writer
param height_asset: str
param premium_chunks: int
param premium_by: int
param expiry: int

let now = height(height_asset)
let n = chunks(writer)
let valid = premium_chunks >= 0 and chunks(buyer) == premium_chunks + n
let premium_paid = count_to(buyer, 0, premium_chunks, writer) == premium_chunks
let exercising = valid and premium_paid and now < expiry and signed(buyer, "exercise")

for i in 0 .. premium_chunks {
    release buyer[i] to writer when valid and now < premium_by
}

for j in 0 .. n {
    let s = premium_chunks + j
    release buyer[s] to writer when exercising and (j == 0 or moved_to(writer, j - 1, buyer))
    release writer[j] to buyer when valid and moved_to(buyer, s, writer)
}

complete when valid and premium_paid and sent_count(writer, buyer) == n
refund when not valid or (not premium_paid and now >= premium_by) or now >= expiry
'''
