"""Confidential-VM quotes (Intel TDX, AMD SEV-SNP) through Linux's configfs-tsm.

Linux 6.7+ guests expose ``/sys/kernel/config/tsm/report`` (kernel
``Documentation/ABI/testing/configfs-tsm-report``). One request is one entry
directory:

1. ``mkdir <base>/<name>``: the kernel populates it with its attributes;
2. optionally write ``privlevel`` (0..3, SEV-SNP VMPL; at least ``privlevel_floor``);
3. write ``inblob``: up to 64 bytes of report data. Keyswitch writes exactly
   64: ``Binding.report_data()`` (SHA-512 over the binding);
4. read ``outblob``: the report, generated from the inblob and options (a TDX
   DCAP quote v4 with ``provider`` = ``tdx_guest``, or a raw SEV-SNP
   ATTESTATION_REPORT with ``provider`` = ``sev_guest``); ``auxblob`` (if the
   provider emits it: the SNP certificate table, turned into the PEM bundle
   ``verify_evidence`` takes by ``TsmReport.collateral()``) is read too;
5. ``rmdir`` the entry.

``generation`` counts writes to the entry's inblob and options. Another writer
of the same entry between our write and our read would make the outblob
answer *their* request, so the generation is read before our writes, after
them, and after the outblob read: it must have advanced by exactly our writes
and then not moved. On a mismatch (or ``EBUSY``/``EAGAIN`` from the kernel)
the request is retried in a fresh entry, a bounded number of times, then
refused with ``TsmConflict``.

The entry directory's base path is a parameter: tests point it at a temporary
directory whose "kernel" side is emulated (see ``tests/tee/test_backends.py``);
that tests this file protocol, not a confidential VM.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE = Path("/sys/kernel/config/tsm/report")
INBLOB_MAX = 64
PRIVLEVEL_MAX = 3
RETRYABLE_ERRNOS = (errno.EBUSY, errno.EAGAIN, errno.EINTR)
#: the ``provider`` names Linux uses, and the evidence format each returns
PROVIDER_FORMATS = {"tdx_guest": "intel-dcap", "sev_guest": "amd-sev-snp"}

_seq = itertools.count(1)


class TsmError(Exception):
    """A configfs-tsm request failed; ``reason`` says what and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TsmUnavailable(TsmError):
    """No usable configfs-tsm report interface at the base path."""


class TsmConflict(TsmError):
    """The entry's generation moved under us on every attempt (a concurrent writer)."""


@dataclass(frozen=True)
class TsmReport:
    outblob: bytes
    provider: str
    generation: int
    auxblob: bytes = b""
    attempts: int = 1

    @property
    def format(self) -> str:
        """The evidence format the provider returns (``unknown`` for a provider Keyswitch does not know)."""
        return PROVIDER_FORMATS.get(self.provider, "unknown")

    def collateral(self) -> bytes | None:
        """What ``verify_evidence`` needs beside the outblob, where the auxblob carries it (SEV-SNP)."""
        if self.provider == "sev_guest" and self.auxblob:
            return snp_collateral(self.auxblob)
        return None


class FileOps:
    """The file operations on the configfs tree (a seam: tests emulate the kernel side)."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)  # configfs: removes the entry and its attributes

    def read(self, path: Path) -> bytes:
        from node.enclave.hw.gramine_attestation import read_all

        return read_all(path)

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb", buffering=0) as f:  # one write(2): configfs attributes take a whole value
            n = f.write(data)
            if n != len(data):
                raise OSError(errno.EIO, f"short write to {path} ({n} of {len(data)} bytes)")


def missing_reason(base: Path = DEFAULT_BASE) -> str | None:
    """None when ``base`` looks like a usable configfs-tsm report directory, else what is missing."""
    base = Path(base)
    if not base.is_dir():
        return (f"{base} does not exist: not a confidential VM with configfs-tsm (needs Linux >= 6.7 in an "
                "Intel TDX or AMD SEV-SNP guest, configfs mounted at /sys/kernel/config)")
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} exists but is not writable by this user (uid {os.getuid()}): run as root or grant access"
    return None


class ConfigfsTsm:
    """Quotes through configfs-tsm. ``quote(report_data)`` returns the outblob."""

    kind = "configfs-tsm"

    def __init__(self, base: Path | str = DEFAULT_BASE, *, privlevel: int | None = None, retries: int = 3,
                 ops: FileOps | None = None, entry_prefix: str = "keyswitch") -> None:
        if privlevel is not None and not 0 <= privlevel <= PRIVLEVEL_MAX:
            raise ValueError(f"privlevel must be 0..{PRIVLEVEL_MAX}")
        if retries < 1:
            raise ValueError("retries must be >= 1")
        self.base = Path(base)
        self.privlevel = privlevel
        self.retries = retries
        self.ops = ops or FileOps()
        self.entry_prefix = entry_prefix

    def _entry_name(self) -> str:
        return f"{self.entry_prefix}-{os.getpid()}-{next(_seq)}-{secrets.token_hex(4)}"

    def _generation(self, entry: Path) -> int:
        raw = self.ops.read(entry / "generation").strip()
        try:
            return int(raw)
        except ValueError:
            raise TsmError(f"{entry / 'generation'}: not a number ({raw[:32]!r})") from None

    def report(self, report_data: bytes) -> TsmReport:
        """One report over ``report_data`` (exactly 64 bytes). Raises ``TsmError``."""
        report_data = bytes(report_data)
        if len(report_data) != INBLOB_MAX:
            raise ValueError(f"report data must be exactly {INBLOB_MAX} bytes, got {len(report_data)}")
        if not Path(self.base).is_dir():
            raise TsmUnavailable(missing_reason(self.base) or f"{self.base} is not a directory")
        last = ""
        for attempt in range(1, self.retries + 1):
            entry = self.base / self._entry_name()
            try:
                self.ops.mkdir(entry)
            except FileExistsError:
                last = f"entry {entry.name} already exists"
                continue
            except OSError as exc:
                raise TsmUnavailable(f"cannot create {entry}: {exc.strerror or exc}") from None
            try:
                got = self._attempt(entry, report_data, attempt)
            except OSError as exc:
                if exc.errno in RETRYABLE_ERRNOS:
                    last = f"{exc.strerror or exc} (errno {exc.errno})"
                    continue
                raise TsmError(f"configfs-tsm request in {entry} failed: {exc.strerror or exc}") from None
            finally:
                try:
                    self.ops.rmdir(entry)
                except OSError:
                    pass  # best effort: a leftover entry holds only our report, and is harmless
            if isinstance(got, TsmReport):
                return got
            last = got
        raise TsmConflict(f"no consistent report after {self.retries} attempts: {last}")

    def _attempt(self, entry: Path, report_data: bytes, attempt: int) -> TsmReport | str:
        g0 = self._generation(entry)
        writes = 0
        if self.privlevel is not None:
            self.ops.write(entry / "privlevel", str(self.privlevel).encode())
            writes += 1
        self.ops.write(entry / "inblob", report_data)
        writes += 1
        g1 = self._generation(entry)
        if g1 != g0 + writes:
            return f"generation went {g0} -> {g1} over our {writes} write(s): another writer in the entry"
        outblob = self.ops.read(entry / "outblob")
        g2 = self._generation(entry)
        if g2 != g1:
            return f"generation moved {g1} -> {g2} while reading outblob: the report may answer another request"
        if not outblob:
            raise TsmError(f"{entry / 'outblob'} is empty")
        provider = self.ops.read(entry / "provider").decode(errors="replace").strip()
        aux = b""
        try:
            aux = self.ops.read(entry / "auxblob")
        except OSError:
            pass  # optional: not every provider emits it
        return TsmReport(outblob=outblob, provider=provider, generation=g2, auxblob=aux, attempts=attempt)

    def quote(self, report_data: bytes) -> bytes:
        return self.report(report_data).outblob


#: SEV-SNP certificate table GUIDs (AMD GHCB spec; the table the sev_guest auxblob carries)
SNP_CERT_GUIDS = {
    "vcek": "63da758d-e664-4564-adc5-f4b93be8accd",
    "vlek": "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
    "ask": "4ab7b379-bbac-4fe4-a02f-05aef327c782",
    "ark": "c0b406a4-a803-4952-9743-3fb6014cd0ae",
}


def snp_certs_from_auxblob(aux: bytes) -> dict[str, bytes]:
    """Parse an SEV-SNP certificate table: entries of GUID (16) | offset (u32 LE) | length (u32 LE),
    ended by an all-zero entry; offsets from the table's start. Returns {name: DER} for known GUIDs
    (GUIDs accepted in either byte order). Raises ``TsmError`` on a malformed table."""
    import uuid

    names = {}
    for name, g in SNP_CERT_GUIDS.items():
        u = uuid.UUID(g)
        names[u.bytes_le] = name
        names[u.bytes] = name
    out: dict[str, bytes] = {}
    pos = 0
    while True:
        if pos + 24 > len(aux):
            raise TsmError("SNP certificate table: no terminating all-zero entry")
        guid, off, length = aux[pos:pos + 16], *struct.unpack_from("<II", aux, pos + 16)
        if guid == bytes(16) and off == 0 and length == 0:
            return out
        if off + length > len(aux) or length == 0:
            raise TsmError(f"SNP certificate table: entry at {pos} points outside the blob")
        if guid in names:
            out[names[guid]] = bytes(aux[off:off + length])
        pos += 24


def snp_collateral(aux: bytes) -> bytes | None:
    """The auxblob's certificates as the PEM bundle ``verify_evidence`` takes for SEV-SNP
    (the VCEK or VLEK first, then ASK and ARK), or None when it holds no VCEK/VLEK."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = snp_certs_from_auxblob(aux)
    leaf = certs.get("vcek") or certs.get("vlek")
    if leaf is None:
        return None
    import warnings

    pem = b""
    for der in [leaf] + [certs[k] for k in ("ask", "ark") if k in certs]:
        try:
            with warnings.catch_warnings():  # AMD's VCEK has serial number 0 (see evidence/snp.py)
                warnings.simplefilter("ignore")
                pem += x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        except ValueError as exc:
            raise TsmError(f"SNP certificate table holds a certificate that does not parse: {exc}") from None
    return pem


def remove_stale_entries(base: Path = DEFAULT_BASE, prefix: str = "keyswitch", ops: FileOps | None = None) -> int:
    """Remove entries this program left behind (e.g. after a crash); returns how many."""
    ops = ops or FileOps()
    n = 0
    for p in Path(base).glob(prefix + "-*"):
        try:
            ops.rmdir(p)
            n += 1
        except OSError:
            pass
    return n


__all__ = ["ConfigfsTsm", "TsmReport", "TsmError", "TsmUnavailable", "TsmConflict", "FileOps", "missing_reason",
           "DEFAULT_BASE", "PROVIDER_FORMATS", "remove_stale_entries", "snp_certs_from_auxblob",
           "snp_collateral"]
