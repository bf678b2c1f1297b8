"""The vendor roots of trust, pinned: each PEM file here is checked against its SHA-256 fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).parent


def load_pinned(path: Path, sha256_hex: str, name: str) -> bytes:
    """The DER of the PEM at ``path`` (one of the files here); ``RuntimeError`` if it is not the pinned
    certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)
    if hashlib.sha256(der).hexdigest() != sha256_hex:  # the file was swapped: refuse to trust it
        raise RuntimeError(f"{path} is not the pinned {name}")
    return der
