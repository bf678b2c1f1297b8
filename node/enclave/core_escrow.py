"""``EnclaveCore``'s key escrow: Shamir shares of a deposit key held by other enclaves (split, accept, release a
share, recover, rebuild). A state-less mixin of ``EnclaveCore`` (``core.py``), moved out of it unchanged."""

from __future__ import annotations

import coincurve
import msgspec

from node.crypto import DecryptError, ecies_decrypt, ecies_encrypt, pubkey_of
from node.enclave.common import ESCROW_RELEASE_TAG, ESCROW_SPLIT_TAG, MAX_ESCROW_HOLDERS, Refusal, escrow_aad
from node.enclave.contracts import SharePayloadV
from node.enclave.core_state import (
    ESCROWED, KeyRecord, MAX_CONTEXT, MAX_REBUILD_TRIES, RECEIVED, SPENDABLE, SharePayload, ShareRecord, _valid_pub,
)


class KeyEscrowOps:
    """Mixed into ``EnclaveCore``: uses its ``_state``, ``_commit``, ``_journal``, ``_record`` and keys."""

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
