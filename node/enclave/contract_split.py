"""Key escrow under a contract inside the enclave, the owner's side (``node.enclave.contracts``, "Key escrow under
a contract" in its docstring): ``Contracts.escrow_split``, our escrowed chunks' keys split into Shamir shares, one per
holder, each encrypted to it and signed by us, deterministically (``_prf``)."""

from __future__ import annotations

import msgspec

from node.enclave.common import ESCROW_SPLIT_TAG, escrow_aad
from node.contracts.spec import escrow_context
from node.enclave.contract_records import SharePayloadV, SplitShare, share_digest


class EscrowSplit:
    """The owner's escrow split of ``Contracts`` (a mixin: the contract book and its helpers are there)."""

    # -- key escrow: the owner's split -------------------------------------------------------
    def escrow_split(self, cid: bytes) -> list[SplitShare]:
        """The shares of our escrowed chunks that have not moved, one per (chunk, holder), each encrypted to
        its holder and signed by us. Deterministic per (key, contract, chunk): asking again (after a crash)
        gives the holders the same shares. Changes no state: the contract keeps releasing the keys."""
        from node.crypto import ecies_encrypt, sign_digest, tagged_hash
        from node.enclave import shamir

        st, spec = self._get(cid)
        term = next((t for t in spec.escrows if t.party == st.me), None)
        if term is None:
            return []
        self.core.require_attested([h.enc_pub for h in term.holders], term.beneficiary)  # I3
        moved = {m.index for m in st.moved if m.giver == st.me}
        out = []
        for i in spec.escrowed_chunks(term):
            if i in moved:
                continue
            pub = spec.parties[st.me].chunks[i].pubkey
            rec = self.core._record(pub)
            if rec.state not in ("held", "received"):
                continue  # it left the enclave (e.g. refunded): nothing to escrow
            ctx = escrow_context(cid, st.me, i)
            n = len(term.holders)
            prf = _prf(rec.priv, ctx)
            for h, (x, y) in zip(term.holders, shamir.split(rec.priv, term.k, n, randbelow=prf)):
                plain = msgspec.msgpack.encode(SharePayloadV(cid, st.me, i, pub, x, term.k, n, y, term.beneficiary))
                ct = ecies_encrypt(h.enc_pub, plain, escrow_aad(ESCROW_SPLIT_TAG, pub, ctx))
                sig = sign_digest(self.core._sign, tagged_hash("keyswitch/escrow-share", share_digest(
                    ctx, h.enc_pub, ct)))
                out.append(SplitShare(st.me, i, h.enc_pub, ct, sig))
        return out


def _prf(secret: bytes, ctx: bytes):
    """``randbelow`` for a deterministic split: a tagged-hash stream keyed by the secret, bound to ``ctx``."""
    from node.crypto import tagged_hash
    from node.enclave.shamir import N

    counter = [0]

    def randbelow(bound: int) -> int:
        assert bound == N
        while True:
            counter[0] += 1
            v = int.from_bytes(tagged_hash("keyswitch/escrow-poly/1", secret, ctx, counter[0].to_bytes(4, "big")),
                               "big")
            if v < N:
                return v

    return randbelow
