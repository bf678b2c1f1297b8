"""Offer gossip: attested offer sheets, their validation, and the protocol.

A node does not gossip one message per deposit. It gossips an **offer sheet**:
one message listing all its current chunks, with a sequence number; a newer
sheet supersedes the older one, so a chunk that was released, spent or
expired is retracted simply by leaving it out (its deposit key is listed in
``retracted`` for one sheet so books can say why).

Wire form (``node.wire``, deterministic MessagePack)::

    SignedSheet(body: bytes, sig: bytes)          # sig = enclave signature over body
    SheetBody(version, net, origin, seq, issued_at, offers, retracted,
              offers_root, quote, binding)

* ``offers_root`` is the Merkle root of the offers' leaf hashes (an offer's
  id is its leaf hash), so one enclave signature covers the whole sheet and a
  single offer can later be proven to belong to it.
* The attestation **travels inside the sheet** (``quote`` + ``binding``):
  sheets are self-contained, with no fetch round trip, at a cost of a few
  hundred bytes (a DCAP quote is ~5 kB, within the size limit). Verification
  is cached per (device signing key, quote hash): each device's quote is
  verified once, and a device whose quote failed is remembered and rejected
  at once afterwards.
* The enclave signs the exact body bytes (``Enclave.sign_offer_sheet``), and
  refuses keys it does not hold or has released, so an offer in a valid sheet
  is a key the attested enclave holds.

Validation (``validate_sheet``) is a pure function in the style of the
consensus specs: every check is labelled ``[REJECT]`` (the sender forwarded
something invalid: its gossipsub score drops) or ``[IGNORE]`` (not useful now,
no penalty).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import msgspec

from node import wire
from node.protocols.base import (
    Command,
    Event,
    GossipReceived,
    Notify,
    Publish,
    Result,
    SetTimer,
    Started,
    TimerFired,
    Validation,
    topic,
)
from node.tee.binding import Binding

SHEET_VERSION = 1
MAX_SHEET_SIZE = 256 * 1024
MAX_OFFERS_PER_SHEET = 1000
MAX_CLOCK_SKEW = 120.0  # seconds a sheet's issued_at may be ahead of our clock
REPUBLISH_INTERVAL = 60.0


class Offer(msgspec.Struct, array_like=True, frozen=True):
    asset: str
    address: str
    pubkey: bytes  # 33-byte compressed deposit key
    amount: int  # smallest units of the asset
    usd_cents: int  # value at ``price`` when the sheet was made
    price: str  # USD per whole unit, decimal string
    price_at: float  # when that price was read
    expiry: float  # unix time after which the offer is void


class SheetBody(msgspec.Struct, array_like=True, frozen=True):
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
    """An offer's id: the tagged hash of its canonical encoding (its Merkle leaf)."""
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
) -> bytes:
    """Encode and sign a sheet. ``sign`` is ``Enclave.sign_offer_sheet``."""
    body = SheetBody(
        SHEET_VERSION, net, origin, seq, now, list(offers), list(retracted), offers_root(offers), quote, binding
    )
    body_bytes = wire.encode(body)
    sig = sign(body_bytes, [o.pubkey for o in offers])
    return wire.encode(SignedSheet(body_bytes, sig))


# ------------------------------------------------------------------ validation
@dataclass
class AttestationCache:
    """Verdicts per (device signing key, quote hash). Failing devices are remembered."""

    verify: Callable[[bytes, Binding, float], "object"]  # (quote, binding, now) -> Verdict
    good: dict[tuple[bytes, bytes], object] = field(default_factory=dict)
    bad: dict[bytes, str] = field(default_factory=dict)  # sign_pub -> reason
    verifications: int = 0
    latest: dict[bytes, object] = field(default_factory=dict)  # sign_pub -> its last good verdict

    def verdict_of(self, sign_pub: bytes):
        """The verdict that made this device trusted (None if never verified here)."""
        return self.latest.get(sign_pub)

    def check(self, quote: bytes, binding: Binding, now: float) -> str | None:
        """None when trusted, else the reason."""
        if binding.sign_pub in self.bad:
            return f"device already refused: {self.bad[binding.sign_pub]}"
        key = (binding.sign_pub, hashlib.sha256(quote + binding.encode()).digest())
        if key in self.good:
            return None
        self.verifications += 1
        verdict = self.verify(quote, binding, now)
        if getattr(verdict, "ok", False):
            self.good[key] = verdict
            self.latest[binding.sign_pub] = verdict
            return None
        reason = f"{getattr(verdict, 'code', 'refused')}: {getattr(verdict, 'reason', '')}"
        self.bad[binding.sign_pub] = reason
        return reason


class AddressCheckCache:
    """Memoises an address check ``(asset, pubkey, address) -> None | reason`` for the addresses that pass.

    Deriving a deposit address from its key is a pure function, and in pure
    Python (embit's bech32) it is by far the largest per-offer cost of
    validating a sheet (~0.15 ms an offer, ~15 ms for a sheet of 100, against
    ~1 ms for everything else). A node republishes mostly the same offers
    sheet after sheet, so each (asset, key, address) is derived once: only
    triples this node has itself checked and found correct are remembered, so
    nothing a peer sends can make a wrong address pass. Failures are not
    cached (they reject the whole sheet anyway). Bounded: the oldest entries
    go first once ``max_entries`` is reached.
    """

    def __init__(self, check: Callable[[str, bytes, str], str | None], max_entries: int = 100_000) -> None:
        self.check = check
        self.max_entries = max_entries
        self._ok: dict[tuple[str, bytes, str], None] = {}
        self.hits = self.misses = 0

    def __call__(self, asset: str, pubkey: bytes, address: str) -> str | None:
        key = (asset, bytes(pubkey), address)
        if key in self._ok:
            self.hits += 1
            return None
        self.misses += 1
        why = self.check(asset, pubkey, address)
        if why is None:
            if len(self._ok) >= self.max_entries:
                del self._ok[next(iter(self._ok))]
            self._ok[key] = None
        return why


def default_attestation_verifier(policy) -> Callable[[bytes, Binding, float], object]:
    from node.tee.binding import verify_attestation

    def verify(quote: bytes, binding: Binding, now: float):
        return verify_attestation(quote, binding, policy=policy, at=datetime.fromtimestamp(now, timezone.utc))

    return verify


def _reject(reason: str) -> Validation:
    return Validation(Result.REJECT, reason)


def _ignore(reason: str) -> Validation:
    return Validation(Result.IGNORE, reason)


class _SheetBodyRawOffers(msgspec.Struct, array_like=True, frozen=True):
    """``SheetBody`` with its offers left as their encoded bytes (decoded, and checked, separately)."""

    version: int
    net: str
    origin: str
    seq: int
    issued_at: float
    offers: msgspec.Raw
    retracted: list[bytes]
    offers_root: bytes
    quote: bytes
    binding: Binding


def decode_sheet(data: bytes) -> tuple[SignedSheet, SheetBody]:
    signed = wire.decode(data, SignedSheet, max_size=MAX_SHEET_SIZE)
    body = wire.decode(signed.body, SheetBody, max_size=MAX_SHEET_SIZE)
    return signed, body


@dataclass(frozen=True)
class CheckedOffers:
    """The offers of a sheet that passed the per-offer checks: decoded, their ids and Merkle root."""

    encoded: bytes  # the offers array exactly as it was in the sheet body
    offers: list[Offer]
    ids: list[bytes]
    root: bytes


class OffersCache:
    """Per origin, the offers array of its last *accepted* sheet, already checked.

    A node republishes its sheet (every minute, and whenever anything changes)
    and most sheets list exactly the offers of the previous one. Every
    per-offer check (key format, no key twice, positive amounts, the address
    derived from the key, the offer ids and their Merkle root) is a pure
    function of the encoded offers array, so when a new sheet from the same
    origin carries byte-for-byte the same array, its decoded offers, ids and
    root are reused instead of recomputed. The comparison is on the exact
    bytes, so nothing a peer sends can make an unchecked offer pass; only
    sheets that passed every check, the signature included, are remembered
    (one entry per origin: a forger cannot displace a genuine entry).
    Bounded by the encoded bytes it holds (16 MiB: ~1,300 origins of 100
    offers); the least recently stored origins go first, and a miss only
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


def _check_offers(encoded: bytes, address_check) -> tuple[Validation | None, CheckedOffers | None]:
    """The per-offer [REJECT] checks of ``validate_sheet`` over the encoded offers array."""
    try:
        offers = wire.decode(encoded, list[Offer], max_size=MAX_SHEET_SIZE)
    except wire.WireError as exc:
        return _reject(f"malformed: offers: {exc.reason}"), None
    # [REJECT] At most MAX_OFFERS_PER_SHEET offers, each well formed, no key twice.
    if len(offers) > MAX_OFFERS_PER_SHEET:
        return _reject(f"too many offers: {len(offers)} > {MAX_OFFERS_PER_SHEET}"), None
    seen: set[bytes] = set()
    for i, o in enumerate(offers):
        if len(o.pubkey) != 33 or o.pubkey[0] not in (2, 3):
            return _reject(f"offer {i}: pubkey is not a compressed secp256k1 key"), None
        if o.pubkey in seen:
            return _reject(f"offer {i}: deposit key listed twice"), None
        seen.add(o.pubkey)
        if o.amount <= 0 or o.usd_cents <= 0:
            return _reject(f"offer {i}: amount and usd_cents must be positive"), None
        if address_check is not None:
            why = address_check(o.asset, o.pubkey, o.address)
            if why:
                return _reject(f"offer {i}: {why}"), None
    ids = offer_ids(offers)
    return None, CheckedOffers(encoded, offers, ids, merkle_root(ids))


def check_sheet(
    data: bytes,
    *,
    net: str,
    now: float,
    latest_seq: Callable[[str], int | None],
    attestations: AttestationCache,
    address_check: Callable[[str, bytes, str], str | None] | None = None,
    offers_cache: OffersCache | None = None,
) -> tuple[Validation, SheetBody | None, list[bytes] | None]:
    """Decide ACCEPT / REJECT / IGNORE for a gossiped sheet (pure but for the caches); with the decoded
    body of an accepted sheet comes its offer ids (in order), so that nothing downstream (the offer
    book) decodes the sheet or hashes its offers again."""
    from node.tee.client import verify_offer_sheet_sig

    # [REJECT] The message is within the size limit.
    if len(data) > MAX_SHEET_SIZE:
        return _reject(f"over size: {len(data)} > {MAX_SHEET_SIZE} bytes"), None, None
    # [REJECT] The message decodes to a canonical SignedSheet and SheetBody.
    try:
        signed = wire.decode(data, SignedSheet, max_size=MAX_SHEET_SIZE)
        raw = wire.decode(signed.body, _SheetBodyRawOffers, max_size=MAX_SHEET_SIZE)
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
    # [REJECT] The offers decode canonically; at most MAX_OFFERS_PER_SHEET, each well formed (its
    # address derived from its key), no key twice (all skipped for the very offers array this
    # origin's last accepted sheet carried: see OffersCache).
    encoded = bytes(raw.offers)
    checked = offers_cache.get(raw.origin, encoded) if offers_cache is not None else None
    if checked is None:
        v, checked = _check_offers(encoded, address_check)
        if v is not None:
            return v, None, None
    # [REJECT] offers_root is the Merkle root of the offers.
    if raw.offers_root != checked.root:
        return _reject("offers_root does not match the offers"), None, None
    # [IGNORE] The sheet is not from the future.
    if raw.issued_at > now + MAX_CLOCK_SKEW:
        return _ignore(f"issued {raw.issued_at - now:.0f} s in the future"), None, None
    # [IGNORE] At least one offer is unexpired, or the sheet retracts something.
    if checked.offers and all(o.expiry <= now for o in checked.offers) and not raw.retracted:
        return _ignore("expired: every offer in the sheet is past its expiry"), None, None
    # [REJECT] The enclave's signature over the body is valid.
    if not verify_offer_sheet_sig(raw.binding.sign_pub, signed.body, signed.sig):
        return _reject("bad signature"), None, None
    # [REJECT] The quote is genuine, an allowed build, and commits to the binding.
    why = attestations.check(raw.quote, raw.binding, now)
    if why:
        return _reject(f"untrusted or forged quote: {why}"), None, None
    if offers_cache is not None:
        offers_cache.put(raw.origin, checked)
    body = SheetBody(raw.version, raw.net, raw.origin, raw.seq, raw.issued_at, list(checked.offers), raw.retracted,
                     raw.offers_root, raw.quote, raw.binding)
    return Validation(Result.ACCEPT), body, checked.ids


def validate_sheet(data: bytes, **kw) -> tuple[Validation, SheetBody | None]:
    """Decide ACCEPT / REJECT / IGNORE for a gossiped sheet (pure but for the caches): ``check_sheet``
    (same keyword arguments: ``net``, ``now``, ``latest_seq``, ``attestations``, and optionally
    ``address_check`` and ``offers_cache``) without the offer ids."""
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


class OffersProtocol:
    """Sans-IO offer gossip: validates sheets, feeds the offer book, republishes ours.

    ``book`` is an ``node.offerbook.OfferBook`` (or anything with ``latest_seq``
    and ``apply_sheet``). ``device_class`` maps a verified binding to the risk
    engine's device class name.
    """

    def __init__(
        self,
        *,
        net: str,
        book,
        attestations: AttestationCache,
        address_check: Callable[[str, bytes, str], str | None] | None = None,
        republish_interval: float = REPUBLISH_INTERVAL,
    ) -> None:
        self.net = net
        self.topic = topic(net, "offers", 1)
        self.topics = [self.topic]
        self.stream_protocols: list[str] = []
        self.book = book
        self.attestations = attestations
        self.address_check = address_check
        self.offers_cache = OffersCache()
        self.republish_interval = republish_interval
        # sheets accepted by ``validate`` and not yet handled, by their exact bytes: ``handle`` takes the
        # decoded body and offer ids from here instead of decoding and hashing the sheet a second time
        self._accepted: dict[bytes, tuple[SheetBody, list[bytes]]] = {}
        self.max_pending = 256  # a sheet evicted here is decoded again in handle: slower, same result
        self.local_peer = ""
        self.own: OwnSheet | None = None
        self.seq = 0
        self.stats = {"accept": 0, "reject": 0, "ignore": 0}
        self.reasons: dict[str, dict[str, int]] = {}  # result -> reason prefix -> count
        #: ``refuse(body) -> reason | None``: sheets of revoked devices/classes (set by the node)
        self.refuse: Callable[[SheetBody], str | None] | None = None

    # -- validation (called by the driver before delivery / forwarding)
    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        if topic_ != self.topic:
            return _ignore(f"not our topic {topic_}")
        v, body, ids = check_sheet(
            data, net=self.net, now=now, latest_seq=self.book.latest_seq, attestations=self.attestations,
            address_check=self.address_check, offers_cache=self.offers_cache,
        )
        # [IGNORE] The device or its class has not been revoked here.
        if body is not None and self.refuse is not None:
            why = self.refuse(body)
            if why:
                v = _ignore(f"revoked: {why}")
        if v.result is Result.ACCEPT and body is not None and ids is not None:
            if len(self._accepted) >= self.max_pending:  # delivered without reaching handle (queue full)
                del self._accepted[next(iter(self._accepted))]
            self._accepted[bytes(data)] = (body, ids)
        self.stats[v.result.value] += 1
        if v.result is not Result.ACCEPT:
            reasons = self.reasons.setdefault(v.result.value, {})
            key = re.split(r"[:\d]", v.reason, maxsplit=1)[0].strip()[:60]  # no numbers: bounded label set
            reasons[key] = reasons.get(key, 0) + 1
        return v

    # -- events
    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, Started):
            self.local_peer = event.local_peer
            return [SetTimer("offers.republish", now + self.republish_interval)]
        if isinstance(event, GossipReceived) and event.topic == self.topic:
            pending = self._accepted.pop(event.data, None)
            if pending is None:  # not validated here (a caller feeding events directly): decode it now
                try:
                    _, body = decode_sheet(event.data)
                except wire.WireError:
                    return []
                ids = offer_ids(body.offers)
            else:
                body, ids = pending
            if body.origin == self.local_peer:
                return []
            added = self.book.apply_sheet(body, now=now, ids=ids)
            return [Notify("offers.sheet", {"origin": body.origin, "seq": body.seq, "offers": added})]
        if isinstance(event, TimerFired) and event.name == "offers.republish":
            cmds: list[Command] = [SetTimer("offers.republish", now + self.republish_interval)]
            if self.own is not None:
                cmds += self._publish(now)
            return cmds
        return []

    # -- application calls (through driver.submit)
    def set_own_sheet(self, own: OwnSheet, now: float) -> list[Command]:
        """Replace what this node offers and publish it at once."""
        self.own = own
        return self._publish(now)

    def _publish(self, now: float) -> list[Command]:
        assert self.own is not None
        if not self.own.offers and not self.own.retracted:
            return []  # nothing to offer or retract: no sheet (the enclave signs only sheets naming its keys)
        self.seq = max(self.seq + 1, int(now * 1000))  # monotonic across restarts
        data = build_sheet(
            net=self.net, origin=self.local_peer, seq=self.seq, now=now, offers=self.own.offers,
            retracted=self.own.retracted, quote=self.own.quote, binding=self.own.binding, sign=self.own.sign,
        )
        self.own.retracted = []  # a retraction rides on one sheet
        return [Publish(self.topic, data)]
