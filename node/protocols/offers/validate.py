"""Validating a sheet: pure checks labelled [REJECT] / [IGNORE], the attestation cache, the per-device
budget and the cache of checked offer tables (see the package docstring)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import msgspec

from node import wire
from node.protocols.base import (
    Result,
    Validation,
)
from node.attest.binding import Binding, keys_root
from node.wire import U16, U63, Timestamp
from node.protocols.offers.sheet import (
    ADDRESSES, ATTESTATION_RECHECK, AddressDeriver, MAX_CLOCK_SKEW, MAX_OFFERS_PER_SHEET, MAX_OFFER_LIFETIME,
    MAX_ORIGINS_PER_DEVICE, MAX_SHEET_SIZE, MAX_STALE_QUOTES, Offer, OfferTable, SHEET_VERSION, SheetBody,
    SheetWire, SignedSheet, VALIDATION_BUDGET, _Hash, _Net, _PeerId, _QUOTE_TIME_CODES, _Quote, _Retracted,
    _Unoffered, merkle_root, offer_ids,
)


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

