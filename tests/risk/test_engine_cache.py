"""RiskEngine reuses its candidate table, the limits it derives and allocations: the answers are those of
computing everything afresh, through book changes, exposure, reputation, time and revocations."""

from __future__ import annotations

from node.stores.offerbook import OfferBook
from node.protocols.offers import Offer, SheetBody, offers_root
from node.risk.allocate import Limits
from node.risk.engine import RiskEngine
from node.risk.reputation import Action
from node.attest.binding import Binding

NET = "testnet"
NOW = 1_000.0
CLASSES = ["sim", "knox", "sgx"]


def key33(i: int) -> bytes:
    return bytes([2]) + i.to_bytes(32, "big")


def body(o: int, seq: int = 1, per: int = 8, ttl: float = 3_600.0, bump: int = 0) -> SheetBody:
    offers = [Offer("BTC-REG", f"addr{o}-{i}", key33(1000 * o + i), 10_000, 2_500 + 700 * ((o + i + bump) % 9),
                    "50000", NOW, NOW + ttl + 60 * i) for i in range(per)]
    return SheetBody(1, NET, f"origin{o}", seq, NOW, offers, [], offers_root(offers), b"q",
                     Binding(NET, f"origin{o}", key33(900_000 + o), key33(800_000 + o)))


class CountingBook(OfferBook):
    """An OfferBook with a ``version`` bumped when its rows change (as the virtual engine's)."""

    version = 0

    def apply_sheet(self, body, *, now):
        self.version += 1
        return super().apply_sheet(body, now=now)

    def drop_device(self, device_id):
        self.version += 1
        return super().drop_device(device_id)


def klass(body) -> str:
    return CLASSES[int(body.origin[6:]) % 3]


def engines() -> tuple[RiskEngine, RiskEngine]:
    out = []
    for book in (CountingBook(None, device_class=klass), OfferBook(None, device_class=klass)):
        for o in range(12):
            book.apply_sheet(body(o), now=NOW)
        out.append(RiskEngine(book, limits=Limits(4, 0.25, 0.5), seed=7))
    return out[0], out[1]


def same(a: RiskEngine, b: RiskEngine, now: float) -> None:
    for cents in (3_000, 20_000, 55_555, 200_000):
        for seed in (1, 2):
            x, y = a.choose("BTC-REG", cents, now, seed=seed), b.choose("BTC-REG", cents, now, seed=seed)
            assert x.allocation == y.allocation
            assert [c.offer_id for c in x.offers] == [c.offer_id for c in y.offers]


def test_cached_answers_equal_fresh_ones_through_every_kind_of_change():
    cached, fresh = engines()
    same(cached, fresh, NOW)
    table = cached._tables["BTC-REG"][4]
    same(cached, fresh, NOW + 1)
    assert cached._tables["BTC-REG"][4] is table  # nothing changed: the table was reused
    # exposure held on some chosen offers
    held = cached.choose("BTC-REG", 30_000, NOW, seed=3).offers
    assert held
    for e in (cached, fresh):
        e.hold(held)
    same(cached, fresh, NOW + 2)
    # reputation moves (non-zero scores decay with time)
    dev = held[0].device_id
    for e in (cached, fresh):
        e.reputation.apply(dev, Action.CLAIMED, NOW + 3)
    same(cached, fresh, NOW + 3)
    same(cached, fresh, NOW + 50_000)
    # a new sheet changes an origin's offers; a device dropped
    for e in (cached, fresh):
        e.book.apply_sheet(body(4, seq=2, bump=3), now=NOW + 4)
        e.book.drop_device(held[-1].device_id)
    same(cached, fresh, NOW + 4)
    # offers expire one by one (no book change)
    same(cached, fresh, NOW + 3_600 + 200)
    # a class revoked; exposure released
    for e in (cached, fresh):
        e.caps.classes.revoke("knox", "broken")
    same(cached, fresh, NOW + 3_700)
    for e in (cached, fresh):
        e.release(held)
    same(cached, fresh, NOW + 3_700)


def test_rooms_are_the_headrooms():
    cached, _ = engines()
    caps = cached.caps
    cands = cached.book.candidates("BTC-REG", now=NOW)
    cached.choose("BTC-REG", 10_000, NOW)  # observes every device
    cached.hold(cands[:5])
    for _ in range(2):  # below the acceptance threshold: no room at all
        cached.reputation.apply(cands[0].device_id, Action.WITHHELD, NOW)
    devs = list(dict.fromkeys((c.device_id, c.owner_id, c.device_class) for c in cands))
    rooms, owner_rooms = caps.rooms(devs, sorted({o for _, o, _ in devs}), NOW + 10)
    assert rooms == [caps.headroom(d, o, c, NOW + 10)[0] for d, o, c in devs]
    assert 0 in rooms and max(rooms) > 0
    assert owner_rooms == [max(0, caps.owner_limit(o, NOW + 10, "sim") - caps.exposure.by_owner.get(o, 0))
                           for o in sorted({o for _, o, _ in devs})]
