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

from node.tee.enclave.core import EnclaveCore
from node.tee.enclave.measure import code_measurement
from node.tee.enclave.messages import MAX_FRAME, PROTOCOL_VERSION, Response, encode_frame, handle
from node.tee.enclave.sealed import SealedStateError, SealedStore, sim_sealing_key

ENCLAVE_DIR = "enclave"
LOCK_FILE = "lock"
EXIT_IN_USE = 3
EXIT_SEALED = 4


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


def open_core(datadir: Path, *, debug: bool = False) -> EnclaveCore:
    edir = Path(datadir) / ENCLAVE_DIR
    return EnclaveCore(SealedStore(edir, sim_sealing_key(edir)), measurement=code_measurement(), debug=debug)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m node.tee.enclave", description="Keyswitch simulated enclave (INSECURE)")
    ap.add_argument("--datadir", required=True, type=Path)
    ap.add_argument("--debug", action="store_true", help="mark quotes as coming from a debug enclave")
    args = ap.parse_args(argv)
    try:
        lock = lock_vault(args.datadir)  # noqa: F841  (held for the life of the process)
    except SealedStateError as exc:
        print(f"enclave: {exc.reason}", file=sys.stderr)
        return EXIT_IN_USE
    try:
        core = open_core(args.datadir, debug=args.debug)
    except SealedStateError as exc:
        print(f"enclave: cannot open sealed state: {exc.reason}", file=sys.stderr)
        return EXIT_SEALED
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    return serve(core, inp, out)
