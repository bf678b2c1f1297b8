"""``EnclaveCore``'s peers: the enclaves whose quotes this enclave verified itself (I3), and the escrow check
built on them. A state-less mixin of ``EnclaveCore`` (``core.py``), moved out of it unchanged."""

from __future__ import annotations

from node.enclave.common import Refusal
from node.enclave.core_state import MAX_PEERS, MAX_QUOTE, PeerRecord, _decode_binding


class PeerAttestation:
    """Mixed into ``EnclaveCore``: uses its ``_state``, ``_commit``, ``measurement``, ``debug`` and keys."""

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
