"""The enclave process: serve framed requests on stdin/stdout until EOF.

Only the framed protocol goes to the real stdout; anything printed by accident
goes to stderr instead (stdout is re-pointed at stderr before serving).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
from pathlib import Path
from typing import BinaryIO

from node.enclave.core import EnclaveCore
from node.enclave.measure import code_measurement
from node.enclave.messages import MAX_FRAME, PROTOCOL_VERSION, Response, encode_frame, handle
from node.enclave.sealed import SealedStateError, SealedStore, sim_sealing_key

ENCLAVE_DIR = "enclave"
LOCK_FILE = "lock"
EXIT_IN_USE = 3
EXIT_SEALED = 4
EXIT_BACKEND = 5


def _read_exact(inp: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = inp.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def serve(core: EnclaveCore, inp: BinaryIO, out: BinaryIO) -> int:
    import msgspec

    while True:
        hdr = _read_exact(inp, 4)
        if hdr is None:
            return 0
        n = int.from_bytes(hdr, "big")
        if n > MAX_FRAME:
            left = n
            while left:
                chunk = inp.read(min(left, 1 << 20))
                if not chunk:
                    return 0
                left -= len(chunk)
            reply = msgspec.msgpack.encode(
                Response(PROTOCOL_VERSION, 0, False, "malformed", f"frame of {n} bytes over limit {MAX_FRAME}")
            )
        else:
            payload = _read_exact(inp, n)
            if payload is None:
                return 0
            reply = handle(core, payload)
        out.write(encode_frame(reply))
        out.flush()
        core.flush()  # the counter's fsync, while the host reads the reply


def preload() -> None:
    """Load what the first contract call needs (signature checks, the contract language) before serving, so the
    first contract of a fresh enclave process does not wait ~20 ms for imports and the first compile."""
    from node.contracts import compile_source, stdlib
    from node.crypto import verify_domain_sig  # noqa: F401  (the contract calls check signatures with it)

    compile_source(stdlib.source("turns"))


def lock_vault(datadir: Path):
    """Hold the vault's lock (one enclave per vault); the returned file keeps it until closed."""
    edir = Path(datadir) / ENCLAVE_DIR
    edir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = open(edir / LOCK_FILE, "a+b")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise SealedStateError(f"vault {edir} is in use by another enclave") from None
    return lock


def open_core(datadir: Path, *, debug: bool = False, backend: str = "simulated", sealed_dir: Path | None = None,
              attestation_dir: Path | None = None, tsm_dir: Path | None = None) -> EnclaveCore:
    """The core over this vault. ``backend``: simulated | gramine | configfs (see ``node.tee.backends``)."""
    edir = Path(datadir) / ENCLAVE_DIR
    if backend == "simulated":
        return EnclaveCore(SealedStore(edir, sim_sealing_key(edir)), measurement=code_measurement(), debug=debug)
    # Hardware providers are built here from their own modules (in the trusted code set, see ``measure``), not
    # through the host's ``node.tee.backends`` (which loads the host's configuration code).
    measurement = code_measurement()
    if backend == "gramine":
        from node.enclave.hw.gramine_attestation import DEFAULT_BASE, GramineQuoteProvider
        from node.enclave.hw.gramine_sealing import SEALED_PATH, GramineSealing

        provider = GramineQuoteProvider(attestation_dir or DEFAULT_BASE)
        store = GramineSealing(sealed_dir or SEALED_PATH).open_store()
        mr = provider.mrenclave()
        if mr is not None:
            measurement = mr.hex()
    elif backend == "configfs":
        from node.enclave.hw.configfs_tsm import DEFAULT_BASE as TSM_BASE, ConfigfsTsm

        provider = ConfigfsTsm(tsm_dir or TSM_BASE)
        # configfs: the whole VM is the TEE; the sealed state is only as private as the VM's (encrypted) disk.
        # info().measurement stays this code's hash: the VM's launch measurement (MRTD / SNP MEASUREMENT)
        # is in each quote, not readable here without taking one.
        sdir = Path(sealed_dir) if sealed_dir else edir
        store = SealedStore(sdir, sim_sealing_key(sdir))
    else:
        raise ValueError(f"enclave backend {backend!r} is not one of simulated, gramine, configfs")
    return EnclaveCore(store, measurement=measurement, debug=debug, quote_provider=provider)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m node.enclave", description="Keyswitch enclave process")
    ap.add_argument("--datadir", required=True, type=Path)
    ap.add_argument("--debug", action="store_true", help="mark quotes as coming from a debug enclave")
    ap.add_argument("--backend", default="simulated", choices=("simulated", "gramine", "configfs"),
                    help="where quotes and the sealing key come from (default: simulated, INSECURE)")
    ap.add_argument("--sealed-dir", type=Path, default=None, help="sealed state directory (gramine: encrypted mount)")
    ap.add_argument("--attestation-dir", type=Path, default=None, help="gramine: /dev/attestation")
    ap.add_argument("--tsm-dir", type=Path, default=None, help="configfs: /sys/kernel/config/tsm/report")
    args = ap.parse_args(argv)
    try:
        lock = lock_vault(args.datadir)  # noqa: F841  (held for the life of the process)
    except SealedStateError as exc:
        print(f"enclave: {exc.reason}", file=sys.stderr)
        return EXIT_IN_USE
    try:
        core = open_core(args.datadir, debug=args.debug, backend=args.backend, sealed_dir=args.sealed_dir,
                         attestation_dir=args.attestation_dir, tsm_dir=args.tsm_dir)
    except SealedStateError as exc:
        print(f"enclave: cannot open sealed state: {exc.reason}", file=sys.stderr)
        return EXIT_SEALED
    except ValueError as exc:  # a bad backend or its hardware missing (ConfigError is a ValueError)
        print(f"enclave: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    preload()
    return serve(core, inp, out)
