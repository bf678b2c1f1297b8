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
* ``forger``: extra nodes publishing well-formed offer sheets (valid deposit
  addresses) whose attestation is forged: a quote no vendor root signed, or
  an enclave signature by no attested key (the spammer's two forged kinds,
  ``FORGER_KINDS``). ``validate_sheet`` REJECTs them at every full node, so
  they are never stored nor forwarded (``summary.adversaries.forger``).
* ``slanderer``: offering full nodes (real enclaves, real deposits, answering
  requests like anyone) that also gossip, at ``rate`` per second each, an
  ``OutcomeReport`` signed by their own enclave claiming that a random honest
  device double-spent one of its deposits (its real address, an invented
  txid). Every full node runs ``OutcomesProtocol`` with
  ``node.app.stack.ledger_check`` on the in-process ``DevLedger``: the deposit
  still holds its funds, the report is REFUTED, the slanderer is charged
  ``Action.SLANDER`` and the subject untouched (``summary.adversaries.slanderer``).
* ``withholder``: offering full nodes that never release the keys of their
  chosen chunks. **Simplified contract layer**: there is no key-release
  round in the simulator (``engine.py``); when a held contract "completes"
  after ``requests.contract_seconds`` the client applies ``Action.WITHHELD``
  to a withholder (its own observation) instead of ``CLAIMED``, and gossips
  a ``withheld`` report signed by its enclave, weighed by everyone else by the
  client's standing (bare reports cannot sink a device below 0 there).
* ``broken_tee``: offering full nodes whose enclave leaks deposit keys. When
  a contract holding one of its chunks completes, the device spends that
  chunk's deposit on the ``DevLedger`` (the key is exported from its
  ``InProcessEnclave``, as a broken TEE would let its owner do) before the
  client's sweep; the client then gossips a ``double-spent`` report naming
  that spend. Every full node checks it on the ledger (CONFIRMED), marks the
  device a cheater and drops its offers; ``summary.adversaries.broken_tee``
  gives the time from the double spend to each full node isolating it. Same
  simplification: no real release round, and the client's loss is the value
  of the chunks it held on the device (bounded by its cap on that device).
* ``revoked_class``: at ``at`` simulated seconds a configured signer (a peer
  key every full node lists in its ``TrustConfig.signers`` and has opted into,
  ``accept_signed = True``) gossips a signed ``RevocationNotice`` for
  ``device_class``. Every full node runs ``RevocationProtocol``: its class
  registry revokes the class (cap 0 at once), its book drops the class's
  offers, and ``OffersProtocol.refuse`` ignores later sheets from it (as
  ``node.app.stack.make_revocations`` sets up). Contracts already held on the
  class run out with ``contract_seconds`` (no early unwinding in the sim).

With ``requests.contracts = "real"`` the withholder and the broken TEE are hosts driven as attackers
around the real release code instead (``simulations.contracts``): the withholder's host drops its releases,
the broken TEE runs an enclave build whose double-release guard is off and sells a chunk twice.

Hooks to add one: a node ``kind`` or role built in ``Engine._build``, its
events scheduled in ``Engine.run`` (``_ev_<kind>``), and its measurements added
to ``Engine.summary`` under ``adversaries``.
"""

from __future__ import annotations

import hashlib

from node import wire
from node.assets import address_for
from node.crypto import pubkey_of, sign_digest
from node.protocols.offers import Offer, SignedSheet, build_sheet
from node.attest.binding import Binding
from node.tee.client import offer_sheet_digest

SPAM_KINDS = ("garbage", "bad-body", "forged-signature", "forged-quote", "wrong-network")


def _priv(engine, n: int):
    import coincurve

    return coincurve.PrivateKey(hashlib.sha256(b"spam/%d/%d" % (engine.seed, n)).digest())


def _key(engine, n: int) -> bytes:
    return pubkey_of(_priv(engine, n))


def _spam_keys(engine, count: int) -> tuple:
    """The keys and deposit address of a spammer's ``count``-th sheet: the same for every spammer of a run,
    so derived once per count (kept for the last 20,000 counts; spammers advance at about the same pace)."""
    memo = engine.__dict__.setdefault("_spam_keys", {})
    hit = memo.get(count)
    if hit is None:
        priv = _priv(engine, count)
        pub = _key(engine, count + 2_000_000)
        hit = memo[count] = (priv, pubkey_of(priv), _key(engine, count + 1_000_000), pub, address_for("BTC-REG", pub))
        while len(memo) > 20_000:
            memo.pop(next(iter(memo)))
    return hit


def skip_spam(engine, node) -> None:
    """What ``spam_message`` does to the run's state (its count and its draws from the run's RNG) without
    building the message: for a spammer no one hears (its mesh peers pruned it)."""
    count = getattr(node, "spam_count", 0)
    node.spam_count = count + 1
    kind = SPAM_KINDS[count % len(SPAM_KINDS)]
    bits = {"garbage": 8 * 300, "bad-body": 8 * 64, "forged-signature": 8 * 64}.get(kind)
    if bits:
        engine.rng.getrandbits(bits)


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
    priv, sign_pub, enc_pub, pub, address = _spam_keys(engine, count)
    binding = Binding(net, node.peer_id, sign_pub, enc_pub)
    offer = Offer("BTC-REG", address, pub, 10**8, 10_000_000, "100000", engine.now, engine.now + 3600)
    if kind == "forged-signature":
        def sign(body, keys):
            return rng.getrandbits(8 * 64).to_bytes(64, "big")
    else:  # a correct signature by a key no attested enclave vouches for
        def sign(body, keys):
            return sign_digest(priv, offer_sheet_digest(body))
    return build_sheet(net=net, origin=node.peer_id, seq=count + 1, now=engine.now, offers=[offer], retracted=[],
                       quote=b"KSSIMQ-forged", binding=binding, sign=sign)


#: what a forger publishes: well-formed sheets whose attestation does not hold
FORGER_KINDS = ("forged-quote", "forged-signature")


def forged_sheet(engine, node) -> bytes:
    """The next forged sheet from forger ``node``: alternately a forged quote and a forged signature."""
    count = getattr(node, "forge_count", 0)
    node.forge_count = count + 1
    kind = FORGER_KINDS[count % len(FORGER_KINDS)]
    # reuse the spammer's builder at the position of that kind in its cycle (deterministic per run seed)
    node.spam_count = count * len(SPAM_KINDS) + SPAM_KINDS.index(kind)
    return spam_message(engine, node)


def slander_report(engine, node, subject_node) -> bytes:
    """A false double-spent report by ``node``'s enclave against ``subject_node``'s device: the address is one
    of the subject's real (unspent) deposits, the txid invented."""
    from node.protocols.outcomes import REPORT_VERSION, OutcomeReport, make_report

    d = engine.rng.choice(subject_node.deposits)
    txid = engine.rng.getrandbits(256).to_bytes(32, "big").hex()
    r = OutcomeReport(REPORT_VERSION, engine.net, engine.rng.getrandbits(256).to_bytes(32, "big"),
                      node.enclave.info().sign_pub, subject_node.device_id, "double-spent", d.asset, d.address,
                      txid, engine.now)
    return make_report(r, node.enclave.sign)


def outcome_report(engine, client, subject: bytes, outcome: str, contract_id: bytes, asset: str = "",
                   address: str = "", txid: str = "", release: bytes = b"") -> bytes:
    """The client's own report on a device after a (simplified) contract, signed by the client's enclave."""
    from node.protocols.outcomes import REPORT_VERSION, OutcomeReport, make_report

    r = OutcomeReport(REPORT_VERSION, engine.net, contract_id, client.enclave.info().sign_pub, subject, outcome,
                      asset, address, txid, engine.now, release)
    return make_report(r, client.enclave.sign)


def release_record(engine, giver, receiver, deposit_pub: bytes, contract_id: bytes) -> bytes:
    """The signed release record of ``deposit_pub`` to ``receiver``'s enclave, as ``giver``'s enclave signs it
    in a contract's release round (``node.enclave.contracts`` ``_record``). Simplified contract layer: no
    round runs, so the record is signed here with the giver's simulated enclave key (ciphertext left empty)."""
    from node import wire
    from node.contracts.spec import RELEASE_KIND, RELEASE_VERSION, ReleaseBody
    from node.crypto import sign_digest, tagged_hash

    core = giver.enclave._core
    body = wire.encode(ReleaseBody(contract_id, 0, deposit_pub, receiver.enclave.info().enc_pub, b""))
    digest = wire.signing_digest(RELEASE_VERSION, engine.net, RELEASE_KIND, body)
    sig = sign_digest(core._sign, tagged_hash("keyswitch/release", digest))
    return wire.encode(wire.Signed(RELEASE_VERSION, engine.net, RELEASE_KIND, body, core.sign_pub, sig))


def double_spend(engine, node, address: str) -> str | None:
    """A broken TEE's owner spends the deposit at ``address`` (its key exported from the enclave). The txid, or
    None if that deposit is already gone."""
    from node.assets import address_for
    from node.crypto import pubkey_of

    dep = next((d for d in node.deposits if d.address == address), None)
    if dep is None or engine.ledger.balance(dep.asset, dep.address).confirmed <= 0:
        return None
    key = node.enclave.export_to_owner(dep.pubkey)
    # the enclave no longer holds that key (it would refuse to sign a sheet offering it): stop offering it
    node.deposits = [d for d in node.deposits if d.address != address]
    thief = address_for(dep.asset, pubkey_of(_priv(engine, 3_000_000 + node.idx)))
    return engine.ledger.sweep(dep.asset, key, thief)
