"""The sans-IO layers must not load the I/O stack (DESIGN.md section 2)."""

import subprocess
import sys

import pytest

PURE = ["node.protocols", "node.risk", "node.tee.enclave", "node.contracts"]


@pytest.mark.parametrize("module", PURE)
def test_pure_layer_loads_no_io_stack(module):
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({module!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('trio', 'libp2p'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} (or a submodule) imports {out.stdout.strip()}"


def test_the_check_itself_catches_io_imports():
    # The same probe on node.runtime's stack must see trio, or the test above proves nothing.
    code = "import sys, trio; print(','.join(n for n in sys.modules if n.split('.')[0]=='trio')[:20])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "trio" in out.stdout
