"""No test module imports another test module (issue #19, tests in Bitcoin Core's manner).

Helpers shared between test modules live in non-test modules (``tests/functional/framework.py``, the ``*kit.py``
modules beside the tests, ``tests/sheetbody.py``, ``tests/tee/testbuild.py``, ...) and fixtures in
``conftest.py``; a test module (``test_*.py``) is imported only by pytest. Every ``import`` and
``from ... import`` under ``tests/``, at module level or inside a function, is read; importing a test module
(``tests.x.test_y``, or ``from tests.x import test_y``) is refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def is_test_module(module: str) -> bool:
    return module.rpartition(".")[2].startswith("test_")


def imported_test_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for each test module that ``source`` (a module of ``package``) imports."""
    found = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Import):
            found += [(n.lineno, a.name) for a in n.names if is_test_module(a.name)]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:  # relative: from the package, up level - 1
                parts = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if is_test_module(base):
                found.append((n.lineno, base))
            else:  # `from tests.x import test_y`
                found += [(n.lineno, f"{base}.{a.name}") for a in n.names if is_test_module(a.name)]
    return found


def imports_between_test_modules() -> set[tuple[str, str]]:
    out = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = ".".join(rel.parent.parts)
        for _, module in imported_test_modules(path.read_text(encoding="utf-8"), package):
            out.add((str(rel), module))
    return out


def test_no_test_module_imports_another():
    found = sorted(imports_between_test_modules())
    assert not found, ("a test module is imported; move the helpers it shares to a non-test module (a kit beside "
                     f"the tests, tests/functional/framework.py) or a conftest.py fixture: {found}")


def test_the_check_sees_every_form_of_import():
    source = ("import tests.a.test_x\n"
              "from tests.a.test_y import helper\n"
              "from tests.a import test_z as z, kit\n"
              "from .test_w import thing\n"
              "from . import test_v\n"
              "def f():\n    from tests.b.test_u import late\n"
              "from tests.a.kit import helper2\n"
              "import tests.polling\n")
    found = imported_test_modules(source, "tests.a")
    assert [m for _, m in found] == ["tests.a.test_x", "tests.a.test_y", "tests.a.test_z", "tests.a.test_w",
                                     "tests.a.test_v", "tests.b.test_u"]
    assert found[-1][0] == 7
