"""Adversaries for the virtual engine: what each one does, and the hook it uses.

Implemented:

* ``spammer``: a node that publishes malformed offer sheets at ``rate`` per
  second, cycling through kinds every honest validator must REJECT: random
  bytes, a SignedSheet whose body does not decode, a well-formed sheet with a
  forged (random) enclave signature, one correctly signed by a key with a
  forged quote, and a sheet for another network. The engine's gossip model forwards only after ACCEPT, so
  a spam message reaches at most the spammer's own mesh peers, each of which
  prunes the spammer after ``PRUNE_AFTER_REJECTS`` rejects (``summary.spam``).
* ``sybil``: a swarm of fresh devices of a cheap class (``sim-card`` by
  default: $10 bond, $50 starting limit) whose offers are genuine and valid
  (real enclaves, real deposits): they are offered like anyone's, and what
  they can get is bounded by the risk engine's per-device / per-owner caps and
  the requests' diversity limits (``summary.exposure.sybil``).

Not yet implemented (a scenario naming one is refused with a clear error, see
``scenario.PLANNED_ADVERSARIES``): ``broken_tee`` (double-spends keys after
releasing them), ``withholder``, ``forger`` (attestation forger),
``slanderer`` (false double-spend reports), ``revoked_class`` (a device class
revoked mid-run). Hooks to add one: a node ``kind`` built in
``Engine._build``, its events scheduled in ``Engine.run`` (``_ev_<kind>``), and
its measurements added to ``Engine.summary``.
"""

from __future__ import annotations

import hashlib

from node import wire
from node.assets import address_for
from node.crypto import pubkey_of, sign_digest
from node.protocols.offers import Offer, SignedSheet, build_sheet
from node.tee.binding import Binding
from node.tee.client import offer_sheet_digest

SPAM_KINDS = ("garbage", "bad-body", "forged-signature", "forged-quote", "wrong-network")


def _priv(engine, n: int):
    import coincurve

    return coincurve.PrivateKey(hashlib.sha256(b"spam/%d/%d" % (engine.seed, n)).digest())


def _key(engine, n: int) -> bytes:
    return pubkey_of(_priv(engine, n))


def spam_message(engine, node) -> bytes:
    """The next malformed sheet from spammer ``node`` (deterministic per run seed)."""
    count = getattr(node, "spam_count", 0)
    node.spam_count = count + 1
    kind = SPAM_KINDS[count % len(SPAM_KINDS)]
    rng = engine.rng
    if kind == "garbage":
        return rng.getrandbits(8 * 300).to_bytes(300, "big")
    if kind == "bad-body":
        return wire.encode(SignedSheet(rng.getrandbits(8 * 64).to_bytes(64, "big"), b"\x00" * 64))
    # well-formed sheets with a valid deposit address, failing at the signature, the quote or the network
    net = engine.net + "-other" if kind == "wrong-network" else engine.net
    priv = _priv(engine, count)
    binding = Binding(net, node.peer_id, pubkey_of(priv), _key(engine, count + 1_000_000))
    pub = _key(engine, count + 2_000_000)
    offer = Offer("BTC-REG", address_for("BTC-REG", pub), pub, 10**8, 10_000_000, "100000", engine.now,
                  engine.now + 3600)
    if kind == "forged-signature":
        def sign(body, keys):
            return rng.getrandbits(8 * 64).to_bytes(64, "big")
    else:  # a correct signature by a key no attested enclave vouches for
        def sign(body, keys):
            return sign_digest(priv, offer_sheet_digest(body))
    return build_sheet(net=net, origin=node.peer_id, seq=count + 1, now=engine.now, offers=[offer], retracted=[],
                       quote=b"KSSIMQ-forged", binding=binding, sign=sign)
