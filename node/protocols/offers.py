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

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Callable

import msgspec

from node import wire
from node.protocols.base import (
    Command,
    Event,
    GossipReceived,
    Notify,
    PeerConnected,
    Publish,
    RequestReceived,
    Respond,
    ResponseReceived,
    Result,
    SendRequest,
    SetTimer,
    Started,
    TimerFired,
    Validation,
    topic,
)
from node.attest.binding import Binding, keys_root
from node.wire import U16, U63, Positive63, Timestamp

SHEET_VERSION = 3  # 3: ``unoffered`` (the rest of the attested key commitment) added
MAX_SHEET_SIZE = 256 * 1024
MAX_OFFERS_PER_SHEET = 1000
MAX_CLOCK_SKEW = 120.0  # seconds a sheet's issued_at may be ahead of our clock
REPUBLISH_INTERVAL = 60.0
#: the longest an offer may be valid: its expiry is at most this long after our clock (plus MAX_CLOCK_SKEW);
#: the node offers for a day (node.app.deposits.OFFER_TTL). Setting ``offers.max_offer_lifetime``.
MAX_OFFER_LIFETIME = 2 * 86_400.0
#: origins (libp2p peer ids publishing sheets) one device may have in a book; setting
#: ``offers.max_origins_per_device``
MAX_ORIGINS_PER_DEVICE = 2
#: offers of one device validated for the first time per minute (a token bucket of this size, refilled over a
#: minute); setting ``offers.validation_budget``
VALIDATION_BUDGET = 3000
#: deposit keys a sheet's ``unoffered`` may list (the attested commitment minus the offered keys)
MAX_COMMITTED_KEYS = 4096
#: verdict codes that refuse a quote for its time, not the device (``AttestationCache``)
_QUOTE_TIME_CODES = frozenset({"quote-stale", "quote-from-future"})
MAX_STALE_QUOTES = 4096  # quotes remembered as stale (the oldest forgotten first: verified again if seen)
#: seconds a device's verified quote is trusted before it is verified again (``AttestationCache``): a quote that
#: has gone stale (``max_quote_age``) or otherwise stopped passing is refused at most this long after
ATTESTATION_RECHECK = 600.0
MAX_KINDS = 16  # address kinds an asset may have (an entry's ``kind`` index is below this)

# wire ranges of the sheet's fields (decode fails outside them: nothing out of range is forwarded)
_Asset = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
_PriceText = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]  # decimal USD per whole unit
_Net = Annotated[str, msgspec.Meta(max_length=64)]
_PeerId = Annotated[str, msgspec.Meta(max_length=128)]
_Key = Annotated[bytes, msgspec.Meta(max_length=33)]
_Hash = Annotated[bytes, msgspec.Meta(max_length=32)]
_Quote = Annotated[bytes, msgspec.Meta(max_length=MAX_SHEET_SIZE)]
_TermsIndex = Annotated[int, msgspec.Meta(ge=0, lt=MAX_OFFERS_PER_SHEET)]
_KindIndex = Annotated[int, msgspec.Meta(ge=0, lt=MAX_KINDS)]
_Retracted = Annotated[list[_Key], msgspec.Meta(max_length=MAX_COMMITTED_KEYS)]
_Unoffered = Annotated[list[_Key], msgspec.Meta(max_length=MAX_COMMITTED_KEYS)]


class Offer(msgspec.Struct, array_like=True, frozen=True):
    """One offer as the rest of the node sees it (the book, the risk engine, the API); on the wire it is
    an ``Entry`` of the sheet's ``OfferTable``."""

    asset: str
    address: str
    pubkey: bytes  # 33-byte compressed deposit key
    amount: int  # smallest units of the asset
    usd_cents: int  # value at ``price`` when the sheet was made
    price: str  # USD per whole unit, decimal string
    price_at: float  # when that price was read
    expiry: float  # unix time after which the offer is void


class SheetBody(msgspec.Struct, array_like=True, frozen=True):
    """A decoded sheet body (``SheetWire`` with its offer table expanded into ``Offer`` objects)."""

    version: int
    net: str
    origin: str  # peer id of the publishing node
    seq: int
    issued_at: float
    offers: list[Offer]
    retracted: list[bytes]  # deposit pubkeys withdrawn since the last sheet
    offers_root: bytes
    quote: bytes
    binding: Binding
    #: the deposit keys of the binding's ``keys_root`` that are not offered (sorted): with the offered keys,
    #: exactly the keys the attested enclave committed to, so a receiver recomputes the root itself
    unoffered: list[bytes] = msgspec.field(default_factory=list)


# Wire ranges (checked by ``wire.decode``: a sheet with a value outside them is REJECTed as malformed and
# never forwarded):
#   version 0..65535; seq 0..2^63-1; amount, usd_cents 1..2^63-1; terms index 0..MAX_OFFERS_PER_SHEET-1;
#   kind 0..MAX_KINDS-1; issued_at, price_at, expiry unix seconds 0..2^34 (finite: NaN and infinities fail);
#   asset 1..32 chars, price 1..40 chars; net <= 64, origin <= 128 chars; keys <= 33 bytes, roots <= 32 bytes;
#   retracted, unoffered <= MAX_COMMITTED_KEYS keys; the sheet <= MAX_SHEET_SIZE bytes.
class Terms(msgspec.Struct, array_like=True, frozen=True):
    """What offers of a sheet share, said once in its table."""

    asset: _Asset
    price: _PriceText
    price_at: Timestamp
    expiry: Timestamp


class Entry(msgspec.Struct, array_like=True, frozen=True):
    """One offer on the wire: its terms and address kind by index, its key, its amounts."""

    terms: _TermsIndex  # index into OfferTable.terms
    kind: _KindIndex  # index into node.assets.address_kinds(asset); the address is derived from the key
    pubkey: _Key
    amount: Positive63
    usd_cents: Positive63


class OfferTable(msgspec.Struct, array_like=True, frozen=True):
    terms: Annotated[list[Terms], msgspec.Meta(max_length=MAX_OFFERS_PER_SHEET)]  # first-use order, each used once
    entries: Annotated[list[Entry], msgspec.Meta(max_length=MAX_OFFERS_PER_SHEET)]


class SheetWire(msgspec.Struct, array_like=True, frozen=True):
    """The signed body bytes of a version-3 sheet."""

    version: U16
    net: _Net
    origin: _PeerId
    seq: U63
    issued_at: Timestamp
    offers: OfferTable
    retracted: _Retracted
    offers_root: _Hash
    quote: _Quote
    binding: Binding
    unoffered: _Unoffered = msgspec.field(default_factory=list)  # see SheetBody.unoffered


class SignedSheet(msgspec.Struct, array_like=True, frozen=True):
    body: bytes
    sig: bytes


OFFER_TAG = "keyswitch/offer/1"
_OFFER_TAG_PREFIX = hashlib.sha256(hashlib.sha256(OFFER_TAG.encode()).digest() * 2)  # tagged_hash's prefix


def _offer_id_of_encoding(enc: bytes) -> bytes:
    """``tagged_hash(OFFER_TAG, enc)`` with the tag's prefix hashed once, not once per offer."""
    h = _OFFER_TAG_PREFIX.copy()
    h.update(len(enc).to_bytes(4, "big"))
    h.update(enc)
    return h.digest()


def offer_id(offer: Offer) -> bytes:
    """An offer's id: the tagged hash of its canonical ``Offer`` encoding (its Merkle leaf)."""
    return _offer_id_of_encoding(wire.encode(offer))


def offer_ids(offers: list[Offer]) -> list[bytes]:
    return [_offer_id_of_encoding(wire.encode(o)) for o in offers]


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary Merkle root (duplicating the last node of odd levels); empty -> 32 zero bytes."""
    if not leaves:
        return b"\x00" * 32
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def offers_root(offers: list[Offer]) -> bytes:
    return merkle_root(offer_ids(offers))


# ------------------------------------------------------------------ addresses
#: keys to their addresses of one kind, None for a key that is not a point (``node.assets._p2wpkh_addresses``)
_BatchEncoder = Callable[[list[bytes]], list["str | None"]]


class AddressDeriver:
    """``(asset, deposit key, address kind index) -> address``, derived here and remembered.

    The address does not travel in a sheet: every receiver derives it from the
    key (``node.assets``: P2WPKH with its fast table-driven bech32, P2PKH and
    EIP-55 with embit's and eth-keys' encoders). Deriving is a pure function
    and the largest per-offer cost of a sheet seen for the first time
    (~12 us an offer for P2WPKH, ~5.6 us of it libsecp256k1's point check; a sheet's keys go
    through ``many`` in one loop; ~0.1-0.5 ms for the others); a node republishes mostly the same
    offers, so each (asset, key, kind) is derived once. Only what this process
    derived itself is remembered, so nothing a peer sends can plant a wrong
    address. Bounded: the oldest entries go first once ``max_entries`` is
    reached. One instance (``ADDRESSES``) serves every protocol in a process
    (the simulator's thousands of nodes share it), the sender's side included.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._known: dict[tuple[str, bytes, int], str] = {}
        self._assets: dict[str, tuple[tuple[str, ...], _BatchEncoder | None]] = {}  # see ``_asset``
        self.hits = self.misses = 0

    @staticmethod
    def kinds(asset: str) -> tuple[str, ...]:
        """The asset's address kinds (``ValueError`` naming the known assets if it is unknown)."""
        from node.assets import UnknownAsset, address_kinds

        try:
            return address_kinds(asset)
        except UnknownAsset as exc:
            raise ValueError(str(exc)) from None

    def __call__(self, asset: str, pubkey: bytes, kind: int) -> str:
        """The address; ``ValueError`` with the reason when there is none (unknown asset or kind, not a key)."""
        key = (asset, pubkey, kind)
        address = self._known.get(key)
        if address is not None:
            self.hits += 1
            return address
        self.misses += 1
        address = self._derive(asset, pubkey, kind)
        self._remember(key, address)
        return address

    def many(self, items: list[tuple[str, bytes, int]]) -> tuple[list[str], int, str]:
        """The addresses of ``(asset, pubkey, kind)`` items, in order, exactly as calling this deriver on each
        in turn gives them, up to the first item that has none: ``(addresses, -1, "")``, or ``(the addresses
        before it, its index, the reason)``. The keys not known yet whose kind is P2WPKH are derived in one
        loop per asset (``node.assets._p2wpkh_addresses``: what a sheet seen for the first time costs is
        mostly this); the others, and any key that fails there, go through ``__call__`` one by one (so a
        failure gives the same reason)."""
        known = self._known
        out: list[str | None] = [known.get(it) for it in items]
        batch: dict[str, list[int]] = {}
        for i, address in enumerate(out):
            if address is None and items[i][2] == 0 and type(items[i][1]) is bytes:
                batch.setdefault(items[i][0], []).append(i)
        self.hits += len(out) - sum(1 for a in out if a is None)
        for asset, idx in batch.items():
            try:
                _kinds, fast = self._assets.get(asset) or self._asset(asset)
            except ValueError:
                continue  # an unknown asset: ``__call__`` below gives the reason
            if fast is None:
                continue
            for i, address in zip(idx, fast([items[i][1] for i in idx])):
                if address is not None:  # (not a point: ``__call__`` below gives the reason)
                    self.misses += 1
                    self._remember(items[i], address)
                    out[i] = address
        for i, address in enumerate(out):
            if address is None:
                try:
                    out[i] = self(*items[i])
                except ValueError as exc:
                    return out[:i], i, str(exc)  # type: ignore[return-value]
        return out, -1, ""  # type: ignore[return-value]

    def _remember(self, key: tuple[str, bytes, int], address: str) -> None:
        if len(self._known) >= self.max_entries:
            del self._known[next(iter(self._known))]
        self._known[key] = address

    def _derive(self, asset: str, pubkey: bytes, kind: int) -> str:
        kinds, fast = self._assets.get(asset) or self._asset(asset)
        if not 0 <= kind < len(kinds):
            raise ValueError(f"address kind {kind} out of range: {asset} has {', '.join(kinds)}")
        if len(pubkey) != 33 or pubkey[0] not in (2, 3):
            raise ValueError("pubkey is not a compressed secp256k1 key")
        try:
            if kind == 0 and fast is not None:
                address = fast([bytes(pubkey)])[0]  # address_for's, faster
                if address is None:
                    raise ValueError("not a point on secp256k1")
                return address
            from node.assets import address_for

            return address_for(asset, pubkey, kind=kinds[kind])
        except Exception as exc:  # embit's ECError, eth-keys' errors, ValueError: not a point on the curve
            raise ValueError(f"not a valid public key ({type(exc).__name__})") from None

    def _asset(self, asset: str) -> tuple[tuple[str, ...], _BatchEncoder | None]:
        """The asset's address kinds and, when its first kind is P2WPKH, the fast encoder of that kind (keys
        to addresses, None for a key that is not a point)."""
        from node.assets import _p2wpkh_addresses, get_asset

        kinds = self.kinds(asset)
        fast = None
        if kinds[0] == "p2wpkh":
            network = get_asset(asset).network
            fast = lambda pubkeys: _p2wpkh_addresses(network, pubkeys)  # noqa: E731
        self._assets[asset] = (kinds, fast)
        return kinds, fast

    def kind_of(self, asset: str, pubkey: bytes, address: str) -> int:
        """The index of the kind of ``pubkey``'s address that ``address`` is (``ValueError`` if none)."""
        for i in range(len(self.kinds(asset))):
            if self(asset, pubkey, i) == address:
                return i
        raise ValueError(f"address {address!r} is not derived from the offered deposit key on {asset}")


#: the process's address cache (sender and receivers)
ADDRESSES = AddressDeriver()


def offer_table(offers: list[Offer], addresses: AddressDeriver = ADDRESSES) -> OfferTable:
    """The wire table of ``offers`` (in their order). ``ValueError`` if an offer's address is not one of
    its key's addresses (a sheet can only carry addresses every receiver derives the same way)."""
    index: dict[Terms, int] = {}
    entries = []
    for o in offers:
        t = Terms(o.asset, o.price, o.price_at, o.expiry)
        i = index.setdefault(t, len(index))
        entries.append(Entry(i, addresses.kind_of(o.asset, o.pubkey, o.address), o.pubkey, o.amount, o.usd_cents))
    return OfferTable(list(index), entries)


def encode_body(body: SheetBody, addresses: AddressDeriver = ADDRESSES) -> bytes:
    """The exact bytes an enclave signs for ``body`` (its version field is written as SHEET_VERSION)."""
    return wire.encode(SheetWire(SHEET_VERSION, body.net, body.origin, body.seq, body.issued_at,
                                 offer_table(body.offers, addresses), list(body.retracted), body.offers_root,
                                 body.quote, body.binding, list(body.unoffered)))


def unoffered_keys(committed: list[bytes] | None, offers: list[Offer]) -> list[bytes]:
    """The keys of ``committed`` (what the binding's ``keys_root`` commits to) not among ``offers``, sorted:
    a sheet's ``unoffered``. ``None``: the offered keys are the whole commitment."""
    offered = {o.pubkey for o in offers}
    return sorted({bytes(k) for k in committed or ()} - offered)


def build_sheet(
    *,
    net: str,
    origin: str,
    seq: int,
    now: float,
    offers: list[Offer],
    retracted: list[bytes],
    quote: bytes,
    binding: Binding,
    sign: Callable[[bytes, list[bytes]], bytes],
    committed: list[bytes] | None = None,
) -> bytes:
    """Encode and sign a sheet. ``sign`` is ``Enclave.sign_offer_sheet``; ``committed`` the deposit keys the
    binding's ``keys_root`` commits to (``None``: exactly the offered ones), so that the sheet can carry the
    rest of them (``unoffered``) and receivers can check every offered key is in the attested commitment."""
    offers = list(offers)
    body_bytes = encode_body(SheetBody(SHEET_VERSION, net, origin, seq, now, offers, list(retracted),
                                       offers_root(offers), quote, binding, unoffered_keys(committed, offers)))
    sig = sign(body_bytes, [o.pubkey for o in offers])
    return wire.encode(SignedSheet(body_bytes, sig))


# ------------------------------------------------------------------ validation
@dataclass
class AttestationCache:
    """Verdicts per (device signing key, quote hash), each trusted for ``recheck`` seconds after it was
    verified and then verified again at the time of the sheet carrying it, so a quote that went stale
    (``max_quote_age``) is refused as a receiver seeing it for the first time refuses it, within
    ``recheck``. Failing devices are remembered, but for a quote refused for its time alone (stale, or
    from the future): that quote is refused, the device's other quotes still count (a peer replaying a
    device's old sheet cannot get the device refused)."""

    verify: Callable[[bytes, Binding, float], "object"]  # (quote, binding, now) -> Verdict
    good: dict[tuple[bytes, bytes], tuple[object, float]] = field(default_factory=dict)  # -> (verdict, verified at)
    bad: dict[bytes, str] = field(default_factory=dict)  # sign_pub -> reason
    verifications: int = 0
    latest: dict[bytes, object] = field(default_factory=dict)  # sign_pub -> its last good verdict
    recheck: float = ATTESTATION_RECHECK
    #: quotes refused as stale (the device is not: anyone can replay its old sheet), bounded
    stale: dict[tuple[bytes, bytes], str] = field(default_factory=dict)

    def verdict_of(self, sign_pub: bytes):
        """The verdict that made this device trusted (None if never verified here)."""
        return self.latest.get(sign_pub)

    def check(self, quote: bytes, binding: Binding, now: float) -> str | None:
        """None when trusted, else the reason."""
        if binding.sign_pub in self.bad:
            return f"device already refused: {self.bad[binding.sign_pub]}"
        key = (binding.sign_pub, hashlib.sha256(quote + binding.encode()).digest())
        if key in self.stale:
            return self.stale[key]
        hit = self.good.get(key)
        if hit is not None and now - hit[1] < self.recheck:
            return None
        self.verifications += 1
        verdict = self.verify(quote, binding, now)
        if getattr(verdict, "ok", False):
            self.good[key] = (verdict, now)
            self.latest[binding.sign_pub] = verdict
            return None
        self.good.pop(key, None)
        code = getattr(verdict, "code", "refused")
        reason = f"{code}: {getattr(verdict, 'reason', '')}"
        if code in _QUOTE_TIME_CODES:  # this quote's time, not the device: its fresh quotes still count
            if code == "quote-stale":  # (stale for good: refused without verifying it again)
                if len(self.stale) >= MAX_STALE_QUOTES:
                    del self.stale[next(iter(self.stale))]
                self.stale[key] = reason
            return reason
        self.bad[binding.sign_pub] = reason
        return reason


def default_attestation_verifier(policy) -> Callable[[bytes, Binding, float], object]:
    from node.attest.binding import verify_attestation

    def verify(quote: bytes, binding: Binding, now: float):
        return verify_attestation(quote, binding, policy=policy, at=datetime.fromtimestamp(now, timezone.utc))

    return verify


def device_id_of(sign_pub: bytes) -> bytes:
    """A device's id: the SHA-256 of its enclave signing key."""
    return hashlib.sha256(sign_pub).digest()


def _reject(reason: str) -> Validation:
    return Validation(Result.REJECT, reason)


def _ignore(reason: str) -> Validation:
    return Validation(Result.IGNORE, reason)


class _SheetWireRawOffers(msgspec.Struct, array_like=True, frozen=True):
    """``SheetWire`` with its offer table left as its encoded bytes (decoded, and checked, separately)."""

    version: U16
    net: _Net
    origin: _PeerId
    seq: U63
    issued_at: Timestamp
    offers: msgspec.Raw
    retracted: _Retracted
    offers_root: _Hash
    quote: _Quote
    binding: Binding
    unoffered: _Unoffered = msgspec.field(default_factory=list)


@dataclass(frozen=True)
class CheckedOffers:
    """The offers of a sheet that passed the per-offer checks: decoded, their ids and Merkle root."""

    encoded: bytes  # the offer table exactly as it was in the sheet body
    offers: list[Offer]
    ids: list[bytes]
    root: bytes
    max_expiry: float = 0.0  # the latest expiry of the offers (0 for none)


class OffersCache:
    """Per origin, the offer table of its last *accepted* sheet, already checked.

    A node republishes its sheet (every minute, and whenever anything changes)
    and most sheets list exactly the offers of the previous one. Every
    per-offer check (table canonical, key format, no key twice, positive
    amounts, the address derived from the key, the offer ids and their Merkle
    root) is a pure function of the encoded table, so when a new sheet from
    the same origin carries byte-for-byte the same table, its decoded offers,
    ids and root are reused instead of recomputed. The comparison is on the
    exact bytes, so nothing a peer sends can make an unchecked offer pass;
    only sheets that passed every check, the signature included, are
    remembered (one entry per origin: a forger cannot displace a genuine
    entry). Bounded by the encoded bytes it holds (16 MiB: ~3,000 origins of
    100 offers); the least recently stored origins go first, and a miss only
    costs the full check.
    """

    def __init__(self, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._by_origin: dict[str, CheckedOffers] = {}
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, origin: str, encoded: bytes) -> CheckedOffers | None:
        c = self._by_origin.get(origin)
        if c is not None and c.encoded == encoded:
            self.hits += 1
            return c
        self.misses += 1
        return None

    def put(self, origin: str, checked: CheckedOffers) -> None:
        old = self._by_origin.pop(origin, None)
        if old is not None:
            self._bytes -= len(old.encoded)
        self._by_origin[origin] = checked
        self._bytes += len(checked.encoded)
        while self._bytes > self.max_bytes and len(self._by_origin) > 1:
            self._bytes -= len(self._by_origin.pop(next(iter(self._by_origin))).encoded)


def _expand(table: OfferTable, addresses: AddressDeriver) -> tuple[str | None, list[Offer]]:
    """The table's offers (in order), or the [REJECT] reason it is not a canonical, well-formed table."""
    # [REJECT] At most MAX_OFFERS_PER_SHEET offers.
    if len(table.entries) > MAX_OFFERS_PER_SHEET:
        return f"too many offers: {len(table.entries)} > {MAX_OFFERS_PER_SHEET}", []
    # [REJECT] The terms are listed once each, in order of first use, each used (one table per offer list).
    terms = table.terms
    if len(set(terms)) != len(terms):
        return "malformed: the same terms listed twice", []
    if not all(math.isfinite(t.price_at) and math.isfinite(t.expiry) for t in terms):
        return "malformed: a price time or expiry is not a finite number", []
    seen: set[bytes] = set()
    used = 0
    items: list[tuple[str, bytes, int]] = []  # (asset, key, kind) of each offer before the first bad one
    why = None
    for i, e in enumerate(table.entries):
        if not 0 <= e.terms <= used or e.terms >= len(terms):
            why = f"malformed: offer {i}: terms {e.terms} not the next unused or an earlier one"
            break
        if e.terms == used:
            used += 1
        # [REJECT] Each offer well formed: a compressed key, listed once, positive amounts, an address kind
        # its asset has (its address derived from its key: below, for all the offers at once).
        if len(e.pubkey) != 33 or e.pubkey[0] not in (2, 3):
            why = f"offer {i}: pubkey is not a compressed secp256k1 key"
            break
        if e.pubkey in seen:
            why = f"offer {i}: deposit key listed twice"
            break
        seen.add(e.pubkey)
        if e.amount <= 0 or e.usd_cents <= 0:
            why = f"offer {i}: amount and usd_cents must be positive"
            break
        items.append((terms[e.terms].asset, e.pubkey, e.kind))
    # the addresses of the offers before the first bad one (if any): an offer's own failure comes first
    found, bad, reason = addresses.many(items)
    if bad >= 0:
        return f"offer {bad}: {reason}", []
    if why:
        return why, []
    if used != len(terms):
        return f"malformed: {len(terms) - used} terms listed but not used", []
    offers = [Offer(t.asset, address, e.pubkey, e.amount, e.usd_cents, t.price, t.price_at, t.expiry)
              for e, address in zip(table.entries, found) for t in (terms[e.terms],)]
    return None, offers


def _decode_table(encoded: bytes) -> tuple[Validation | None, OfferTable | None]:
    try:
        return None, wire.decode(encoded, OfferTable, max_size=MAX_SHEET_SIZE)
    except wire.WireError as exc:
        return _reject(f"malformed: offers: {exc.reason}"), None


def _check_table(encoded: bytes, table: OfferTable,
                 addresses: AddressDeriver) -> tuple[Validation | None, CheckedOffers | None]:
    """The per-offer [REJECT] checks of ``validate_sheet`` over the decoded offer table."""
    why, offers = _expand(table, addresses)
    if why:
        return _reject(why), None
    ids = offer_ids(offers)
    return None, CheckedOffers(encoded, offers, ids, merkle_root(ids), max((t.expiry for t in table.terms), default=0.0))


def _check_offers(encoded: bytes, addresses: AddressDeriver) -> tuple[Validation | None, CheckedOffers | None]:
    """The per-offer [REJECT] checks of ``validate_sheet`` over the encoded offer table."""
    v, table = _decode_table(encoded)
    if v is not None:
        return v, None
    return _check_table(encoded, table, addresses)


def commitment_mismatch(offered: list[bytes], unoffered: list[bytes], binding: Binding) -> str | None:
    """None when the offered keys and ``unoffered`` are together exactly the keys the binding's ``keys_root``
    commits to (``node.attest.binding.keys_root``, which the enclave's quote attests), else the reason."""
    prev = b""
    for i, k in enumerate(unoffered):
        if len(k) != 33 or k[0] not in (2, 3):
            return f"unoffered key {i} is not a compressed secp256k1 key"
        if k <= prev:
            return f"unoffered key {i} out of order or listed twice (the list is sorted, each key once)"
        prev = k
    if keys_root(list(offered) + list(unoffered)) != binding.keys_root:
        return ("an offered key is not in the device's attested key commitment (the offered and unoffered keys "
                "do not hash to the quote's keys_root)")
    return None


class DeviceBudget:
    """First-sight validation work per device: a token bucket of ``per_minute`` offers, refilled evenly over a
    minute. ``take(device, n, now)`` is "" when ``n`` offers may be validated now (and spends them), else the
    reason. Bounded: at most ``max_devices`` buckets (full ones are forgotten first: a forgotten bucket is a
    full one)."""

    def __init__(self, per_minute: int = VALIDATION_BUDGET, max_devices: int = 4096) -> None:
        if per_minute < 1:
            raise ValueError(f"validation budget {per_minute} must be >= 1 offer a minute")
        self.per_minute = per_minute
        self.max_devices = max_devices
        self._buckets: dict[bytes, tuple[float, float]] = {}  # device -> (tokens, at)

    def _level(self, device: bytes, now: float) -> float:
        b = self._buckets.get(device)
        if b is None:
            return float(self.per_minute)
        tokens, at = b
        return min(float(self.per_minute), tokens + max(0.0, now - at) * self.per_minute / 60.0)

    def take(self, device: bytes, n: int, now: float) -> str:
        level = self._level(device, now)
        n = min(n, self.per_minute)  # a sheet larger than the budget passes on a full bucket (and empties it)
        if n > level:
            return (f"validation budget: device over offers.validation_budget={self.per_minute} offers a minute "
                    f"({n} asked, {int(level)} left)")
        if device not in self._buckets and len(self._buckets) >= self.max_devices:
            full = [d for d in self._buckets if self._level(d, now) >= self.per_minute]
            for d in full or list(self._buckets)[:1]:
                del self._buckets[d]
        self._buckets[device] = (level - n, now)
        return ""


def decode_sheet(data: bytes, addresses: AddressDeriver = ADDRESSES) -> tuple[SignedSheet, SheetBody]:
    """The signed sheet and its decoded body; ``wire.WireError`` with the reason if it is malformed (no
    signature or attestation checked: that is ``validate_sheet``)."""
    signed = wire.decode(data, SignedSheet, max_size=MAX_SHEET_SIZE)
    w = wire.decode(signed.body, SheetWire, max_size=MAX_SHEET_SIZE)
    why, offers = _expand(w.offers, addresses)
    if why:
        raise wire.WireError(why)
    return signed, SheetBody(w.version, w.net, w.origin, w.seq, w.issued_at, offers, w.retracted, w.offers_root,
                             w.quote, w.binding, w.unoffered)


def check_sheet(
    data: bytes,
    *,
    net: str,
    now: float,
    latest_seq: Callable[[str], int | None],
    attestations: AttestationCache,
    addresses: AddressDeriver = ADDRESSES,
    offers_cache: OffersCache | None = None,
    verify_sig: Callable[[bytes, bytes, bytes], bool] | None = None,
    device_origins: Callable[[bytes, float], "set[str] | frozenset[str] | list[str]"] | None = None,
    max_origins_per_device: int = MAX_ORIGINS_PER_DEVICE,
    budget: DeviceBudget | None = None,
    max_offer_lifetime: float = MAX_OFFER_LIFETIME,
) -> tuple[Validation, SheetBody | None, list[bytes] | None]:
    """Decide ACCEPT / REJECT / IGNORE for a gossiped sheet (pure but for the caches); with the decoded
    body of an accepted sheet comes its offer ids (in order), so that nothing downstream (the offer
    book) decodes the sheet or hashes its offers again. ``verify_sig(sign_pub, body, sig)`` checks the
    enclave signature (default ``node.tee.client.verify_offer_sheet_sig``; the simulator passes a memo of
    it shared by its nodes). ``device_origins(device_id, now)`` names the origins a device already has (the
    book's ``origins_of``): a new one beyond ``max_origins_per_device`` is ignored. ``budget`` limits the
    first-sight per-offer work per device."""
    if verify_sig is None:
        from node.tee.client import verify_offer_sheet_sig as verify_sig

    # [REJECT] The message is within the size limit.
    if len(data) > MAX_SHEET_SIZE:
        return _reject(f"over size: {len(data)} > {MAX_SHEET_SIZE} bytes"), None, None
    # [REJECT] The message decodes to a canonical SignedSheet and SheetWire.
    try:
        signed = wire.decode(data, SignedSheet, max_size=MAX_SHEET_SIZE)
        raw = wire.decode(signed.body, _SheetWireRawOffers, max_size=MAX_SHEET_SIZE)
    except wire.WireError as exc:
        return _reject(f"malformed: {exc.reason}"), None, None
    # [REJECT] The sheet version is one we speak.
    if raw.version != SHEET_VERSION:
        return _reject(f"unsupported sheet version {raw.version}"), None, None
    # [REJECT] The sheet is for our network.
    if raw.net != net:
        return _reject(f"wrong network {raw.net!r} (we are {net!r})"), None, None
    # [REJECT] The binding is well formed and binds the origin's peer id.
    bad = raw.binding.validate()
    if bad:
        return _reject(f"malformed binding: {bad}"), None, None
    if raw.binding.net != net or raw.binding.peer_id != raw.origin:
        return _reject("peer id not bound by the quote (binding names another peer or network)"), None, None
    # [IGNORE] The sheet is newer than the newest we hold from this origin (checked before the
    # per-offer work: a duplicate or superseded sheet costs a decode, nothing more).
    last = latest_seq(raw.origin)
    if last is not None and raw.seq == last:
        return _ignore(f"duplicate: sheet {raw.seq} from this origin already held"), None, None
    if last is not None and raw.seq < last:
        return _ignore(f"stale sequence {raw.seq} < {last}"), None, None
    # [IGNORE] The sheet is not from the future.
    if raw.issued_at > now + MAX_CLOCK_SKEW:
        return _ignore(f"issued {raw.issued_at - now:.0f} s in the future"), None, None
    # [REJECT] The enclave's signature over the body is valid. (Checked before the per-offer work, as is
    # the quote: without a genuine signature from an attested enclave a sheet costs no per-offer work.)
    if not verify_sig(raw.binding.sign_pub, signed.body, signed.sig):
        return _reject("bad signature"), None, None
    # [REJECT] The quote is genuine, an allowed build, and commits to the binding.
    why = attestations.check(raw.quote, raw.binding, now)
    if why:
        return _reject(f"untrusted or forged quote: {why}"), None, None
    device = device_id_of(raw.binding.sign_pub)
    # [IGNORE] The origin is one the device already has here, or the device has fewer than
    # ``max_origins_per_device`` origins (a quote binds whatever peer id its host asks for: one device could
    # otherwise publish under any number of origins).
    if device_origins is not None:
        known = device_origins(device, now)
        if raw.origin not in known and len(known) >= max_origins_per_device:
            return _ignore(f"origins per device: the device already has {len(known)} origins "
                           f"(offers.max_origins_per_device={max_origins_per_device})"), None, None
    # [REJECT] The offer table decodes canonically and every offer is well formed (see ``_expand``; all
    # skipped for the very table this origin's last accepted sheet carried: see OffersCache).
    encoded = bytes(raw.offers)
    checked = offers_cache.get(raw.origin, encoded) if offers_cache is not None else None
    if checked is None:
        v, table = _decode_table(encoded)
        if v is not None:
            return v, None, None
        # [IGNORE] The device has first-sight validation budget left for this many offers (a token bucket
        # per device: a device re-issuing fresh sheets cannot make every node do unbounded work).
        if budget is not None:
            why = budget.take(device, len(table.entries), now)
            if why:
                return _ignore(why), None, None
        v, checked = _check_table(encoded, table, addresses)
        if v is not None:
            return v, None, None
    # [REJECT] offers_root is the Merkle root of the offers.
    if raw.offers_root != checked.root:
        return _reject("offers_root does not match the offers"), None, None
    # [REJECT] No offer lives longer than ``max_offer_lifetime`` from now (plus the clock skew allowed).
    if checked.max_expiry > now + MAX_CLOCK_SKEW + max_offer_lifetime:
        return _reject(f"expiry too far: an offer expires {checked.max_expiry - now:.0f} s from now "
                       f"(offers.max_offer_lifetime={max_offer_lifetime:g} s)"), None, None
    # [REJECT] Every offered key is in the device's attested key commitment: the offered keys and
    # ``unoffered`` hash to the binding's keys_root, which the quote attests (an enclave quotes only the root
    # of the keys it holds). A node republishing another device's offers under its own quote fails here.
    why = commitment_mismatch([o.pubkey for o in checked.offers], raw.unoffered, raw.binding)
    if why:
        return _reject(f"offer not attested: {why}"), None, None
    # [IGNORE] At least one offer is unexpired, or the sheet retracts something.
    if checked.offers and all(o.expiry <= now for o in checked.offers) and not raw.retracted:
        return _ignore("expired: every offer in the sheet is past its expiry"), None, None
    if offers_cache is not None:
        offers_cache.put(raw.origin, checked)
    body = SheetBody(raw.version, raw.net, raw.origin, raw.seq, raw.issued_at, list(checked.offers), raw.retracted,
                     raw.offers_root, raw.quote, raw.binding, raw.unoffered)
    return Validation(Result.ACCEPT), body, checked.ids


def validate_sheet(data: bytes, **kw) -> tuple[Validation, SheetBody | None]:
    """Decide ACCEPT / REJECT / IGNORE for a gossiped sheet (pure but for the caches): ``check_sheet``
    (same keyword arguments: ``net``, ``now``, ``latest_seq``, ``attestations``, and optionally
    ``addresses``, ``offers_cache`` and ``verify_sig``) without the offer ids."""
    v, body, _ids = check_sheet(data, **kw)
    return v, body


# ------------------------------------------------------------------ protocol
@dataclass
class OwnSheet:
    """What this node publishes; the protocol re-signs it on every republish."""

    offers: list[Offer]
    retracted: list[bytes]
    quote: bytes
    binding: Binding
    sign: Callable[[bytes, list[bytes]], bytes]
    #: the deposit keys ``binding.keys_root`` commits to (None: exactly the offered ones); see ``build_sheet``
    committed: list[bytes] | None = None


# re-announcement of an unchanged own sheet: REPUBLISH_INTERVAL after a publish, then doubling up to this
# (OffersProtocol; why 30 min: docs/network.md, "Offer gossip")
REPUBLISH_MAX = 1800.0
# the pull on connect (OffersProtocol, SheetsAsk/SheetsAnswer below)
SHEETS_VERSION = 1
PULL_MAX_SHEETS = 256  # sheets in one answer
PULL_MAX_BYTES = 960 * 1024  # sheet bytes in one answer (a stream frame is at most 1 MiB: node.runtime.streams)
MAX_ASK_SIZE = 256
MAX_ANSWER_SIZE = PULL_MAX_BYTES + 16 * 1024  # the sheets plus their framing
PULL_TIMEOUT = 10.0
PULL_AGAIN = 300.0  # seconds before the same peer is asked again (a flapping link asks once per 5 min)
PULL_ANSWERS_PER_MINUTE = 4  # answers one peer gets in a minute
PULL_ANSWERS_PER_MINUTE_TOTAL = 120  # answers all peers together get in a minute (~120 MiB at the most)
MAX_TRACKED_PEERS = 4096
#: seconds between deletions of expired offers from the book (queries skip them meanwhile)
PURGE_INTERVAL = 3600.0


class OffersProtocol:
    """Sans-IO offer gossip: validates sheets, feeds the offer book, publishes ours, answers and makes pulls.

    ``book`` is an ``node.stores.offerbook.OfferBook`` (or anything with ``latest_seq``
    and ``apply_sheet``). ``device_class`` maps a verified binding to the risk
    engine's device class name.

    Re-announcement (``republish_interval``, ``republish_max``): a changed own sheet (``set_own_sheet`` with
    other offers, another quote, or a retraction) is published at once; the same sheet is then re-signed
    and re-published after ``republish_interval`` seconds, then after twice that, and so on, doubling up to
    ``republish_max``. A change publishes at once and starts the schedule again. A re-announcement repairs
    a sheet a connected peer missed; a peer that joins or comes back asks instead (the pull below).

    Pull on connect (``/keyswitch/<net>/sheets/1``, ``SheetsAsk`` -> ``SheetsAnswer``): on ``PeerConnected``
    the node asks that peer (not again within ``pull_again`` seconds) for the latest sheets it holds: its
    own and the latest accepted sheet of each origin it knows (``SheetStore``), at most
    ``PULL_MAX_SHEETS`` and ``PULL_MAX_BYTES``. Every sheet in an answer goes through ``validate`` (the
    gossip path: the same [REJECT]/[IGNORE] labels and counters), and only an ACCEPTed one reaches
    ``handle`` and the book. A peer gets at most ``answers_per_minute`` answers a minute (all peers together
    ``answers_per_minute_total``); over that it gets a refusal, so a reconnect storm cannot amplify.
    """

    def __init__(
        self,
        *,
        net: str,
        book,
        attestations: AttestationCache,
        addresses: AddressDeriver = ADDRESSES,
        republish_interval: float = REPUBLISH_INTERVAL,
        republish_max: float | None = None,  # default: REPUBLISH_MAX (the interval if that is longer)
        pull: bool = True,
        pull_again: float = PULL_AGAIN,
        answers_per_minute: int = PULL_ANSWERS_PER_MINUTE,
        answers_per_minute_total: int = PULL_ANSWERS_PER_MINUTE_TOTAL,
        verify_sig: Callable[[bytes, bytes, bytes], bool] | None = None,  # see check_sheet
        max_origins_per_device: int = MAX_ORIGINS_PER_DEVICE,
        validation_budget: int = VALIDATION_BUDGET,
        max_offer_lifetime: float = MAX_OFFER_LIFETIME,
        prices=None,  # node.assets.prices.PriceFeed: offers whose USD value disagrees with it are not booked
        price_tolerance: float | None = None,  # default node.assets.prices.DEFAULT_PRICE_TOLERANCE
    ) -> None:
        if republish_max is None:
            republish_max = max(REPUBLISH_MAX, republish_interval)
        if not 0 < republish_interval <= republish_max:
            raise ValueError(f"republish interval {republish_interval} must be > 0 and <= republish_max "
                             f"{republish_max}")
        self.net = net
        self.topic = topic(net, "offers", 1)
        self.topics = [self.topic]
        self.sheets_protocol = sheets_protocol(net)
        self.stream_protocols: list[str] = [self.sheets_protocol]
        self.book = book
        self.attestations = attestations
        self.addresses = addresses
        self.verify_sig = verify_sig
        self.offers_cache = OffersCache()
        if max_origins_per_device < 1:
            raise ValueError(f"offers.max_origins_per_device {max_origins_per_device} must be >= 1")
        if not 0 < max_offer_lifetime < math.inf:
            raise ValueError(f"offers.max_offer_lifetime {max_offer_lifetime} must be a positive number of seconds")
        self.max_origins_per_device = max_origins_per_device
        self.max_offer_lifetime = max_offer_lifetime
        self.budget = DeviceBudget(validation_budget)
        self.prices = prices
        if price_tolerance is None:
            from node.assets.prices import DEFAULT_PRICE_TOLERANCE as price_tolerance
        self.price_tolerance = price_tolerance
        self.republish_interval = republish_interval
        self.republish_max = republish_max
        self.next_interval = republish_interval  # the wait before the next re-announcement of an unchanged sheet
        # sheets accepted by ``validate`` and not yet handled, by their exact bytes: ``handle`` takes the
        # decoded body and offer ids from here instead of decoding and hashing the sheet a second time
        self._accepted: dict[bytes, tuple[SheetBody, list[bytes]]] = {}
        self.max_pending = 256  # a sheet evicted here is decoded again in handle: slower, same result
        self.local_peer = ""
        self.own: OwnSheet | None = None
        self.own_data: bytes | None = None  # the bytes of the last sheet we published
        self._published: tuple | None = None  # (offers, quote, binding) of the last sheet we published
        self.seq = 0
        self.stats = {"accept": 0, "reject": 0, "ignore": 0}
        self.purged = 0  # expired offers deleted from the book (``offers.purge`` timer)
        self.reasons: dict[str, dict[str, int]] = {}  # result -> reason prefix -> count
        #: ``refuse(body) -> reason | None``: sheets of revoked devices/classes (set by the node)
        self.refuse: Callable[[SheetBody], str | None] | None = None
        # the pull
        self.sheets = SheetStore(max_per_device=max_origins_per_device)
        self.pull = pull
        self.pull_again = pull_again
        self.answers = RateLimit(answers_per_minute, answers_per_minute_total)
        self._pulled: dict[str, float] = {}  # peer -> when we last asked it
        self._asks: dict[int, str] = {}  # our request id -> peer
        self._req = 0
        self.pull_stats = {"asked": 0, "answered": 0, "refused_by_peer": 0, "failed": 0, "malformed": 0,
                           "sheets": 0, "accepted": 0, "served": 0, "refused": 0}

    # -- validation (called by the driver before delivery / forwarding)
    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        if topic_ != self.topic:
            return _ignore(f"not our topic {topic_}")
        v, body, ids = check_sheet(
            data, net=self.net, now=now, latest_seq=self.book.latest_seq, attestations=self.attestations,
            addresses=self.addresses, offers_cache=self.offers_cache, verify_sig=self.verify_sig,
            device_origins=getattr(self.book, "origins_of", None), max_origins_per_device=self.max_origins_per_device,
            budget=self.budget, max_offer_lifetime=self.max_offer_lifetime,
        )
        # [IGNORE] The device or its class has not been revoked here.
        if body is not None and self.refuse is not None:
            why = self.refuse(body)
            if why:
                v = _ignore(f"revoked: {why}")
        # [IGNORE] Not our own sheet (a pulled answer may carry it back).
        if body is not None and body.origin == self.local_peer:
            v = _ignore("our own sheet")
        if v.result is Result.ACCEPT and body is not None and ids is not None:
            if len(self._accepted) >= self.max_pending:  # delivered without reaching handle (queue full)
                del self._accepted[next(iter(self._accepted))]
            self._accepted[bytes(data)] = (body, ids)
        self.stats[v.result.value] += 1
        if v.result is not Result.ACCEPT:
            self._count(v.result.value, v.reason)
        return v

    # -- events
    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, Started):
            self.local_peer = event.local_peer
            purge = SetTimer("offers.purge", now + PURGE_INTERVAL)
            if self.own is not None:  # set before the start (the daemon): published at once
                cmds = self.set_own_sheet(self.own, now)
                if cmds:
                    return [*cmds, purge]
            return [SetTimer("offers.republish", now + self.republish_interval), purge]
        if isinstance(event, GossipReceived) and event.topic == self.topic:
            return self._deliver(event.data, now, pulled=False)
        if isinstance(event, TimerFired) and event.name == "offers.republish":
            return self._reannounce(now)
        if isinstance(event, TimerFired) and event.name == "offers.purge":
            purge = getattr(self.book, "purge_expired", None)
            self.purged += purge(now) if purge is not None else 0
            return [SetTimer("offers.purge", now + PURGE_INTERVAL)]
        if isinstance(event, PeerConnected):
            return self._ask(event.peer, now)
        if isinstance(event, RequestReceived) and event.protocol == self.sheets_protocol:
            return self._answer(event, now)
        if isinstance(event, ResponseReceived) and event.protocol == self.sheets_protocol:
            return self._on_answer(event, now)
        return []

    def _deliver(self, data: bytes, now: float, *, pulled: bool) -> list[Command]:
        pending = self._accepted.pop(data, None)
        if pending is None:  # not validated here (a caller feeding events directly): decode it now
            try:
                _, body = decode_sheet(data, self.addresses)
            except wire.WireError:
                return []
            ids = offer_ids(body.offers)
        else:
            body, ids = pending
        if body.origin == self.local_peer:
            return []
        if self.prices is not None:
            body, ids = self._priced(body, ids, now)
        added = self.book.apply_sheet(body, now=now, ids=ids)
        if pending is not None:  # validated here: kept (the latest per origin) for peers that pull
            self.sheets.put(body.origin, body.seq, data, device=device_id_of(body.binding.sign_pub))
        detail = {"origin": body.origin, "seq": body.seq, "offers": added}
        if pulled:
            detail["pulled"] = True
        return [Notify("offers.sheet", detail)]

    def _count(self, result: str, reason: str, n: int = 1) -> None:
        reasons = self.reasons.setdefault(result, {})
        key = re.split(r"[:\d]", reason, maxsplit=1)[0].strip()[:60]  # no numbers: bounded label set
        reasons[key] = reasons.get(key, 0) + n

    def _priced(self, body: SheetBody, ids: list[bytes], now: float) -> tuple[SheetBody, list[bytes]]:
        """[IGNORE] (per offer, counted under "ignore_offer") An offer whose declared USD value disagrees with
        its amount at our own price beyond ``price_tolerance`` (``declared_usd_mismatch``), or of an asset we
        have no price for, is not booked. The sheet itself stays valid (prices differ between nodes: the rest
        of its offers are booked and it is forwarded)."""
        from node.assets.prices import PriceError, declared_usd_mismatch

        keep_offers, keep_ids, prices = [], [], {}
        for o, i in zip(body.offers, ids):
            if o.asset not in prices:
                try:
                    prices[o.asset] = self.prices.price(o.asset, now)
                except (PriceError, ValueError) as exc:
                    prices[o.asset] = str(exc) or "no price"
            p = prices[o.asset]
            why = (f"no price: {p}" if isinstance(p, str)
                   else declared_usd_mismatch(o.asset, o.amount, o.usd_cents, p, self.price_tolerance))
            if why:
                self._count("ignore_offer", "usd value disagrees with our price" if not isinstance(p, str)
                            else "no price for the asset")
                continue
            keep_offers.append(o)
            keep_ids.append(i)
        if len(keep_offers) == len(body.offers):
            return body, ids
        return msgspec.structs.replace(body, offers=keep_offers), keep_ids

    def _reannounce(self, now: float) -> list[Command]:
        """The timer: re-sign and re-publish the unchanged own sheet, and wait twice as long for the next
        (up to ``republish_max``). Nothing to publish: the timer stops (``set_own_sheet`` starts it)."""
        if self.own is None:
            return []
        try:
            pub = self._publish(now)
        except Exception as exc:  # the enclave refused to sign (e.g. a key just committed to a contract): the
            return self._refused(exc, now)  # timer must survive, or this node never re-announces again
        if not pub:
            return []
        self.next_interval = min(self.next_interval * 2, self.republish_max)
        return [SetTimer("offers.republish", now + self.next_interval), *pub]

    def _refused(self, exc: Exception, now: float) -> list[Command]:
        """Our sheet could not be signed now (the enclave refuses a sheet offering a key committed to an open
        contract, I4, until the host's offers catch up with the contract): say why, and try again after
        ``republish_interval`` with the back-off restarted; the queued retractions stay queued."""
        self.next_interval = self.republish_interval
        reason = f"{type(exc).__name__}: {exc}"[:300]
        return [SetTimer("offers.republish", now + self.republish_interval),
                Notify("offers.publish-refused", {"reason": reason, "retry_in": self.republish_interval})]

    # -- application calls (through driver.submit)
    def announce(self, now: float) -> list[Command]:
        """Re-sign and publish the own sheet now, changed or not: what a re-announcement does, on demand (the
        network benchmark's rounds). The back-off schedule is left as it is."""
        return self._publish(now) if self.own is not None else []

    def published(self) -> dict:
        """The last sheet this node published: its ``seq`` and the addresses it offers (sorted); what
        every other node's book should hold for this origin once gossip settles (``benchmarks.soak``)."""
        offers = self._published[0] if self._published is not None else []
        return {"seq": self.seq, "addresses": sorted(o.address for o in offers)}

    def set_own_sheet(self, own: OwnSheet, now: float) -> list[Command]:
        """Replace what this node offers. A changed sheet (other offers, another quote or binding, or a
        retraction to carry) is published at once and the re-announcement back-off starts again at
        ``republish_interval``; an unchanged one is not published again (its re-announcements go on)."""
        self.own = own
        if own.retracted or self._published != _sheet_key(own):
            try:
                pub = self._publish(now)
            except Exception as exc:  # (see _reannounce) retried by the timer
                return self._refused(exc, now)
            if pub:
                self.next_interval = self.republish_interval
                return [SetTimer("offers.republish", now + self.next_interval), *pub]
        return []

    def _publish(self, now: float) -> list[Command]:
        assert self.own is not None
        if not self.own.offers and not self.own.retracted:
            return []  # nothing to offer or retract: no sheet (the enclave signs only sheets naming its keys)
        self.seq = max(self.seq + 1, int(now * 1000))  # monotonic across restarts
        data = build_sheet(  # may raise: the enclave refuses (I4); the callers retry (``_refused``)
            net=self.net, origin=self.local_peer, seq=self.seq, now=now, offers=self.own.offers,
            retracted=self.own.retracted, quote=self.own.quote, binding=self.own.binding, sign=self.own.sign,
            committed=self.own.committed,
        )
        self.own.retracted = []  # a retraction rides on one sheet
        self.own_data = data
        self._published = _sheet_key(self.own)
        return [Publish(self.topic, data)]

    # -- the pull
    def _ask(self, peer: str, now: float) -> list[Command]:
        if not self.pull or self.attestations is None or not peer or peer == self.local_peer:
            return []
        last = self._pulled.get(peer)
        if last is not None and now - last < self.pull_again:
            return []
        if len(self._pulled) >= MAX_TRACKED_PEERS:  # forget the peers asked longest ago
            for p in [p for p, t in self._pulled.items() if now - t >= self.pull_again] or list(self._pulled)[:1]:
                del self._pulled[p]
        self._pulled[peer] = now
        self._req += 1
        if len(self._asks) >= MAX_TRACKED_PEERS:  # (each ask is answered or fails: this only bounds a bad driver)
            del self._asks[next(iter(self._asks))]
        self._asks[self._req] = peer
        self.pull_stats["asked"] += 1
        ask = wire.encode(SheetsAsk(SHEETS_VERSION, self.net, PULL_MAX_SHEETS, PULL_MAX_BYTES))
        return [SendRequest(self.sheets_protocol, peer, self._req, ask, timeout=PULL_TIMEOUT)]

    def _answer(self, event: RequestReceived, now: float) -> list[Command]:
        why = self.answers.take(event.peer, now)
        if why:
            self.pull_stats["refused"] += 1
            return [Respond(event.request_id, wire.encode(SheetsAnswer(SHEETS_VERSION, self.net, why[:500], [])))]
        self.pull_stats["served"] += 1
        return [Respond(event.request_id, answer_pull(event.data, net=self.net, own=self.own_data,
                                                      store=self.sheets))]

    def _on_answer(self, event: ResponseReceived, now: float) -> list[Command]:
        peer = self._asks.pop(event.request_id, None)
        if peer is None:
            return []
        if event.error:  # no answer (a bootstrap node does not speak the protocol, a timeout)
            self.pull_stats["failed"] += 1
            return []
        why, sheets = read_answer(event.data, net=self.net)
        if why:
            self.pull_stats["malformed" if why.startswith("malformed") else "refused_by_peer"] += 1
            return [Notify("offers.pull", {"peer": peer, "error": why})]
        self.pull_stats["answered"] += 1
        self.pull_stats["sheets"] += len(sheets)
        cmds: list[Command] = []
        accepted = 0
        for data in sheets:  # the gossip path: validate, then (ACCEPT only) handle
            if self.validate(self.topic, data, peer, now).result is Result.ACCEPT:
                accepted += 1
                cmds += self._deliver(data, now, pulled=True)
        self.pull_stats["accepted"] += accepted
        return cmds + [Notify("offers.pull", {"peer": peer, "sheets": len(sheets), "accepted": accepted})]


def _sheet_key(own: OwnSheet) -> tuple:
    return (list(own.offers), bytes(own.quote), own.binding, sorted(own.committed or ()))


# ------------------------------------------------------------------ the pull (wire, store, limits)
def sheets_protocol(net: str) -> str:
    """The pull's stream protocol id: ``/keyswitch/<net>/sheets/1``."""
    return f"/keyswitch/{net}/sheets/{SHEETS_VERSION}"


class SheetsAsk(msgspec.Struct, array_like=True, frozen=True):
    """``/keyswitch/<net>/sheets/1`` request: "send me the latest sheets you hold", within these bounds.
    Ranges: version 0..65535, net <= 64 chars, max_sheets and max_bytes 0..2^31 (decode fails outside)."""

    version: U16
    net: _Net
    max_sheets: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)]
    max_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)]


class SheetsAnswer(msgspec.Struct, array_like=True, frozen=True):
    """The answer: signed sheets exactly as they were gossiped (each checked by the asker as gossip is),
    or ``error`` (a refusal: rate limited, malformed request) and no sheets. Ranges: version 0..65535,
    net <= 64 chars, error <= 512 chars, at most PULL_MAX_SHEETS sheets of at most MAX_SHEET_SIZE bytes."""

    version: U16
    net: _Net
    error: Annotated[str, msgspec.Meta(max_length=512)]
    sheets: Annotated[list[Annotated[bytes, msgspec.Meta(max_length=MAX_SHEET_SIZE)]],
                      msgspec.Meta(max_length=PULL_MAX_SHEETS)]


class SheetStore:
    """The latest accepted sheet of each origin, as raw bytes, for peers that pull. Bounded by origins, by
    bytes and by origins per device: a device's sheets are stored under at most ``max_per_device`` origins
    (a new origin of a device over that replaces that device's oldest one), and when the store is full the
    sheet that goes is the oldest of the device holding the most origins, so one device's origins never push
    another device's sheets out while it holds more than they do. ``device=None``: the origin is its own
    device (the simulator's relays, which keep no devices)."""

    def __init__(self, max_origins: int = 4096, max_bytes: int = 32 << 20,
                 max_per_device: int = MAX_ORIGINS_PER_DEVICE) -> None:
        self.max_origins = max_origins
        self.max_bytes = max_bytes
        self.max_per_device = max_per_device
        self._by_origin: dict[str, tuple[int, bytes, object]] = {}  # origin -> (seq, data, device)
        self._by_device: dict[object, dict[str, None]] = {}  # device -> its origins, oldest stored first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_origin)

    def _drop(self, origin: str) -> None:
        _seq, data, device = self._by_origin.pop(origin)
        self._bytes -= len(data)
        mine = self._by_device[device]
        del mine[origin]
        if not mine:
            del self._by_device[device]

    def put(self, origin: str, seq: int, data: bytes, device: object = None) -> None:
        device = ("origin", origin) if device is None else device
        old = self._by_origin.get(origin)
        if old is not None:
            if old[0] >= seq:
                return
            self._drop(origin)
        mine = self._by_device.setdefault(device, {})
        while len(mine) >= self.max_per_device:  # the device's own oldest origin makes room
            self._drop(next(iter(mine)))
            mine = self._by_device.setdefault(device, {})
        self._by_origin[origin] = (seq, data, device)
        mine[origin] = None
        self._bytes += len(data)
        while self._by_origin and (len(self._by_origin) > self.max_origins or self._bytes > self.max_bytes):
            # the device holding the most origins loses its oldest (ties: the oldest stored of those)
            most = max(len(o) for o in self._by_device.values())
            victim = next(o for o in self._by_origin if len(self._by_device[self._by_origin[o][2]]) == most)
            self._drop(victim)

    def newest_first(self):
        for _seq, data, _device in reversed(self._by_origin.values()):
            yield data


def answer_pull(ask: bytes, *, net: str, own: bytes | None, store: SheetStore) -> bytes:
    """The encoded ``SheetsAnswer`` to an encoded ``SheetsAsk``: our own sheet first, then the latest of
    each origin, newest first, within the smaller of the asker's and our bounds (a malformed or foreign
    ask gets an answer naming why, and no sheets)."""

    def refuse(why: str) -> bytes:
        return wire.encode(SheetsAnswer(SHEETS_VERSION, net, why[:500], []))

    try:
        a = wire.decode(ask, SheetsAsk, max_size=MAX_ASK_SIZE)
    except wire.WireError as exc:
        return refuse(f"malformed request: {exc.reason}")
    if a.version != SHEETS_VERSION:
        return refuse(f"unsupported request version {a.version}")
    if a.net != net:
        return refuse(f"wrong network {a.net!r}")
    max_sheets = max(0, min(a.max_sheets, PULL_MAX_SHEETS))
    budget = max(0, min(a.max_bytes, PULL_MAX_BYTES))
    out: list[bytes] = []
    # (the store never holds our own sheet: ``_deliver`` stores only accepted sheets, ``validate`` ignores ours)
    for data in itertools.chain([own] if own else [], store.newest_first()):
        if len(out) >= max_sheets:
            break
        if len(data) <= budget:
            out.append(data)
            budget -= len(data)
    return wire.encode(SheetsAnswer(SHEETS_VERSION, net, "", out))


def read_answer(data: bytes, *, net: str) -> tuple[str, list[bytes]]:
    """``(reason, [])`` for a malformed answer or a refusal, else ``("", sheets)`` (each still to be
    validated). A malformed answer's reason starts with "malformed"."""
    try:
        a = wire.decode(data, SheetsAnswer, max_size=MAX_ANSWER_SIZE)
    except wire.WireError as exc:
        return f"malformed answer: {exc.reason}", []
    if a.version != SHEETS_VERSION:
        return f"malformed answer: unsupported version {a.version}", []
    if a.net != net:
        return f"malformed answer: wrong network {a.net!r}", []
    if a.error:
        return f"refused: {a.error[:200]}", []
    if len(a.sheets) > PULL_MAX_SHEETS:
        return f"malformed answer: {len(a.sheets)} sheets > {PULL_MAX_SHEETS}", []
    if sum(len(s) for s in a.sheets) > PULL_MAX_BYTES:
        return f"malformed answer: over {PULL_MAX_BYTES} bytes of sheets", []
    return "", a.sheets


class RateLimit:
    """At most ``per_peer`` events per peer and ``total`` in all per sliding minute; ``take`` says why not."""

    WINDOW = 60.0

    def __init__(self, per_peer: int, total: int) -> None:
        self.per_peer, self.total = per_peer, total
        self._peer: dict[str, list[float]] = {}
        self._all: list[float] = []

    def take(self, peer: str, now: float) -> str:
        cut = now - self.WINDOW
        self._all = [t for t in self._all if t > cut]
        if len(self._peer) >= MAX_TRACKED_PEERS:
            self._peer = {p: ts for p, ts in self._peer.items() if ts and ts[-1] > cut}
        mine = [t for t in self._peer.get(peer, ()) if t > cut]
        if len(mine) >= self.per_peer:
            return f"rate limited: {self.per_peer} answers a minute per peer"
        if len(self._all) >= self.total:
            return f"rate limited: {self.total} answers a minute in all"
        mine.append(now)
        self._peer[peer] = mine
        self._all.append(now)
        return ""
