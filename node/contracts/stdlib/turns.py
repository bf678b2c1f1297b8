"""The stdlib ``turns`` contract: its source text, byte for byte what ``SOURCE_HASHES`` pins."""

SOURCE = '''\
# turns: the compiled form of a two-party release schedule
# (node.protocols.release.swap_schedule: a0, b0, a1, b1, ...). Party a gives
# first; a may release its next chunk only while it has given no more chunks
# than it received, b only while it has given fewer than it received (or,
# once a has given everything, no more). Neither is ever exposed to more than
# one chunk. There is no time-lock: an unreleased chunk stays with its owner.
contract turns
parties a, b

let ia = next_chunk(a)
release a[ia] to b when ia < chunks(a) and sent_count(a, b) <= sent_count(b, a)

let ib = next_chunk(b)
release b[ib] to a when ib < chunks(b) and (sent_count(b, a) < sent_count(a, b)
    or (sent_count(a, b) == chunks(a) and sent_count(b, a) <= sent_count(a, b)))

complete when sent_count(a, b) == chunks(a) and sent_count(b, a) == chunks(b)
'''
