"""Quotes through Gramine's ``/dev/attestation`` pseudo-files (Gramine's attestation docs).

Inside a Gramine-SGX enclave with ``sgx.remote_attestation = "dcap"``:

* ``attestation_type`` reads ``dcap`` (``none`` when remote attestation is off);
* writing 64 bytes to ``user_report_data`` sets the report data of the next quote;
* reading ``quote`` returns an SGX DCAP quote (v3) over that report data,
  produced by the platform's quoting enclave;
* ``my_target_info`` is this enclave's TARGETINFO, whose first 32 bytes are
  its MRENCLAVE.

The base path is a parameter so tests can point it at a temporary directory
that emulates these files; that exercises the file protocol, not SGX.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BASE = Path("/dev/attestation")
REPORT_DATA_LEN = 64


class GramineAttestationError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def missing_reason(base: Path = DEFAULT_BASE) -> str | None:
    """None when the quote pseudo-files are present, else what is missing."""
    base = Path(base)
    if not (base / "quote").exists():
        return (f"{base / 'quote'} does not exist: not running inside a Gramine-SGX enclave with "
                "sgx.remote_attestation = \"dcap\" (needs SGX hardware, Gramine, and the DCAP quote provider)")
    if not (base / "user_report_data").exists():
        return f"{base / 'user_report_data'} does not exist"
    return None


def read_all(path: Path) -> bytes:
    """The whole of a pseudo-file (attestation devices, configfs attributes), read unbuffered until EOF."""
    with open(path, "rb", buffering=0) as f:
        chunks = []
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


class GramineQuoteProvider:
    """``quote(report_data)`` -> the DCAP quote Gramine returns for those 64 bytes."""

    kind = "gramine"

    def __init__(self, base: Path | str = DEFAULT_BASE) -> None:
        self.base = Path(base)

    def attestation_type(self) -> str | None:
        p = self.base / "attestation_type"
        try:
            return read_all(p).decode(errors="replace").strip()
        except OSError:
            return None

    def quote(self, report_data: bytes) -> bytes:
        report_data = bytes(report_data)
        if len(report_data) != REPORT_DATA_LEN:
            raise ValueError(f"report data must be exactly {REPORT_DATA_LEN} bytes, got {len(report_data)}")
        kind = self.attestation_type()
        if kind is not None and kind != "dcap":
            raise GramineAttestationError(
                f"Gramine attestation type is {kind!r}, not 'dcap': set sgx.remote_attestation = \"dcap\"")
        missing = missing_reason(self.base)
        if missing:
            raise GramineAttestationError(missing)
        try:
            fd = os.open(self.base / "user_report_data", os.O_WRONLY)
            try:
                n = os.write(fd, report_data)
            finally:
                os.close(fd)
            if n != REPORT_DATA_LEN:
                raise GramineAttestationError(f"short write to user_report_data ({n} of {REPORT_DATA_LEN} bytes)")
            quote = read_all(self.base / "quote")
        except OSError as exc:
            raise GramineAttestationError(f"Gramine attestation file I/O failed: {exc.strerror or exc}") from None
        if not quote:
            raise GramineAttestationError(f"{self.base / 'quote'} returned nothing")
        return quote

    def mrenclave(self) -> bytes | None:
        """This enclave's MRENCLAVE from ``my_target_info`` (None when not readable)."""
        try:
            ti = read_all(self.base / "my_target_info")
        except OSError:
            return None
        return ti[:32] if len(ti) >= 32 else None
