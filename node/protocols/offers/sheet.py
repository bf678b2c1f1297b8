"""Offer sheets: the wire form, offer ids and the Merkle root, addresses derived from keys, building a
sheet for the enclave to sign (see the package docstring)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Callable

import msgspec

from node import wire
from node.attest.binding import Binding
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

