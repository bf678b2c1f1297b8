"""``python -m node.tee.gramine`` (``make gramine-manifest``): render, build and sign the manifest.

Always renders ``<out>/keyswitch-enclave.manifest.template.rendered`` (the
Keyswitch values filled in). Then, only where Gramine is installed, runs
``gramine-manifest`` (fills Gramine's own paths) and ``gramine-sgx-sign``
(computes MRENCLAVE over the trusted files and signs). Where they are missing
it says which and exits 2: an unsigned manifest is not an enclave.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from node.tee.gramine.manifest import render_manifest

EXIT_MISSING = 2
NAME = "keyswitch-enclave"
TOOLS = ("gramine-manifest", "gramine-sgx-sign")


def missing_tools(which=shutil.which) -> list[str]:
    return [t for t in TOOLS if which(t) is None]


def main(argv: list[str] | None = None, *, which=shutil.which) -> int:
    root = Path(__file__).resolve().parents[3]
    ap = argparse.ArgumentParser(prog="python -m node.tee.gramine", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=root / "build" / "gramine")
    ap.add_argument("--datadir", type=Path, default=Path("~/.keyswitch").expanduser(),
                    help="host data directory the enclave sees as /keyswitch/data")
    ap.add_argument("--sealed-dir", type=Path, default=None,
                    help="host directory backing the encrypted mount (default: <datadir>/enclave-sealed)")
    ap.add_argument("--enclave-size", default="1G")
    ap.add_argument("--max-threads", type=int, default=16)
    ap.add_argument("--key-name", default="_sgx_mrenclave", choices=("_sgx_mrenclave", "_sgx_mrsigner"))
    ap.add_argument("--debug", action="store_true", help="sgx.debug = true (never for production)")
    ap.add_argument("--signing-key", type=Path, default=None, help="RSA-3072 key for gramine-sgx-sign")
    args = ap.parse_args(argv)
    sealed = args.sealed_dir or (args.datadir / "enclave-sealed")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        text = render_manifest(project_root=root, datadir=args.datadir, sealed_dir=sealed,
                               enclave_size=args.enclave_size, max_threads=args.max_threads,
                               key_name=args.key_name, debug=args.debug)
    except ValueError as exc:
        print(f"gramine-manifest: {exc}", file=sys.stderr)
        return 1
    rendered = args.out / f"{NAME}.manifest.template.rendered"
    rendered.write_text(text)
    print(f"rendered {rendered}")
    missing = missing_tools(which)
    if missing:
        print(f"cannot build and sign the SGX manifest: {', '.join(missing)} not found on PATH. Install Gramine "
              "(https://gramine.readthedocs.io, package 'gramine') on an SGX machine and run again; the "
              "rendered manifest above is not usable until gramine-manifest and gramine-sgx-sign have run.",
              file=sys.stderr)
        return EXIT_MISSING
    manifest = args.out / f"{NAME}.manifest"
    sgx = args.out / f"{NAME}.manifest.sgx"
    subprocess.run(["gramine-manifest", str(rendered), str(manifest)], check=True)
    sign = ["gramine-sgx-sign", "--manifest", str(manifest), "--output", str(sgx)]
    if args.signing_key:
        sign += ["--key", str(args.signing_key)]
    subprocess.run(sign, check=True)
    print(f"signed {sgx}; run the enclave with: gramine-sgx {args.out / NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
