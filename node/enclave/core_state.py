"""The enclave's sealed state and what its core shares with its mixins (``core_peers``, ``core_escrow``): the
limits and key states, the key, journal, share and peer records, and the checks of values the host hands in.
Moved out of ``core.py`` unchanged; ``node.enclave.core`` re-exports every name."""

from __future__ import annotations

import coincurve
import msgspec

from node import wire
from node.crypto import pubkey_of, tagged_hash
from node.attest.binding import Binding
from node.enclave import simformat
from node.enclave.common import Refusal
from node.enclave.contracts import ContractShare, ContractState

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
    forgotten: list[bytes] = []  # ids of contracts this enclave held escrow shares of and let go (never again)

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
