"""The simulated quote format (shared by the enclave that makes quotes and the
verifier in ``node.attest.simquote``).

Layout: ``b"KSSIMQ"`` | format version (1 byte) | canonical msgpack of
:class:`SimQuote` (``node.wire``: one encoding per value, non-canonical input
refused). A quote binds:

* ``measurement``: the enclave code's measurement (``measure.code_measurement``);
* ``report_data``: 64 bytes chosen by the enclave (a ``Binding``'s digest:
  its signing and encryption keys, the node's peer id, the deposit keys' root);
* ``timestamp`` and ``nonce``: the freshness value;
* ``debug``: whether the enclave runs in debug mode;
* a device key certified by a vendor root (``cert``), which signs the body.

The development vendor root's private key derives from the PUBLIC constant
``DEV_VENDOR_SEED``: anyone can make a sim quote that verifies against it.
That is why simulated evidence is accepted only when a policy says so.
"""

from __future__ import annotations

import coincurve
import msgspec

from node import wire
from node.crypto import pubkey_of, sign_digest, tagged_hash

SIM_MAGIC = b"KSSIMQ"
SIM_QUOTE_VERSION = 1
MAX_QUOTE_SIZE = 4096
MAX_NONCE = 64
DEV_VENDOR_SEED = b"keyswitch development vendor root -- PUBLIC CONSTANT, INSECURE, anyone can sign with it"


def dev_vendor_root_key() -> coincurve.PrivateKey:
    return coincurve.PrivateKey(tagged_hash("keyswitch/sim-vendor-root/1", DEV_VENDOR_SEED))


def dev_vendor_root_pubkey() -> bytes:
    """33-byte compressed public key of the development (simulated) vendor root."""
    return pubkey_of(dev_vendor_root_key())


def device_id_of(device_pub: bytes) -> bytes:
    return tagged_hash("keyswitch/sim-device-id/1", device_pub)


class DeviceCert(msgspec.Struct, array_like=True, frozen=True):
    """The vendor root's certificate for a device key."""

    device_pub: bytes
    root_pub: bytes
    sig: bytes  # root over digest()
    version: int = 1

    def digest(self) -> bytes:
        return tagged_hash("keyswitch/sim-device-cert/1", self.version.to_bytes(2, "big"), self.device_pub, self.root_pub)


class QuoteBody(msgspec.Struct, array_like=True, frozen=True):
    version: int
    measurement: bytes  # 32
    report_data: bytes  # 64
    debug: bool
    timestamp: int  # unix seconds, supplied by the host (an enclave has no trusted clock)
    nonce: bytes  # verifier's challenge, may be empty
    cert: DeviceCert

    def digest(self) -> bytes:
        return tagged_hash("keyswitch/sim-quote/1", wire.encode(self))


class SimQuote(msgspec.Struct, array_like=True, frozen=True):
    body: QuoteBody
    sig: bytes  # device key over body.digest()


def certify_device(device_pub: bytes, root: coincurve.PrivateKey | None = None) -> DeviceCert:
    root = dev_vendor_root_key() if root is None else root
    unsigned = DeviceCert(device_pub=device_pub, root_pub=pubkey_of(root), sig=b"")
    return DeviceCert(device_pub=device_pub, root_pub=unsigned.root_pub, sig=sign_digest(root, unsigned.digest()))


def make_quote(
    device_key: coincurve.PrivateKey,
    cert: DeviceCert,
    *,
    measurement: bytes,
    report_data: bytes,
    timestamp: int,
    nonce: bytes = b"",
    debug: bool = False,
) -> bytes:
    body = QuoteBody(
        version=SIM_QUOTE_VERSION,
        measurement=measurement,
        report_data=report_data,
        debug=debug,
        timestamp=timestamp,
        nonce=nonce,
        cert=cert,
    )
    return encode_quote(SimQuote(body=body, sig=sign_digest(device_key, body.digest())))


def encode_quote(q: SimQuote) -> bytes:
    return SIM_MAGIC + bytes([q.body.version]) + wire.encode(q)


def decode_quote(blob: bytes) -> SimQuote:
    """Parse a sim quote; raise ``wire.WireError(reason)`` if malformed (never anything else)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise wire.WireError("not bytes")
    blob = bytes(blob)
    if len(blob) > MAX_QUOTE_SIZE:
        raise wire.WireError(f"over size: {len(blob)} bytes > {MAX_QUOTE_SIZE}")
    if not blob.startswith(SIM_MAGIC):
        raise wire.WireError("not a simulated quote (magic KSSIMQ missing)")
    if len(blob) < len(SIM_MAGIC) + 2:
        raise wire.WireError("truncated")
    version = blob[len(SIM_MAGIC)]
    if version != SIM_QUOTE_VERSION:
        raise wire.WireError(f"unsupported sim quote version {version}")
    q = wire.decode(blob[len(SIM_MAGIC) + 1 :], SimQuote, max_size=MAX_QUOTE_SIZE)
    b = q.body
    if b.version != version:
        raise wire.WireError("body version differs from header version")
    if len(b.measurement) != 32:
        raise wire.WireError("measurement must be 32 bytes")
    if len(b.report_data) != 64:
        raise wire.WireError("report_data must be 64 bytes")
    if len(b.nonce) > MAX_NONCE:
        raise wire.WireError(f"nonce over {MAX_NONCE} bytes")
    if not 0 <= b.timestamp < 1 << 63:
        raise wire.WireError("timestamp out of range")
    if b.cert.version != 1:
        raise wire.WireError(f"unsupported device certificate version {b.cert.version}")
    for name, key in (("device_pub", b.cert.device_pub), ("root_pub", b.cert.root_pub)):
        if len(key) != 33 or key[0] not in (2, 3):
            raise wire.WireError(f"{name} must be a 33-byte compressed secp256k1 key")
    if len(b.cert.sig) != 64 or len(q.sig) != 64:
        raise wire.WireError("signatures must be 64 bytes")
    return q
