"""Render the Gramine manifest for the enclave process (``string.Template``, no Jinja).

``render_manifest(...)`` returns TOML text. It names, as trusted files, the
Python interpreter, its standard library, the site-packages directories the
enclave imports from (coincurve, cryptography, msgspec), and the ``node``
package. ``{{ gramine.libos }}`` and ``{{ gramine.runtimedir() }}`` are left
for ``gramine-manifest`` by default (pass real paths to fill them here).
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path
from string import Template

from node.enclave.hw.gramine_sealing import SEALED_PATH

TEMPLATE = Path(__file__).with_name("keyswitch-enclave.manifest.template")
ENCLAVE_MODULE = "node.enclave"  # python -m node.enclave (node/enclave/__main__.py)
NODE_MOUNT = "/keyswitch/app"  # where the project root (holding node/) appears inside the enclave
DATA_PATH = "/keyswitch/data"
SEALING_KEYS = ("_sgx_mrenclave", "_sgx_mrsigner")
GRAMINE_LIBOS = "{{ gramine.libos }}"
GRAMINE_RUNTIMEDIR = "{{ gramine.runtimedir() }}"


def _q(s: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these)."""
    return json.dumps(str(s))


def python_dirs() -> list[str]:
    """Import roots the enclave's Python needs: the stdlib and the site-packages holding its dependencies."""
    dirs: list[str] = []
    paths = sysconfig.get_paths()
    for key in ("stdlib", "purelib", "platlib"):  # not platstdlib: in a venv it is the venv's lib/, not a root
        p = paths.get(key)
        if p and os.path.isdir(p):
            dirs.append(os.path.realpath(p))
    for mod in ("coincurve", "cryptography", "msgspec", "cffi"):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        f = getattr(m, "__file__", None)
        if f:
            dirs.append(os.path.realpath(Path(f).parent.parent))
    return list(dict.fromkeys(dirs))


def _outermost(dirs: list[str]) -> list[str]:
    """Drop directories already inside another one of the list (one mount / trusted entry covers them)."""
    return [d for d in dirs if not any(o != d and d.startswith(o.rstrip("/") + "/") for o in dirs)]


def render_manifest(
    *,
    project_root: Path | str,
    datadir: Path | str,
    sealed_dir: Path | str,
    python: str | None = None,
    python_dirs_: list[str] | None = None,
    enclave_size: str = "1G",
    max_threads: int = 16,
    key_name: str = "_sgx_mrenclave",
    debug: bool = False,
    log_level: str = "error",
    libos: str = GRAMINE_LIBOS,
    runtimedir: str = GRAMINE_RUNTIMEDIR,
    arch_libdir: str = "/lib/x86_64-linux-gnu",
    isvprodid: int = 0,
    isvsvn: int = 0,
) -> str:
    """The manifest TOML for ``gramine-sgx`` (host paths absolute; see module doc)."""
    if key_name not in SEALING_KEYS:
        raise ValueError(f"key_name must be one of {', '.join(SEALING_KEYS)} (Gramine's SGX sealing keys)")
    if max_threads < 4:
        raise ValueError("max_threads must be >= 4 (Python and Gramine's own helper threads)")
    if not enclave_size or enclave_size[-1] not in "KMG" or not enclave_size[:-1].isdigit():
        raise ValueError("enclave_size like '512M' or '1G'")
    size = int(enclave_size[:-1]) << {"K": 10, "M": 20, "G": 30}[enclave_size[-1]]
    if size & (size - 1):
        raise ValueError("SGX enclave_size must be a power of two")
    root = Path(project_root).resolve()
    if not (root / "node" / "enclave" / "__main__.py").exists():
        raise ValueError(f"{root} is not a Keyswitch checkout (no node/enclave/__main__.py)")
    python = os.path.realpath(python or sys.executable)
    pdirs = python_dirs() if python_dirs_ is None else list(python_dirs_)
    argv = ["python3", "-m", ENCLAVE_MODULE, "--backend", "gramine", "--datadir", DATA_PATH,
            "--sealed-dir", SEALED_PATH]
    values = dict(
        libos=libos,
        runtimedir=runtimedir,
        arch_libdir=arch_libdir,
        python=_q(python),
        log_level=_q(log_level),
        argv="[" + ", ".join(_q(a) for a in argv) + "]",
        pythonpath=_q(":".join([NODE_MOUNT] + pdirs)),
        python_mounts="\n".join(f"  {{ path = {_q(d)}, uri = {_q('file:' + d)} }}," for d in
                                _outermost([os.path.dirname(python)] + pdirs)),
        node_mount=_q(NODE_MOUNT),
        node_uri=_q(f"file:{root}"),
        data_path=_q(DATA_PATH),
        data_uri=_q(f"file:{Path(datadir).resolve()}"),
        data_allowed=_q(f"file:{Path(datadir).resolve()}/"),  # trailing '/': the whole directory
        sealed_path=_q(SEALED_PATH),
        sealed_uri=_q(f"file:{Path(sealed_dir).resolve()}"),
        key_name=_q(key_name),
        debug="true" if debug else "false",
        enclave_size=_q(enclave_size),
        max_threads=str(int(max_threads)),
        isvprodid=str(int(isvprodid)),
        isvsvn=str(int(isvsvn)),
        trusted_files="\n".join(f"  {_q('file:' + p)}," for p in
                                [python] + [d.rstrip("/") + "/" for d in _outermost(pdirs)] + [f"{root}/node/"]),
    )
    return Template(TEMPLATE.read_text()).substitute(values)
