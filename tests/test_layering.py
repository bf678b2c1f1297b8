"""The sans-IO layers must not load the I/O stack (DESIGN.md section 2)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PURE = ["node.protocols", "node.risk", "node.enclave", "node.contracts"]
#: what loading a pure package may not load: the network stack; for the sans-IO layers (not the enclave, which
#: keeps its sealed store and draws its keys) the database too
IO_STACK = {"trio", "libp2p"}
#: (a contract's desk, ``node.contracts.desk``, lives beside its language and protocol, issue #19, and is held to
#: the same rules: its stores, its seed and its heights come from the composition root, ``node.app``)
SANS_IO_STACK = IO_STACK | {"sqlite3", "_sqlite3"}


def loaded_io_stack(module: str) -> str:
    """The I/O stack modules that importing ``module`` and every submodule loads (comma-separated)."""
    banned = SANS_IO_STACK if module != "node.enclave" else IO_STACK
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {sorted(banned)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("module", PURE)
def test_pure_layer_loads_no_io_stack(module):
    bad = loaded_io_stack(module)
    assert bad == "", f"{module} (or a submodule) imports {bad}"


def test_the_probe_sees_the_database_a_store_loads():
    # the stores (node.stores) are where SQLite lives: the same probe on them must see it
    assert "sqlite3" in loaded_io_stack("node.stores").split(",")


# -- no I/O in the sans-IO packages, by reading their source (issue #19) -----------------------------------------
# ``sys.modules`` cannot tell: ``time``, ``os`` and ``pathlib`` are loaded by Python itself. So every file is
# parsed and these are refused: importing an I/O or clock or entropy module, calling ``open()``, reading or
# writing a file through a path object, reading the wall clock through ``datetime``, and module-level
# ``random`` functions (randomness comes from an RNG passed in: a ``random.Random`` the composition root seeds).

SANS_IO = ["node/protocols", "node/risk", "node/contracts"]
FORBIDDEN_MODULES = {"trio", "libp2p", "sqlite3", "secrets", "time", "os", "pathlib", "shutil", "tempfile", "socket",
                     "subprocess", "io", "glob", "fcntl", "mmap", "dbm", "shelve", "pkgutil", "uuid"}
#: the project's own I/O: the stores (``node.stores``: SQLite, record files) and the atomic file write. A
#: protocol gets a store object from the composition root (through the narrow interface it declares), and
#: never imports one, even inside a function.
FORBIDDEN_PROJECT = {"node.stores", "node.fsutil"}
FILE_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes"}
RANDOM_OK = {"Random", "SystemRandom"}  # the types; never random.random(), random.choice(), ...


def _forbidden_project(name: str) -> str | None:
    return next((p for p in FORBIDDEN_PROJECT if name == p or name.startswith(p + ".")), None)


def io_uses(source: str) -> set[str]:
    """The I/O a module's source does: the forbidden modules it imports, the file and clock calls it makes."""
    found: set[str] = set()
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Import):
            found |= {a.name.split(".")[0] for a in n.names if a.name.split(".")[0] in FORBIDDEN_MODULES}
            found |= {p for p in map(_forbidden_project, (a.name for a in n.names)) if p}
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            top = n.module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                found.add(top)
            for name in [n.module] + [f"{n.module}.{a.name}" for a in n.names]:
                if _forbidden_project(name):
                    found.add(_forbidden_project(name))
            if n.module == "importlib" and any(a.name == "resources" for a in n.names) or \
                    n.module.startswith("importlib.resources"):
                found.add("importlib.resources")
            if top == "random":
                found |= {f"random.{a.name}" for a in n.names if a.name not in RANDOM_OK}
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "open":
            found.add("open()")
        elif isinstance(n, ast.Attribute):
            if n.attr in FILE_METHODS:
                found.add("." + n.attr)
            elif isinstance(n.value, ast.Name) and n.value.id == "random" and n.attr not in RANDOM_OK:
                found.add(f"random.{n.attr}")
            elif isinstance(n.value, ast.Name) and n.value.id in ("datetime", "date") and \
                    n.attr in ("now", "utcnow", "today"):
                found.add(f"{n.value.id}.{n.attr}()")
    return found


def test_sans_io_packages_do_no_io():
    """No exceptions (issue #19 emptied the allow-list: the stores moved to ``node.stores``, the contract grammar
    and stdlib sources into Python modules, the release protocol's spans to a clock it is given)."""
    root = Path(__file__).resolve().parents[1]
    bad = []
    for pkg in SANS_IO:
        for f in sorted((root / pkg).rglob("*.py")):
            uses = io_uses(f.read_text())
            if uses:
                bad.append(f"{f.relative_to(root).as_posix()}: {sorted(uses)}")
    assert bad == [], "I/O in the sans-IO layer (issue #19):\n" + "\n".join(bad)


def test_the_io_scan_sees_what_it_must():
    src = ("import secrets\nfrom time import monotonic\nimport random\nfrom random import choice, Random\n"
           "def f(p):\n    open('x')\n    p.write_text('y')\n    random.random()\n    random.Random(1)\n"
           "    datetime.now()\n")
    assert io_uses(src) == {"secrets", "time", "random.choice", "open()", ".write_text", "random.random",
                            "datetime.now()"}
    assert io_uses("import random\nrng = random.Random(7)\nx = rng.random()\n") == set()
    src = ("import sqlite3\ndef f():\n    from node.stores.contracts import ContractStore\n    import node.fsutil\n"
           "    from node import stores\n    from importlib import resources\n    import os.path\n")
    assert io_uses(src) == {"sqlite3", "node.stores", "node.fsutil", "importlib.resources", "os"}
    assert io_uses("from node.contracts.protocol.claims import MemoryContractStore\n") == set()


def test_the_check_itself_catches_io_imports():
    # The same probe on node.runtime's stack must see trio, or the test above proves nothing.
    code = "import sys, trio; print(','.join(n for n in sys.modules if n.split('.')[0]=='trio')[:20])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "trio" in out.stdout


# -- the enclave's trusted code set (node.enclave.measure.TRUSTED_CODE) -------------------------------------
# The enclave decides releases; what it loads must be what is measured, and it must load nothing of the host's.

import json  # noqa: E402

from node.enclave.measure import measured_files, project_root  # noqa: E402

ROOT = project_root()


def _module_files(name: str) -> list[str]:
    """The project files importing ``name`` loads: the module (``a/b.py`` or ``a/b/__init__.py``) and every
    parent package's ``__init__.py``; a name that is no module (``from m import function``) gives []."""
    parts = name.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            out.append((base / "__init__.py").relative_to(ROOT).as_posix())
        elif base.with_suffix(".py").is_file():
            out.append(base.with_suffix(".py").relative_to(ROOT).as_posix())
        else:
            return out if i == len(parts) else []
    return out


def project_imports(rel: str, source: str | None = None) -> list[tuple[int, str, str]]:
    """``(line, imported name, project file it loads)`` for every import in a file, wherever it is written:
    module level, inside functions, under ``if``/``try``. Relative imports are resolved. Calls that import by
    a computed name (``__import__``, ``importlib.import_module``) cannot be followed: reported as "dynamic"."""
    path = ROOT / rel
    tree = ast.parse(path.read_text() if source is None else source)
    pkg = rel[: -len(".py")].replace("/", ".")
    if not rel.endswith("/__init__.py"):
        pkg = pkg.rsplit(".", 1)[0]
    else:
        pkg = pkg[: -len(".__init__")]
    found = []
    for n in ast.walk(tree):
        names: list[str] = []
        if isinstance(n, ast.Import):
            names = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            mod = n.module or ""
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                mod = ".".join(base + ([mod] if mod else []))
            names = [mod] + [f"{mod}.{a.name}" for a in n.names]
        elif isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Name) and f.id == "__import__") or (
                    isinstance(f, ast.Attribute) and f.attr == "import_module"):
                found.append((n.lineno, "dynamic", "<import by computed name>"))
            continue
        for name in names:
            top = name.split(".")[0]
            if not ((ROOT / top / "__init__.py").is_file() or (ROOT / f"{top}.py").is_file()):
                continue  # not this repository's code (stdlib, third-party)
            for f in _module_files(name):
                found.append((n.lineno, name, f))
    return found


def outside_imports(files: list[str]) -> list[str]:
    trusted = set(files)
    bad = []
    for rel in files:
        if rel.endswith(".py"):
            for line, name, f in project_imports(rel):
                if f not in trusted:
                    bad.append(f"{rel}:{line} loads {f}" + (" (import by computed name)" if name == "dynamic" else ""))
    return sorted(set(bad))


def test_the_enclave_imports_no_module_outside_its_trusted_code():
    files = measured_files()
    bad = outside_imports(files)
    assert bad == [], "the enclave's trusted code imports modules outside it:\n" + "\n".join(bad)
    assert "node/enclave/core.py" in files and "node/contracts/interp.py" in files


def test_the_import_scan_sees_imports_inside_functions_and_relative_ones():
    src = ("def f():\n    if True:\n        from node.tee.client import verify_domain_sig\n"
           "from .core import EnclaveCore\nimport importlib\nimportlib.import_module('node.app.daemon')\n")
    got = project_imports("node/enclave/contracts.py", src)
    assert (3, "node.tee.client", "node/tee/client.py") in got
    assert (4, "node.enclave.core", "node/enclave/core.py") in got
    assert any(name == "dynamic" for _, name, _ in got)
    files = [f for f in measured_files() if f != "node/enclave/contracts.py"]  # a set without contracts.py
    assert any("node/enclave/contracts.py" in b for b in outside_imports(files))


_PROBE = """
import atexit, json, runpy, sys
out, datadir = sys.argv[1], sys.argv[2]
def dump():
    with open(out, "w") as f:
        json.dump(sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}), f)
atexit.register(dump)
sys.argv = ["node.enclave", "--datadir", datadir]
runpy.run_module("node.enclave", run_name="__main__", alter_sys=True)
"""


def test_a_running_enclave_loads_no_project_file_that_is_not_measured(tmp_path):
    """Start the enclave process the way the client does (``SubprocessEnclave``: a fresh interpreter running
    ``python -m node.enclave``, here under a probe that writes the files behind ``sys.modules`` at exit),
    drive it through a contract (open, signatures, release, accept), and compare. Rule: a loaded file under
    the repository root is project code and must be measured, unless it is the interpreter's own (the standard
    library, site-packages: third-party libraries, pinned by the environment, even in a venv inside the
    checkout), which is not part of the measurement."""
    import sys as _sys

    from node.assets import address_for
    from node.contracts.protocol.schedule import Chunk, schedule_spec, swap_schedule
    from node.tee.client import InProcessEnclave, SubprocessEnclave
    from tests.tee.testbuild import attest

    dump = tmp_path / "loaded.json"
    cmd = [_sys.executable, "-c", _PROBE, str(dump), str(tmp_path / "enc")]
    b = SubprocessEnclave(tmp_path / "enc", command=cmd)
    try:
        a = InProcessEnclave(None)
        attest(a, b)  # I3: each verifies the other's quote itself, as the contract hosts have them do
        chunks = [[Chunk(asset, address_for(asset, p), p, 1000) for p in e.generate_keys(1)]
                  for e, asset in ((a, "BTC-REG"), (b, "LTC"))]
        spec = schedule_spec(swap_schedule(*chunks), [a.binding_for("dev", "A"), b.binding_for("dev", "B")]).encode()
        cid = b.contract_open(spec).cid
        a.contract_open(spec, [(1, b.contract_open(spec).sig)])
        b.contract_open(spec, [(0, a.contract_open(spec).sig)])
        assert b.contract_accept(cid, a.contract_release(cid, 0, 1)) == (0, 0)
        a.contract_accept(cid, b.contract_release(cid, 0, 0))
    finally:
        b.close()
    loaded = {Path(f).resolve() for f in json.loads(dump.read_text()) if f}
    import sysconfig

    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    project = {p.relative_to(ROOT).as_posix() for p in loaded
               if p.is_relative_to(ROOT) and not any(p.is_relative_to(d) for d in installed)}
    assert "node/enclave/server.py" in project and "node/contracts/interp.py" in project  # the probe saw it
    unmeasured = sorted(project - set(measured_files()))
    assert unmeasured == [], f"the enclave loaded project files its measurement leaves out: {unmeasured}"
