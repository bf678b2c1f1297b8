"""``OffersProtocol``: the sans-IO offer gossip, re-announcement and the pull on connect."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

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
from node.attest.binding import Binding
from node.protocols.offers.pull import (
    MAX_TRACKED_PEERS, PULL_AGAIN, PULL_ANSWERS_PER_MINUTE, PULL_ANSWERS_PER_MINUTE_TOTAL, PULL_MAX_BYTES,
    PULL_MAX_SHEETS, PULL_TIMEOUT, RateLimit, SHEETS_VERSION, SheetStore, SheetsAnswer, SheetsAsk, answer_pull,
    read_answer, sheets_protocol,
)
from node.protocols.offers.sheet import (
    ADDRESSES, AddressDeriver, MAX_OFFER_LIFETIME, MAX_ORIGINS_PER_DEVICE, Offer, REPUBLISH_INTERVAL, SheetBody,
    VALIDATION_BUDGET, build_sheet, offer_ids,
)
from node.protocols.offers.validate import (
    AttestationCache, DeviceBudget, OffersCache, _ignore, check_sheet, decode_sheet, device_id_of,
)


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

