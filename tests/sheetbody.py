"""A real offer sheet body (version 3, the bytes ``node.protocols.offers.build_sheet`` has an enclave sign) for
tests that drive ``sign_offer_sheet(s)`` directly: the enclave reads the keys a body offers (I4)."""

from __future__ import annotations

from node.crypto import sign_digest, tagged_hash
from node.protocols.offers import ADDRESSES, Offer, SheetBody, encode_body, offers_root, unoffered_keys
from node.attest.binding import Binding
from node.enclave.core import OFFER_SHEET_TAG

NOW = 1_800_000_000.0
_BINDING = Binding("dev", "12D3KooHost", b"\x02" * 33, b"\x03" * 33)


def sheet_body(offered: list[bytes], *, unoffered: list[bytes] = (), seq: int = 1, origin: str = "12D3KooHost",
               binding: Binding = _BINDING) -> bytes:
    """The body of a sheet offering ``offered`` (BTC-REG chunks at their P2WPKH addresses), listing
    ``unoffered`` as the rest of its key commitment."""
    offers = [Offer("BTC-REG", ADDRESSES("BTC-REG", pk, 0), pk, 50_000 + i, 5000, "100000.00", NOW, NOW + 3600)
              for i, pk in enumerate(offered)]
    return encode_body(SheetBody(3, "dev", origin, seq, NOW, offers, [], offers_root(offers), b"quote", binding,
                                 unoffered_keys(list(offered) + list(unoffered), offers)))


def broken_tee_sign(enc, body: bytes) -> bytes:
    """``enc``'s offer-sheet signature over any ``body``, as an attacker who broke the TEE and extracted its
    signing key makes it: the enclave itself refuses a body that is not a version-3 sheet or that offers a key it
    may not offer (I4), so tests of the receivers' own checks sign what they send this way. ``enc`` is an
    ``InProcessEnclave``."""
    return sign_digest(enc._core._sign, tagged_hash(OFFER_SHEET_TAG, body))
