"""Offer gossip: attested offer sheets, their validation, and the protocol.

A node does not gossip one message per deposit. It gossips an **offer sheet**:
one message listing all its current chunks, with a sequence number; a newer
sheet supersedes the older one, so a chunk that was released, spent or
expired is retracted simply by leaving it out (its deposit key is listed in
``retracted`` for one sheet so books can say why).

Wire form, version 3 (``node.wire``, deterministic MessagePack; every field has a stated range,
see the comment above ``Terms``)::

    SignedSheet(body: bytes, sig: bytes)          # sig = enclave signature over body
    SheetWire(version, net, origin, seq, issued_at, offers: OfferTable, retracted,
              offers_root, quote, binding, unoffered)
    OfferTable(terms: [Terms(asset, price, price_at, expiry)],
               entries: [Entry(terms, kind, pubkey, amount, usd_cents)])

The sheet is compact, because on a gossip network every byte is carried
(encrypted, framed, hashed) at every hop:

* what offers have in common is said once: an offer's asset, price, price
  timestamp and expiry are its ``Terms``, listed once in the table (in order
  of first use, no two alike) and named by index from each entry;
* the deposit address does not travel at all: it is a function of the
  deposit key and the address kind (``node.assets.address_kinds``: P2WPKH or
  P2PKH, EIP-55), so an entry carries the kind's index and every receiver
  derives the address itself (``AddressDeriver``, remembered per key). An
  address in a valid sheet is therefore the key's address by construction;
* keys travel as 33 bytes, amounts and values as integers.

A sheet of 100 offers of one asset is ~5 kB (version 1, which spelled out
every field of every offer, was ~12.8 kB). Decoding gives the same ``Offer``
and ``SheetBody`` objects as before, so the offer book, the risk engine, the
simulator and the API see no difference; an offer's id is still the tagged
hash of its ``Offer`` encoding.

* ``offers_root`` is the Merkle root of the offers' leaf hashes (an offer's
  id is its leaf hash), so one enclave signature covers the whole sheet and a
  single offer can later be proven to belong to it.
* The attestation **travels inside the sheet** (``quote`` + ``binding``):
  sheets are self-contained, with no fetch round trip, at a cost of a few
  hundred bytes (a DCAP quote is ~5 kB, within the size limit). Verification
  is cached per (device signing key, quote hash): each device's quote is
  verified once per ``ATTESTATION_RECHECK`` (so a quote that went stale is
  refused within that time), and a device whose quote failed is remembered
  and rejected at once afterwards.
* The enclave signs the exact body bytes (``Enclave.sign_offer_sheet``), and
  refuses keys it does not hold or has released. A receiver does not rely on
  that (the host is hostile and chooses what it asks its enclave to sign):
  ``unoffered`` (version 3) lists the rest of the deposit keys the binding's
  ``keys_root`` commits to, so the receiver recomputes the root over the
  offered and unoffered keys and REJECTs a sheet whose offered keys are not in
  the commitment the quote attests (an enclave quotes only the root of the
  keys it holds). A node cannot republish another device's offers as its own.
* Per device, the receiver accepts at most ``max_origins_per_device`` origins
  (a quote binds whatever peer id its host names), does at most
  ``VALIDATION_BUDGET`` offers of first-sight work a minute, and books no
  offer expiring beyond ``MAX_OFFER_LIFETIME``; with a price feed, it books
  no offer whose declared USD value disagrees with its own price.

Validation (``validate_sheet``) is a pure function in the style of the
consensus specs: every check is labelled ``[REJECT]`` (the sender forwarded
something invalid: its gossipsub score drops) or ``[IGNORE]`` (not useful now,
no penalty). The checks run cheapest first: size, decoding, network, binding,
sequence, then the enclave signature and the quote, and only then the
per-offer work (every key a curve point, its address derived, offer ids,
Merkle root), so a sheet without a genuine signature from an attested
enclave costs no per-offer work. That work is what a sheet seen for the
first time costs each receiver (~1.5 ms for 100 P2WPKH offers, most of it
deriving the addresses, a third of that libsecp256k1's point check; then
~1 ms to book them: docs/network.md); a republished table is not checked
again (``OffersCache``).
"""

from node.protocols.offers.sheet import (
    SHEET_VERSION,
    MAX_SHEET_SIZE,
    MAX_OFFERS_PER_SHEET,
    MAX_CLOCK_SKEW,
    REPUBLISH_INTERVAL,
    MAX_OFFER_LIFETIME,
    MAX_ORIGINS_PER_DEVICE,
    VALIDATION_BUDGET,
    MAX_COMMITTED_KEYS,
    MAX_STALE_QUOTES,
    ATTESTATION_RECHECK,
    MAX_KINDS,
    Offer,
    SheetBody,
    Terms,
    Entry,
    OfferTable,
    SheetWire,
    SignedSheet,
    OFFER_TAG,
    offer_id,
    offer_ids,
    merkle_root,
    offers_root,
    AddressDeriver,
    ADDRESSES,
    offer_table,
    encode_body,
    unoffered_keys,
    build_sheet,
)
from node.protocols.offers.validate import (
    AttestationCache,
    default_attestation_verifier,
    device_id_of,
    CheckedOffers,
    OffersCache,
    commitment_mismatch,
    DeviceBudget,
    decode_sheet,
    check_sheet,
    validate_sheet,
)
from node.protocols.offers.protocol import (
    OwnSheet,
    REPUBLISH_MAX,
    PURGE_INTERVAL,
    OffersProtocol,
)
from node.protocols.offers.pull import (
    SHEETS_VERSION,
    PULL_MAX_SHEETS,
    PULL_MAX_BYTES,
    MAX_ASK_SIZE,
    MAX_ANSWER_SIZE,
    PULL_TIMEOUT,
    PULL_AGAIN,
    PULL_ANSWERS_PER_MINUTE,
    PULL_ANSWERS_PER_MINUTE_TOTAL,
    MAX_TRACKED_PEERS,
    sheets_protocol,
    SheetsAsk,
    SheetsAnswer,
    SheetStore,
    answer_pull,
    read_answer,
    RateLimit,
)

__all__ = [
    'SHEET_VERSION',
    'MAX_SHEET_SIZE',
    'MAX_OFFERS_PER_SHEET',
    'MAX_CLOCK_SKEW',
    'REPUBLISH_INTERVAL',
    'MAX_OFFER_LIFETIME',
    'MAX_ORIGINS_PER_DEVICE',
    'VALIDATION_BUDGET',
    'MAX_COMMITTED_KEYS',
    'MAX_STALE_QUOTES',
    'ATTESTATION_RECHECK',
    'MAX_KINDS',
    'Offer',
    'SheetBody',
    'Terms',
    'Entry',
    'OfferTable',
    'SheetWire',
    'SignedSheet',
    'OFFER_TAG',
    'offer_id',
    'offer_ids',
    'merkle_root',
    'offers_root',
    'AddressDeriver',
    'ADDRESSES',
    'offer_table',
    'encode_body',
    'unoffered_keys',
    'build_sheet',
    'AttestationCache',
    'default_attestation_verifier',
    'device_id_of',
    'CheckedOffers',
    'OffersCache',
    'commitment_mismatch',
    'DeviceBudget',
    'decode_sheet',
    'check_sheet',
    'validate_sheet',
    'OwnSheet',
    'REPUBLISH_MAX',
    'PURGE_INTERVAL',
    'OffersProtocol',
    'SHEETS_VERSION',
    'PULL_MAX_SHEETS',
    'PULL_MAX_BYTES',
    'MAX_ASK_SIZE',
    'MAX_ANSWER_SIZE',
    'PULL_TIMEOUT',
    'PULL_AGAIN',
    'PULL_ANSWERS_PER_MINUTE',
    'PULL_ANSWERS_PER_MINUTE_TOTAL',
    'MAX_TRACKED_PEERS',
    'sheets_protocol',
    'SheetsAsk',
    'SheetsAnswer',
    'SheetStore',
    'answer_pull',
    'read_answer',
    'RateLimit',
]
