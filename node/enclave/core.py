"""The enclave's trusted logic: keys, the release journal, signing, quotes.

``EnclaveCore`` holds the whole state in memory and seals it (``SealedStore``)
after every change, *before* the operation's result leaves the core. In
particular ``release_key`` marks the key released (with its recipient, context
and the very ciphertext) in sealed storage before returning the ciphertext, so
a crash at any instant leaves the key either held (nothing left) or released
(and the journaled ciphertext is what may have left). A key is never released
twice; ``resend_release`` hands back the *journaled* bytes to the same
recipient and context after a crash, which releases nothing new.

Refusals raise :class:`Refusal` with a stable ``code`` and a human ``reason``.
Private key bytes appear only in the sealed state and in the return value of
``export_to_owner``; reprs of state objects are redacted.
"""

from __future__ import annotations

import coincurve
import msgspec

from node import wire
from node.crypto import DecryptError, ecies_decrypt, ecies_encrypt, pubkey_of, sign_digest, tagged_hash
from node.attest.binding import Binding, keys_root
from node.enclave import simformat
from node.enclave.common import (  # noqa: F401 (re-exported: the host and tests name them here)
    ESCROW_RELEASE_TAG, ESCROW_SPLIT_TAG, MAX_ESCROW_HOLDERS, Refusal, escrow_aad,
)
from node.enclave.contract_holdings import Holdings
from node.enclave.contracts import Contracts, ContractShare, ContractState, SharePayloadV
from node.enclave.sealed import SealedStateError, SealedStore
from node.enclave.sheet import offered_keys

STATE_VERSION = 1
MAX_KEYS_PER_CALL = 10_000
MAX_CONTEXT = 1024
SIGN_DOMAINS = frozenset({"outcome", "rfp", "revocation", "proposal", "release-msg", "approval"})
#: domains only the enclave itself signs in: "release" (release records, made inside a contract release),
#: "contract-terms" (a contract id, signed when the enclave opens the contract) and "escrow-share" (a contract
#: escrow share, signed when the enclave splits a committed key); a host asking is refused
INTERNAL_DOMAINS = frozenset({"release", "contract-terms", "escrow-share"})
OFFER_SHEET_TAG = "keyswitch/offer-sheet/1"
RELEASE_AAD_TAG = b"keyswitch/key-release/1"
MAX_PEERS = 100_000  # attested peer enclaves kept in sealed state
MAX_QUOTE = 64 * 1024  # a peer's quote handed in (hardware evidence with its certificate chain)
MAX_REBUILD_TRIES = 20_000  # k-subsets tried when some shares handed in are bad (C(16, 8) = 12 870)

HELD, RELEASED, RECEIVED, EXPORTED = "held", "released", "received", "exported"
ESCROWED = "escrowed"  # split to escrow holders: released, if ever, only to the beneficiary
SPENDABLE = (HELD, RECEIVED)  # states in which the enclave still controls the key alone


class KeyRecord(msgspec.Struct, array_like=True):
    pub: bytes
    priv: bytes
    state: str
    origin: str  # "generated" | "received"
    recipient: bytes = b""  # ECIES key it was released to
    context: bytes = b""
    ciphertext: bytes = b""  # the journaled release ciphertext
    seq: int = 0  # journal sequence number of the last change

    def __repr__(self) -> str:
        return f"KeyRecord(pub={self.pub.hex()}, state={self.state}, priv=<redacted>)"


class JournalEntry(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    op: str  # "release" | "accept" | "export"
    pub: bytes
    recipient: bytes = b""
    context_hash: bytes = b""


class ShareRecord(msgspec.Struct, array_like=True):
    """A Shamir share of another enclave's deposit key, held in escrow for ``beneficiary``."""

    owner_pub: bytes  # the deposit public key the share belongs to
    index: int
    k: int
    n: int
    y: bytes  # the share value (secret)
    beneficiary: bytes  # the ECIES key of the only enclave the share may be released to
    context: bytes
    state: str = "held"  # held | released
    seq: int = 0

    def __repr__(self) -> str:
        return f"ShareRecord(owner={self.owner_pub.hex()[:16]}, index={self.index}, state={self.state}, y=<redacted>)"


class PeerRecord(msgspec.Struct, array_like=True, frozen=True):
    """An enclave whose quote THIS enclave verified under its own policy (``attest_peer``, I3)."""

    sign_pub: bytes
    enc_pub: bytes
    peer_id: str
    net: str


class State(msgspec.Struct, array_like=True):
    version: int
    device_priv: bytes
    sign_priv: bytes
    enc_priv: bytes
    cert: simformat.DeviceCert
    keys: list[KeyRecord]
    journal: list[JournalEntry]
    seq: int = 0
    shares: list[ShareRecord] = []  # escrow shares held for other enclaves (trailing: old states decode)
    contracts: list[ContractState] = []  # contracts this enclave runs (node.enclave.contracts)
    holding: list[ContractState] = []  # contracts this enclave is an escrow holder of (``Holdings``; me = -1)
    cshares: list[ContractShare] = []  # the escrow shares of those contracts' chunks
    peers: list[PeerRecord] = []  # enclaves whose quotes this enclave verified itself (I3)

    def __repr__(self) -> str:
        return f"State(keys={len(self.keys)}, journal={len(self.journal)}, <redacted>)"


def release_aad(deposit_pub: bytes, context: bytes) -> bytes:
    return RELEASE_AAD_TAG + len(deposit_pub).to_bytes(2, "big") + deposit_pub + context


class SharePayload(msgspec.Struct, array_like=True, frozen=True):
    owner_pub: bytes
    index: int
    k: int
    n: int
    y: bytes
    beneficiary: bytes


def offer_sheet_digest(sheet_bytes: bytes) -> bytes:
    return tagged_hash(OFFER_SHEET_TAG, sheet_bytes)


def _add_moved(moved) -> None:
    if moved is not None:
        st, m = moved
        st.moved = [*st.moved, m]


def _drop_moved(moved) -> None:
    if moved is not None:
        st, m = moved
        st.moved = [x for x in st.moved if x != m]


def _decode_binding(binding_bytes: bytes) -> Binding:
    """A binding handed in by the host (for a quote of ours, or a peer's): decoded and checked, or refused."""
    try:
        binding = wire.decode(binding_bytes, Binding, max_size=1024)
    except wire.WireError as exc:
        raise Refusal("bad-binding", exc.reason) from None
    bad = binding.validate()
    if bad:
        raise Refusal("bad-binding", bad)
    return binding


def _valid_pub(pub: bytes) -> bool:
    if not isinstance(pub, bytes) or len(pub) != 33 or pub[0] not in (2, 3):
        return False
    try:
        coincurve.PublicKey(pub)
    except Exception:
        return False
    return True


def _fresh_state(new_key) -> State:
    device = new_key()
    return State(
        version=STATE_VERSION,
        device_priv=device.secret,
        sign_priv=new_key().secret,
        enc_priv=new_key().secret,
        cert=simformat.certify_device(pubkey_of(device)),
        keys=[],
        journal=[],
    )


class EnclaveCore:
    """The trusted state machine. ``store=None`` keeps state in memory only.

    ``seed`` (memory-only cores, for reproducible simulations) derives every key
    from the seed instead of the OS's randomness: INSECURE, deterministic.
    """

    def __init__(
        self, store: SealedStore | None, *, measurement: str, debug: bool = False, seed: bytes | None = None,
        quote_provider=None,
    ) -> None:
        # quote_provider: a hardware backend's ``quote(report_data64) -> bytes`` (Gramine, configfs-tsm);
        # None = the simulated quote signed by the simulated device key.
        self._quote_provider = quote_provider
        if seed is not None and store is not None:
            raise ValueError("a seeded (deterministic) enclave cannot persist: it would be insecure on disk")
        self._seed = seed
        self._derived = 0
        self._store = store
        self.measurement = bytes.fromhex(measurement)
        if len(self.measurement) != 32:
            raise ValueError("measurement must be 32 bytes hex")
        self.debug = debug
        plain = store.load() if store is not None else None
        if plain is None:
            self._state = _fresh_state(self._new_key)
            self._persist()
        else:
            try:
                self._state = msgspec.msgpack.decode(plain, type=State)
            except msgspec.MsgspecError:
                raise SealedStateError("sealed state authenticates but does not decode") from None
            if self._state.version != STATE_VERSION:
                raise SealedStateError(f"unsupported state version {self._state.version}")
        self._device = coincurve.PrivateKey(self._state.device_priv)
        self._sign = coincurve.PrivateKey(self._state.sign_priv)
        self._enc = coincurve.PrivateKey(self._state.enc_priv)
        self.sign_pub = pubkey_of(self._sign)
        self.enc_pub = pubkey_of(self._enc)
        self.device_pub = pubkey_of(self._device)
        self.device_id = simformat.device_id_of(self.device_pub)
        self._by_pub: dict[bytes, KeyRecord] = {r.pub: r for r in self._state.keys}
        self.contracts = Contracts(self)
        self.holdings = Holdings(self)

    def _new_key(self) -> coincurve.PrivateKey:
        if self._seed is None:
            return coincurve.PrivateKey()
        while True:  # a tagged-hash stream; skip the (negligible) out-of-range values
            self._derived += 1
            secret = tagged_hash("keyswitch/seeded-enclave-key/1", self._seed, self._derived.to_bytes(8, "big"))
            try:
                return coincurve.PrivateKey(secret)
            except Exception:
                continue

    # -- storage -----------------------------------------------------------

    def _persist(self) -> None:
        if self._store is not None:
            self._store.save(msgspec.msgpack.encode(self._state))

    def flush(self) -> None:
        """Finish a save's trailing durable write (the monotonic counter); called once a reply is sent."""
        if self._store is not None:
            self._store.sync_counter()

    def _commit(self, undo) -> None:
        """Seal the current state; on failure undo the in-memory change and refuse."""
        try:
            self._persist()
        except Exception as exc:
            undo()
            raise Refusal("storage-failed", f"could not seal state ({type(exc).__name__})") from None

    def _journal(self, op: str, pub: bytes, recipient: bytes = b"", context: bytes = b"") -> int:
        self._state.seq += 1
        ctx_hash = tagged_hash("keyswitch/journal-context/1", context) if context else b""
        self._state.journal.append(JournalEntry(self._state.seq, op, pub, recipient, ctx_hash))
        return self._state.seq

    def _unjournal(self) -> None:
        self._state.journal.pop()
        self._state.seq -= 1

    @property
    def counter(self) -> int:
        return self._store.counter if self._store is not None else 0

    # -- queries -------------------------------------------------------------

    def info(self) -> dict:
        return {
            "device_id": self.device_id,
            "sign_pub": self.sign_pub,
            "enc_pub": self.enc_pub,
            "measurement": self.measurement.hex(),
            "simulated": self._quote_provider is None,
            "debug": self.debug,
            "device_cert": wire.encode(self._state.cert),
        }

    def list_keys(self) -> list[KeyRecord]:
        return list(self._state.keys)

    def journal(self) -> list[JournalEntry]:
        return list(self._state.journal)

    def held_pubkeys(self) -> list[bytes]:
        return [r.pub for r in self._state.keys if r.state in SPENDABLE]

    def offerable_pubkeys(self) -> list[bytes]:
        """What ``sign_offer_sheets`` would sign an offer for (I4): held keys not committed to an open contract."""
        committed = self.contracts.committed_all()
        return [p for p in self.held_pubkeys() if p not in committed]

    def _record(self, pub: bytes) -> KeyRecord:
        rec = self._by_pub.get(pub)
        if rec is None:
            raise Refusal("unknown-key", f"this enclave does not hold key {pub.hex()[:16]}...")
        return rec

    # -- operations ----------------------------------------------------------

    def generate_keys(self, n: int) -> list[bytes]:
        if not 1 <= n <= MAX_KEYS_PER_CALL:
            raise Refusal("bad-request", f"n must be 1..{MAX_KEYS_PER_CALL}")
        new = []
        for _ in range(n):
            k = self._new_key()
            new.append(KeyRecord(pub=pubkey_of(k), priv=k.secret, state=HELD, origin="generated"))
        before = len(self._state.keys)
        self._state.keys.extend(new)

        def undo() -> None:
            del self._state.keys[before:]

        self._commit(undo)
        for r in new:
            self._by_pub[r.pub] = r
        return [r.pub for r in new]

    def quote(self, binding_bytes: bytes, *, timestamp: int, nonce: bytes = b"") -> bytes:
        binding = _decode_binding(binding_bytes)
        if binding.sign_pub != self.sign_pub or binding.enc_pub != self.enc_pub:
            raise Refusal("foreign-keys", "the binding's sign_pub/enc_pub are not this enclave's keys")
        expected_root = keys_root(self.held_pubkeys())
        if binding.keys_root != expected_root:
            raise Refusal(
                "keys-root-mismatch",
                "the binding's keys_root is not the root of the keys this enclave holds "
                "(use binding.keys_root(held deposit pubkeys))",
            )
        if len(nonce) > simformat.MAX_NONCE:
            raise Refusal("bad-request", f"nonce over {simformat.MAX_NONCE} bytes")
        if not 0 <= timestamp < 1 << 63:
            raise Refusal("bad-request", "timestamp out of range")
        if self._quote_provider is not None:
            # Hardware report data is 64 bytes and holds the binding's hash: no room for a nonce or a time.
            if nonce:
                raise Refusal("nonce-unsupported",
                              "hardware quotes carry only the binding's 64-byte hash; a nonce cannot be included")
            try:
                return bytes(self._quote_provider.quote(binding.report_data()))
            except Exception as exc:
                raise Refusal("quote-failed", f"{getattr(self._quote_provider, 'kind', 'hardware')} quote failed: "
                              f"{getattr(exc, 'reason', None) or exc}") from None
        return simformat.make_quote(
            self._device,
            self._state.cert,
            measurement=self.measurement,
            report_data=binding.report_data(),
            timestamp=timestamp,
            nonce=nonce,
            debug=self.debug,
        )

    def sign_offer_sheets(self, items: list[tuple[bytes, list[bytes]]]) -> list[bytes]:
        """Sign each offer sheet; all-or-nothing: one bad item refuses the batch.

        I4: the enclave reads each body itself (``sheet.offered_keys``: a version-3 sheet, else
        "sheet-unreadable") and checks EVERY key it offers: held, spendable, not committed to an open contract.
        The host's ``pubs`` must be exactly those keys ("keys-mismatch"). A sheet offering no key (a retraction:
        "I offer nothing now") claims nothing and is signed too."""
        sign = self._sign
        by_pub = self._by_pub
        offered = [offered_keys(sheet) for sheet, _ in items]
        committed = self.contracts.committed_all() if any(offered) else {}
        digests = []
        for i, ((sheet, pubs), keys) in enumerate(zip(items, offered)):
            for pub in keys:
                rec = by_pub.get(pub)
                if rec is None:
                    raise Refusal("unknown-key", f"item {i}: this enclave does not hold key {pub.hex()[:16]}...")
                if rec.state not in SPENDABLE:
                    raise Refusal("key-not-held", f"item {i}: key {pub.hex()[:16]}... is {rec.state}")
                cid = committed.get(pub)
                if cid is not None:  # I4: a committed key is not for sale (and would be sold twice)
                    raise Refusal("committed", f"item {i}: key {pub.hex()[:16]}... is committed to open contract "
                                  f"{cid.hex()[:16]}...; it is not offered")
            if sorted(pubs) != sorted(keys):
                raise Refusal("keys-mismatch", f"item {i}: the keys listed ({len(pubs)}) are not the keys the "
                              f"sheet offers ({len(keys)})")
            digests.append(tagged_hash(OFFER_SHEET_TAG, sheet))
        return [sign_digest(sign, d) for d in digests]

    def sign(self, domain: str, digest: bytes) -> bytes:
        if domain in INTERNAL_DOMAINS:
            raise Refusal("domain-not-allowed", f"domain {domain!r} is signed only inside the enclave "
                          "(by a contract release or a contract opening)")
        if domain not in SIGN_DOMAINS:
            raise Refusal("domain-not-allowed", f"domain {domain!r} not in {sorted(SIGN_DOMAINS)}")
        if len(digest) != 32:
            raise Refusal("bad-request", "digest must be 32 bytes")
        return sign_digest(self._sign, tagged_hash("keyswitch/" + domain, digest))

    def release_key(self, pub: bytes, recipient: bytes, context: bytes, *, _moved=None) -> bytes:
        """The raw release (internal: ``Contracts.release`` decides and passes ``_moved``, the contract state
        and the transfer to record in the same sealed write). A key committed to an open contract is released
        only by that contract."""
        rec = self._record(pub)
        if _moved is None and self.contracts.committed_to(pub) is not None:
            raise Refusal("committed", f"key {pub.hex()[:16]}... is committed to a contract; only the contract "
                          "releases it (contract_release)")
        if rec.state == ESCROWED and recipient != rec.recipient:
            raise Refusal("escrowed", f"key {pub.hex()[:16]}... is in escrow for {rec.recipient.hex()[:16]}...; "
                          "it may be released only to that enclave")
        if rec.state not in SPENDABLE and rec.state != ESCROWED:
            who = f" to {rec.recipient.hex()[:16]}..." if rec.recipient else ""
            raise Refusal("already-released" if rec.state == RELEASED else "key-not-held",
                          f"key {pub.hex()[:16]}... is {rec.state}{who}; a key is released at most once")
        if not _valid_pub(recipient):
            raise Refusal("bad-recipient", "recipient must be a valid 33-byte compressed secp256k1 key")
        if len(context) > MAX_CONTEXT:
            raise Refusal("bad-request", f"context over {MAX_CONTEXT} bytes")
        ct = ecies_encrypt(recipient, rec.priv, release_aad(pub, context))
        old = (rec.state, rec.recipient, rec.context, rec.ciphertext, rec.seq)
        rec.state, rec.recipient, rec.context, rec.ciphertext = RELEASED, recipient, context, ct
        rec.seq = self._journal("release", pub, recipient, context)
        _add_moved(_moved)

        def undo() -> None:
            rec.state, rec.recipient, rec.context, rec.ciphertext, rec.seq = old
            self._unjournal()
            _drop_moved(_moved)

        self._commit(undo)  # sealed BEFORE the ciphertext leaves
        return ct

    def resend_release(self, pub: bytes, recipient: bytes, context: bytes) -> bytes:
        """The journaled ciphertext of a past release, to the same recipient and context only."""
        rec = self._record(pub)
        if rec.state != RELEASED:
            raise Refusal("not-released", f"key {pub.hex()[:16]}... is {rec.state}, nothing to resend")
        if rec.recipient != recipient or rec.context != context:
            raise Refusal("already-released", "key was released to another recipient or context; refusing")
        return rec.ciphertext

    def accept_key(self, ciphertext: bytes, context: bytes, expected_pub: bytes, *, _moved=None) -> bytes:
        if not _valid_pub(expected_pub):
            raise Refusal("bad-request", "expected_pub must be a 33-byte compressed secp256k1 key")
        if len(context) > MAX_CONTEXT:
            raise Refusal("bad-request", f"context over {MAX_CONTEXT} bytes")
        try:
            secret = ecies_decrypt(self._enc, ciphertext, release_aad(expected_pub, context))
        except DecryptError as exc:
            raise Refusal("undecryptable", str(exc)) from None
        try:
            got = pubkey_of(coincurve.PrivateKey(secret))
        except Exception:
            raise Refusal("bad-key", "decrypted secret is not a valid secp256k1 private key") from None
        if got != expected_pub:
            raise Refusal("wrong-key", "the released key does not match the expected public key")
        existing = self._by_pub.get(expected_pub)
        if existing is not None:
            raise Refusal("duplicate-key", f"this enclave already knows the key (state {existing.state})")
        rec = KeyRecord(pub=expected_pub, priv=secret, state=RECEIVED, origin="received")
        self._state.keys.append(rec)
        rec.seq = self._journal("accept", expected_pub, b"", context)
        _add_moved(_moved)

        def undo() -> None:
            self._state.keys.pop()
            self._unjournal()
            _drop_moved(_moved)

        self._commit(undo)
        self._by_pub[expected_pub] = rec
        return expected_pub

    def export_to_owner(self, pub: bytes, *, _moved=None) -> bytes:
        """The one place a private key leaves in the clear: to the owner's wallet (also a contract's refund,
        ``_moved`` recording it in the contract's view in the same sealed write)."""
        rec = self._record(pub)
        if _moved is None:
            cid = self.contracts.committed_to(pub)
            if cid is not None:  # I1: only the contract (contract_refund) hands a committed key back
                raise Refusal("committed", f"key {pub.hex()[:16]}... is committed to open contract "
                              f"{cid.hex()[:16]}...; it goes back to its owner only by that contract's refund "
                              "(contract_refund), not by export")
        if rec.state == ESCROWED:
            raise Refusal("escrowed", f"key {pub.hex()[:16]}... is in escrow; not exportable")
        if rec.state == RELEASED:
            raise Refusal("already-released", f"key {pub.hex()[:16]}... was released to a peer; not exportable")
        if rec.state != EXPORTED:
            old = (rec.state, rec.seq)
            rec.state = EXPORTED
            rec.seq = self._journal("export", pub)
            _add_moved(_moved)

            def undo() -> None:
                rec.state, rec.seq = old
                self._unjournal()
                _drop_moved(_moved)

            self._commit(undo)
        return rec.priv

    # -- peers: enclaves whose quotes this enclave verified itself (I3) ---------------------

    def peer_policy(self):
        """The policy THIS enclave verifies peers under (never the host's): the same code (its own
        measurement), the same kind of device (simulated peers only for a simulated enclave, certified by the
        root that certified its own device key), debug peers only for a debug enclave."""
        from node.attest.policy import AttestationPolicy

        simulated = self._quote_provider is None
        return AttestationPolicy(
            allowed_measurements=frozenset({self.measurement.hex()}),
            allow_simulated=simulated,
            allow_debug=self.debug,
            sim_vendor_roots=frozenset({self._state.cert.root_pub.hex()}) if simulated else frozenset(),
        )

    def attest_peer(self, binding_bytes: bytes, quote: bytes, at: int) -> bytes:
        """Verify a peer enclave's ``quote`` for ``binding`` under ``peer_policy`` and remember the enclave
        (its signing and encryption keys) in sealed state. ``at`` (unix seconds) is the host's time, used only
        for the evidence's validity window: the enclave has no trusted clock, and a genuine enclave's older
        quote still proves its keys. Returns the peer's encryption key."""
        from datetime import datetime, timezone

        from node.attest.binding import verify_attestation

        binding = _decode_binding(binding_bytes)
        if not isinstance(quote, bytes) or not 0 < len(quote) <= MAX_QUOTE:
            raise Refusal("bad-request", f"quote must be 1..{MAX_QUOTE} bytes")
        if not 0 <= at < 1 << 40:
            raise Refusal("bad-request", "at (unix seconds) out of range 0..2^40")
        verdict = verify_attestation(quote, binding, policy=self.peer_policy(),
                                     at=datetime.fromtimestamp(at, timezone.utc))
        if not verdict.ok:
            raise Refusal("untrusted-quote", f"peer quote refused under this enclave's policy: {verdict.code}: "
                          f"{verdict.reason}")
        rec = PeerRecord(binding.sign_pub, binding.enc_pub, binding.peer_id, binding.net)
        if rec in self._state.peers:
            return binding.enc_pub
        if len(self._state.peers) >= MAX_PEERS:
            raise Refusal("full", f"at most {MAX_PEERS} attested peers")
        self._state.peers.append(rec)

        def undo() -> None:
            self._state.peers.remove(rec)

        self._commit(undo)
        return binding.enc_pub

    def attested(self, sign_pub: bytes | None, enc_pub: bytes) -> bool:
        """Is (``sign_pub``, ``enc_pub``) an enclave this enclave verified itself (or itself)? ``sign_pub``
        None: any verified enclave with that encryption key (an escrow holder or beneficiary, named by it)."""
        if enc_pub == self.enc_pub and sign_pub in (None, self.sign_pub):
            return True
        return any(p.enc_pub == enc_pub and sign_pub in (None, p.sign_pub) for p in self._state.peers)

    def require_attested(self, holders: list[bytes], beneficiary: bytes | None) -> None:
        """I3 for key escrow: refuse (code "unattested") unless every holder and the beneficiary (None: none
        asked) is an enclave this enclave verified itself; host keys would rebuild the key."""
        named = [*(("holder", h) for h in holders), *([("beneficiary", beneficiary)] if beneficiary else [])]
        for who, key in named:
            if not self.attested(None, key):
                raise Refusal("unattested", f"escrow {who} {key.hex()[:16]}... is not an enclave this enclave "
                              "verified (attest_peer its quote first)")

    # -- escrow (Shamir shares of a deposit key held by other enclaves) ---------------------

    def escrow_split(self, pub: bytes, holders: list[bytes], k: int, beneficiary: bytes, context: bytes
                     ) -> list[bytes]:
        """Split ``pub``'s key into ``len(holders)`` shares, any ``k`` of which rebuild it, each
        encrypted to one holder enclave; only ``beneficiary`` can ever receive them back. The key
        is then ESCROWED: this enclave too releases it only to the beneficiary, and never exports it."""
        from node.enclave import shamir

        rec = self._record(pub)
        if rec.state not in SPENDABLE:
            raise Refusal("key-not-held", f"key {pub.hex()[:16]}... is {rec.state}; only a held key is escrowed")
        cid = self.contracts.committed_to(pub)
        if cid is not None:  # I1: a raw split would hand a committed key to whoever holds k shares
            raise Refusal("committed", f"key {pub.hex()[:16]}... is committed to open contract {cid.hex()[:16]}...; "
                          "a raw escrow split is refused (the contract's own escrow terms split it)")
        if not 2 <= k <= len(holders) <= MAX_ESCROW_HOLDERS:
            raise Refusal("bad-request", f"need 2 <= k <= holders <= {MAX_ESCROW_HOLDERS}")
        if len(set(holders)) != len(holders) or not all(_valid_pub(h) for h in holders) or not _valid_pub(beneficiary):
            raise Refusal("bad-recipient", "holders and beneficiary must be distinct valid 33-byte keys")
        self.require_attested(holders, beneficiary)
        if len(context) > MAX_CONTEXT:
            raise Refusal("bad-request", f"context over {MAX_CONTEXT} bytes")
        shares = shamir.split(rec.priv, k, len(holders))
        out = [ecies_encrypt(h, msgspec.msgpack.encode(SharePayload(pub, x, k, len(holders), y, beneficiary)),
                             escrow_aad(ESCROW_SPLIT_TAG, pub, context))
               for h, (x, y) in zip(holders, shares)]
        old = (rec.state, rec.recipient, rec.context, rec.seq)
        rec.state, rec.recipient, rec.context = ESCROWED, beneficiary, context
        rec.seq = self._journal("escrow", pub, beneficiary, context)

        def undo() -> None:
            rec.state, rec.recipient, rec.context, rec.seq = old
            self._unjournal()

        self._commit(undo)
        return out

    def escrow_accept(self, ciphertext: bytes, owner_pub: bytes, context: bytes) -> int:
        """Hold a share sent by ``owner_pub``'s enclave; returns its index."""
        try:
            plain = ecies_decrypt(self._enc, ciphertext, escrow_aad(ESCROW_SPLIT_TAG, owner_pub, context))
            p = msgspec.msgpack.decode(plain, type=SharePayload)
        except (DecryptError, msgspec.MsgspecError) as exc:
            raise Refusal("undecryptable", f"not a share for this enclave ({type(exc).__name__})") from None
        if p.owner_pub != owner_pub:
            raise Refusal("wrong-key", "the share is of another key")
        if any(s.owner_pub == owner_pub and s.index == p.index for s in self._state.shares):
            raise Refusal("duplicate-share", f"share {p.index} of this key is already held")
        rec = ShareRecord(owner_pub, p.index, p.k, p.n, p.y, p.beneficiary, context)
        self._state.shares.append(rec)
        rec.seq = self._journal("escrow-accept", owner_pub, p.beneficiary, context)

        def undo() -> None:
            self._state.shares.pop()
            self._unjournal()

        self._commit(undo)
        return p.index

    def escrow_release_share(self, owner_pub: bytes, context: bytes) -> bytes:
        """Release the held share of ``owner_pub``'s key, encrypted to its beneficiary only (again
        after a crash: the same share to the same enclave is harmless)."""
        rec = next((s for s in self._state.shares if s.owner_pub == owner_pub and s.context == context), None)
        if rec is None:
            raise Refusal("unknown-share", f"no share of {owner_pub.hex()[:16]}... held for this context")
        ct = ecies_encrypt(rec.beneficiary, msgspec.msgpack.encode(SharePayload(
            owner_pub, rec.index, rec.k, rec.n, rec.y, rec.beneficiary)), escrow_aad(ESCROW_RELEASE_TAG, owner_pub,
                                                                                     context))
        if rec.state != "released":
            old = (rec.state, rec.seq)
            rec.state = "released"
            rec.seq = self._journal("escrow-release", owner_pub, rec.beneficiary, context)

            def undo() -> None:
                rec.state, rec.seq = old
                self._unjournal()

            self._commit(undo)
        return ct

    def escrow_recover(self, owner_pub: bytes, context: bytes, ciphertexts: list[bytes]) -> bytes:
        """Rebuild ``owner_pub``'s key from k released shares addressed to this enclave."""
        if self._by_pub.get(owner_pub) is not None:
            raise Refusal("duplicate-key", "this enclave already knows the key")
        shares: list[tuple[int, bytes]] = []
        k = 0
        for ct in ciphertexts[:MAX_ESCROW_HOLDERS]:
            try:
                p = msgspec.msgpack.decode(
                    ecies_decrypt(self._enc, ct, escrow_aad(ESCROW_RELEASE_TAG, owner_pub, context)), type=SharePayload)
            except (DecryptError, msgspec.MsgspecError):
                raise Refusal("undecryptable", "a share is not addressed to this enclave for this key") from None
            if p.owner_pub != owner_pub or p.beneficiary != self.enc_pub:
                raise Refusal("wrong-key", "a share is of another key or for another enclave")
            k = max(k, p.k)
            shares.append((p.index, p.y))
        return self._keep_rebuilt(owner_pub, context, self._combine(owner_pub, {k}, shares))

    def escrow_rebuild(self, cid: bytes, party: int, index: int, owner_pub: bytes, ciphertexts: list[bytes]) -> bytes:
        """Rebuild the key of a contract's escrowed chunk (``party``, ``index``) from shares its holders released
        to this enclave (the chunk's beneficiary). Shares that do not open here, or name another chunk, are
        skipped; when the rest do not combine, k-subsets are tried (a host may slip in a forged share). The key
        is then held here (received, origin "escrow") for the owner's sweep (``export_to_owner``)."""
        from node.contracts.spec import escrow_context

        if not _valid_pub(owner_pub):
            raise Refusal("bad-request", "owner_pub must be a 33-byte compressed secp256k1 key")
        if self._by_pub.get(owner_pub) is not None:
            raise Refusal("duplicate-key", "this enclave already knows the key")
        context = escrow_context(cid, party, index)
        shares: list[tuple[int, bytes]] = []
        ks: set[int] = set()
        for ct in ciphertexts[:4 * MAX_ESCROW_HOLDERS]:
            try:
                p = msgspec.msgpack.decode(ecies_decrypt(self._enc, ct, escrow_aad(ESCROW_RELEASE_TAG, owner_pub,
                                                                                   context)), type=SharePayloadV)
            except (DecryptError, msgspec.MsgspecError):
                continue
            if (p.cid, p.party, p.index, p.pub, p.beneficiary) == (cid, party, index, owner_pub, self.enc_pub) \
                    and 2 <= p.k <= MAX_ESCROW_HOLDERS:
                ks.add(p.k)
                shares.append((p.x, p.y))
        if not shares:
            raise Refusal("undecryptable", "no share is addressed to this enclave for this contract chunk")
        return self._keep_rebuilt(owner_pub, context, self._combine(owner_pub, ks, shares))

    def _combine(self, owner_pub: bytes, ks: set[int], shares: list[tuple[int, bytes]]) -> bytes:
        """The secret of ``owner_pub`` from ``shares`` (all of them, else k-subsets), or a refusal."""
        import itertools

        from node.enclave import shamir

        def key_of(subset) -> bytes | None:
            try:
                secret = shamir.combine(subset, len(subset))
                return secret if pubkey_of(coincurve.PrivateKey(secret)) == owner_pub else None
            except Exception:
                return None

        distinct = len({x for x, _ in shares})
        for k in sorted(ks):
            if distinct < k:
                raise Refusal("not-enough-shares", f"not enough shares: {distinct} distinct of the {k} needed")
            tries = 0
            for subset in itertools.combinations(shares, k):
                if len({x for x, _ in subset}) < k:
                    continue
                got = key_of(list(subset))
                if got is not None:
                    return got
                tries += 1
                if tries >= MAX_REBUILD_TRIES:
                    break
        raise Refusal("wrong-key", "the shares do not rebuild the expected key")

    def _keep_rebuilt(self, owner_pub: bytes, context: bytes, secret: bytes) -> bytes:
        rec = KeyRecord(pub=owner_pub, priv=secret, state=RECEIVED, origin="escrow")
        self._state.keys.append(rec)
        rec.seq = self._journal("recover", owner_pub, b"", context)

        def undo() -> None:
            self._state.keys.pop()
            self._unjournal()

        self._commit(undo)
        self._by_pub[owner_pub] = rec
        return owner_pub
