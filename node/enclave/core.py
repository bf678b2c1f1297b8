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
from node.attest.binding import keys_root
from node.enclave import simformat
from node.enclave.common import (  # noqa: F401 (re-exported: the host and tests name them here)
    ESCROW_RELEASE_TAG, ESCROW_SPLIT_TAG, MAX_ESCROW_HOLDERS, Refusal, escrow_aad,
)
from node.enclave.contract_holdings import Holdings
from node.enclave.contracts import Contracts
from node.enclave.sealed import SealedStateError, SealedStore
from node.enclave.sheet import offered_keys
from node.enclave.statedelta import DeltaError, Layout
from node.enclave.core_escrow import KeyEscrowOps
from node.enclave.core_peers import PeerAttestation
from node.enclave.core_state import (  # noqa: F401 (re-exported: the host and tests name them here)
    ESCROWED, EXPORTED, HELD, INTERNAL_DOMAINS, JournalEntry, KeyRecord, MAX_CONTEXT, MAX_KEYS_PER_CALL, MAX_PEERS,
    MAX_QUOTE, MAX_REBUILD_TRIES, OFFER_SHEET_TAG, PeerRecord, RECEIVED, RELEASED, RELEASE_AAD_TAG, SIGN_DOMAINS,
    SPENDABLE, STATE_VERSION, SharePayload, ShareRecord, State, _add_moved, _decode_binding, _drop_moved,
    _fresh_state, _valid_pub, offer_sheet_digest, release_aad,
)



def _replayed(plain: bytes, deltas: list[bytes]) -> State:
    """The state a sealed store's chain holds: its last whole state with the deltas after it applied."""
    try:
        state = msgspec.msgpack.decode(plain, type=State)
        if deltas:
            layout = Layout(State)  # a working cut of its own: ``apply`` changes it in place
            work = layout.parts(state)
            for d in deltas:
                layout.apply(work, d)
            state = msgspec.msgpack.decode(layout.join(work), type=State)
    except msgspec.MsgspecError:
        raise SealedStateError("sealed state authenticates but does not decode") from None
    except DeltaError as exc:
        raise SealedStateError(f"sealed state authenticates but a change in it does not apply ({exc})") from None
    return state


class EnclaveCore(PeerAttestation, KeyEscrowOps):
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
        self._layout = Layout(State)  # the state as last sealed, cut in parts: the next delta's base
        chain = store.load_chain() if store is not None else None
        if chain is None:
            self._state = _fresh_state(self._new_key)
            self._persist()
        else:
            self._state = _replayed(*chain)
            if self._state.version != STATE_VERSION:
                raise SealedStateError(f"unsupported state version {self._state.version}")
            self._layout.cut(self._state)
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
        """Seal the state: what changed since the last seal (a delta record), or the whole state when none was
        sealed yet, the store's journal is full or a seal failed since (a snapshot, ``SealedStore._save``)."""
        if self._store is None:
            return
        parts, delta = self._layout.cut(self._state)
        if delta is None:
            self._store.save(self._layout.join(parts))
        else:
            self._store.save_delta(delta, lambda: self._layout.join(parts))

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
