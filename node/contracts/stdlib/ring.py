"""The stdlib ``ring`` contract: its source text, byte for byte what ``SOURCE_HASHES`` pins."""

SOURCE = '''\
# ring: three or more parties trade around a ring: party k gives its chunks to
# party k+1 (the last gives to the first), each worth at least `usd` cents.
# Tit-for-tat around the ring: a party may release its next chunk only if,
# after it, the value it has given minus the value it has received stays
# within one chunk (the largest chunk in the ring). Someone can always move,
# so the ring never deadlocks while chunks remain. After `deadline` (a height
# on the ledger of `height_asset`) unmoved chunks go back to their owners.
contract ring
parties * min 3
param usd: int
param height_asset: str
param deadline: int

let n = nparties()
let expired = height(height_asset) >= deadline

# the largest chunk in the ring, and whether some party brought too little
let cap = maximum(k in 0 .. n: max_usd(party(k)))
let short = any(k in 0 .. n: total_usd(party(k)) < usd)

for k in 0 .. n {
    let p = party(k)
    let succ = party((k + 1) % n)
    let pred = party((k + n - 1) % n)
    let i = next_chunk(p)
    release p[i] to succ when not expired and not short and i < chunks(p)
        and sent_usd(p, succ) + usd(p, i) - sent_usd(pred, p) <= cap
}

complete when all(k in 0 .. n: sent_count(party(k), party((k + 1) % n)) == chunks(party(k)))
refund when expired or short
'''
