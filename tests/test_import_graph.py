"""The project's import graph has no cycles (issue #19): every ``import`` and ``from ... import`` of a project
module, at module level or inside a function, is an edge; a strongly connected component of more than one module
is a cycle. Packages importing their own submodules are not edges back (a package is its ``__init__``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("node", "bootstrap", "simulations")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in n.names] or [base]
            for t in targets:
                r = resolve(t)
                if r and r != m and not m.startswith(r + "."):  # a module's own parent package is no cycle
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    found = cycles(import_graph(modules()))
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# -- the layers point down (issue #19: a layout that shows the architecture) -------------------------------------
#: the application and the tools on top of it: only each other, the desks (``node.contracts.desk.swaps``, ``node.contracts.desk.escrow``,
#: application code kept at the root for now), the simulator and the bootstrap program may import them
UPPER = ("node.app", "node.dev", "node.cli", "node.__main__")
UPPER_USERS = UPPER + ("node.contracts.desk.swaps", "node.contracts.desk.escrow", "simulations", "bootstrap")
#: the primitives at the root of ``node``: they import no layer above them (only each other and the asset table)
PRIMITIVES = ("node.wire", "node.crypto", "node.clock", "node.config", "node.fsutil", "node.logs", "node.identity",
              "node.peerkey", "node.metrics")
PRIMITIVES_MAY_USE = PRIMITIVES + ("node", "node.assets")
#: attestation verification knows nothing of the TEE host side (its client, backends) nor of the node around it
ATTEST_MAY_NOT_USE = ("node.tee", "node.app", "node.dev", "node.cli", "node.api", "node.runtime", "node.stores",
                      "node.ledger", "node.protocols")


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            if _within(d, UPPER) and not _within(m, UPPER_USERS):
                bad.append(f"{m} imports {d} (the application layer or a tool)")
            if m in PRIMITIVES and not (d in PRIMITIVES_MAY_USE or _within(d, ("node.assets",))):
                bad.append(f"{m} (a primitive) imports {d}")
            if _within(m, ("node.attest",)) and _within(d, ATTEST_MAY_NOT_USE):
                bad.append(f"{m} (attestation verification) imports {d}")
    return bad


def test_the_layers_point_down():
    bad = layer_violations(import_graph(modules()))
    assert bad == [], "imports against the layering:\n" + "\n".join(bad)


def test_the_layer_check_can_fail():
    assert layer_violations({"node.protocols.offers": {"node.app.stack"}, "node.app.stack": set()}) == [
        "node.protocols.offers imports node.app.stack (the application layer or a tool)"]
    assert layer_violations({"node.wire": {"node.runtime.node"}}) == ["node.wire (a primitive) imports node.runtime.node"]
    assert layer_violations({"node.attest.binding": {"node.tee.client"}}) == [
        "node.attest.binding (attestation verification) imports node.tee.client"]
    assert layer_violations({"node.cli.run": {"node.app.daemon"}, "node.wire": {"node.crypto"}}) == []
