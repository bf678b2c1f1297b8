"""The sandboxed interpreter: a checked program + a view -> the releases allowed now.

A tree-walking evaluator over the AST of lang.py. It has no access to the
host: the only values are ints, bools, strings and party identities, the only
operations the ones in the grammar and the builtins below, which read the
frozen view. Every node evaluated and every chunk a builtin scans costs one
step; past the budget evaluation stops with StepLimitExceeded. Nothing depends
on dict order, hashing or the clock, so equal inputs give equal outputs.
"""

from __future__ import annotations

from typing import Callable

from . import lang
from .errors import ContractRuntimeError, StepLimitExceeded
from .lang import (INT_LIMIT, Agg, Binary, Call, Complete, Cond, For, If, Let, Lit, Node, Program, Refund, ReleaseStmt,
                   Unary, Var)
from .model import COMPLETE, REFUNDING, RUNNING, Outcome, Release, View, ViewError

DEFAULT_STEP_LIMIT = 200_000


class _Machine:
    def __init__(self, program: Program, parties: tuple[str, ...], params: dict, view: View, limit: int) -> None:
        self.program = program
        self.parties = parties
        self.order = {p: i for i, p in enumerate(parties)}
        self.view = view
        self.limit = limit
        self.steps = 0
        self.env: dict[str, object] = {}
        if program.roles is not None:
            self.env.update(zip(program.roles, parties))
        self.env.update(params)
        self.allowed: dict[tuple[str, int], tuple[str, Node]] = {}
        self.complete = False
        self.refund = False

    # -- accounting

    def tick(self, node: Node, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.limit:
            raise StepLimitExceeded(f"step limit of {self.limit} exceeded", node.line, node.column)

    def fail(self, node: Node, message: str) -> None:
        raise ContractRuntimeError(message, node.line, node.column)

    def chunks(self, p: str) -> tuple:
        return self.view.chunks.get(p, ())

    def chunk(self, node: Node, p: str, i: int):
        cs = self.chunks(p)
        if not 0 <= i < len(cs):
            self.fail(node, f"chunk index {i} out of range for party {p!r} ({len(cs)} chunks)")
        return cs[i]

    # -- statements

    def run(self) -> None:
        self.block(self.program.body)

    def block(self, stmts: tuple) -> None:
        defined = []
        try:
            for s in stmts:
                name = self.stmt(s)
                if name is not None:
                    defined.append(name)
        finally:
            for name in defined:
                self.env.pop(name, None)

    def stmt(self, s: Node) -> str | None:
        self.tick(s)
        if isinstance(s, Let):
            self.env[s.name] = self.expr(s.value)
            return s.name
        if isinstance(s, If):
            self.block(s.then if self.expr(s.test) else s.other)
        elif isinstance(s, For):
            lo, hi = self.expr(s.lo), self.expr(s.hi)
            for i in range(lo, max(lo, hi)):
                self.tick(s)
                self.env[s.var] = i
                try:
                    self.block(s.body)
                finally:
                    del self.env[s.var]
        elif isinstance(s, ReleaseStmt):
            if s.when is None or self.expr(s.when):
                self.release(s)
        elif isinstance(s, Complete):
            if self.expr(s.test):
                self.complete = True
        elif isinstance(s, Refund):
            if self.expr(s.test):
                self.refund = True
        return None

    def release(self, s: ReleaseStmt) -> None:
        giver, index, receiver = self.expr(s.giver), self.expr(s.index), self.expr(s.receiver)
        self.chunk(s.index, giver, index)
        if self.view.receiver_of(giver, index) is not None:
            return  # already moved: nothing left to allow
        prior = self.allowed.get((giver, index))
        if prior is not None and prior[0] != receiver:
            self.fail(s, f"chunk {giver}[{index}] allowed to both {prior[0]!r} "
                         f"(line {prior[1].line}) and {receiver!r}")
        self.allowed[(giver, index)] = (receiver, s)

    # -- expressions

    def expr(self, e: Node):
        self.tick(e)
        if isinstance(e, Lit):
            return e.value
        if isinstance(e, Var):
            return self.env[e.name]
        if isinstance(e, Binary):
            op = e.op
            if op == "and":
                return self.expr(e.left) and self.expr(e.right)
            if op == "or":
                return self.expr(e.left) or self.expr(e.right)
            a, b = self.expr(e.left), self.expr(e.right)
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            if op == ">=":
                return a >= b
            if op == "+":
                r = a + b
            elif op == "-":
                r = a - b
            elif op == "*":
                r = a * b
            else:
                if b == 0:
                    self.fail(e, "division by zero")
                r = a // b if op == "/" else a % b
            return self.checked(e, r)
        if isinstance(e, Unary):
            v = self.expr(e.operand)
            return (not v) if e.op == "not" else self.checked(e, -v)
        if isinstance(e, Cond):
            return self.expr(e.then) if self.expr(e.test) else self.expr(e.other)
        if isinstance(e, Call):
            args = [self.expr(a) for a in e.args]
            return _BUILTINS[e.fn](self, e, *args)
        if isinstance(e, Agg):
            return self.aggregate(e)
        self.fail(e, "unknown expression")  # pragma: no cover

    def aggregate(self, e: Agg):
        lo, hi = self.expr(e.lo), self.expr(e.hi)
        kind = e.kind
        acc = {"sum": 0, "maximum": 0, "all": True, "any": False}[kind]
        first = True
        try:
            for i in range(lo, max(lo, hi)):
                self.tick(e)
                self.env[e.var] = i
                v = self.expr(e.body)
                if kind == "sum":
                    acc = self.checked(e, acc + v)
                elif kind == "maximum":
                    acc = v if first else max(acc, v)
                elif kind == "all" and not v:
                    return False
                elif kind == "any" and v:
                    return True
                first = False
        finally:
            self.env.pop(e.var, None)
        return acc

    def checked(self, node: Node, value: int) -> int:
        if not -INT_LIMIT <= value < INT_LIMIT:
            self.fail(node, "integer overflow")
        return value


# ---------------------------------------------------------------- builtins


def _party(m: _Machine, e: Node, i: int) -> str:
    if not 0 <= i < len(m.parties):
        m.fail(e, f"party index {i} out of range ({len(m.parties)} parties)")
    return m.parties[i]


def _scan(m: _Machine, e: Node, p: str) -> tuple:
    cs = m.chunks(p)
    m.tick(e, len(cs))
    return cs


def _next_chunk(m: _Machine, e: Node, p: str) -> int:
    cs = _scan(m, e, p)
    for i in range(len(cs)):
        if m.view.receiver_of(p, i) is None:
            return i
    return len(cs)


def _count_to(m: _Machine, e: Node, p: str, lo: int, hi: int, q: str) -> int:
    cs = _scan(m, e, p)
    return sum(1 for i in range(max(lo, 0), min(hi, len(cs))) if m.view.receiver_of(p, i) == q)


def _sent(m: _Machine, e: Node, p: str, q: str, field: Callable) -> int:
    cs = _scan(m, e, p)
    return sum(field(c) for i, c in enumerate(cs) if m.view.receiver_of(p, i) == q)


def _lookup(m: _Machine, e: Node, table, key: str, what: str) -> int:
    if key not in table:
        m.fail(e, f"no {what} for asset {key!r} in the view")
    return table[key]


_BUILTINS: dict[str, Callable] = {
    "nparties": lambda m, e: len(m.parties),
    "party": _party,
    "chunks": lambda m, e, p: len(m.chunks(p)),
    "asset": lambda m, e, p, i: m.chunk(e, p, i).asset,
    "amount": lambda m, e, p, i: m.chunk(e, p, i).amount,
    "usd": lambda m, e, p, i: m.chunk(e, p, i).usd_cents,
    "moved": lambda m, e, p, i: (m.chunk(e, p, i), m.view.receiver_of(p, i) is not None)[1],
    "moved_to": lambda m, e, p, i, q: (m.chunk(e, p, i), m.view.receiver_of(p, i) == q)[1],
    "next_chunk": _next_chunk,
    "moved_count": lambda m, e, p: sum(1 for i in range(len(_scan(m, e, p))) if m.view.receiver_of(p, i) is not None),
    "sent_usd": lambda m, e, p, q: _sent(m, e, p, q, lambda c: c.usd_cents),
    "sent_count": lambda m, e, p, q: _sent(m, e, p, q, lambda c: 1),
    "count_to": _count_to,
    "total_usd": lambda m, e, p: sum(c.usd_cents for c in _scan(m, e, p)),
    "max_usd": lambda m, e, p: max((c.usd_cents for c in _scan(m, e, p)), default=0),
    "all_asset": lambda m, e, p, a: all(c.asset == a for c in _scan(m, e, p)),
    "height": lambda m, e, a: _lookup(m, e, m.view.heights, a, "ledger height"),
    "price": lambda m, e, a: _lookup(m, e, m.view.prices, a, "price"),
    "signed": lambda m, e, p, msg: m.view.has_signature(p, msg),
    "min": lambda m, e, a, b: min(a, b),
    "max": lambda m, e, a, b: max(a, b),
    "abs": lambda m, e, a: m.checked(e, abs(a)),
}
assert set(_BUILTINS) == set(lang.BUILTINS), "builtin signatures and implementations differ"


def evaluate_program(program: Program, parties: tuple[str, ...], params: dict, view: View,
                     step_limit: int = DEFAULT_STEP_LIMIT) -> Outcome:
    """Run ``program`` over ``view``. Raises ContractRuntimeError / StepLimitExceeded, or
    ViewError when the view names parties that are not in the contract."""
    known = set(parties)
    for p in view.chunks:
        if p not in known:
            raise ViewError(f"view has chunks of {p!r}, who is not a party")
    for t in view.moved:
        if t.receiver not in known:
            raise ViewError(f"chunk {t.giver}[{t.index}] moved to {t.receiver!r}, who is not a party")
    m = _Machine(program, parties, params, view, step_limit)
    m.run()
    releases = {k: r for k, (r, _) in m.allowed.items()}
    status = COMPLETE if m.complete else REFUNDING if m.refund else RUNNING
    unmoved = [(p, i) for p in parties for i in range(len(m.chunks(p))) if view.receiver_of(p, i) is None]
    if status != RUNNING:
        # The contract has ended: every chunk no rule sends elsewhere goes home.
        for p, i in unmoved:
            releases.setdefault((p, i), p)
    out = sorted(releases.items(), key=lambda kv: (m.order[kv[0][0]], kv[0][1]))
    return Outcome(tuple(Release(g, i, r) for (g, i), r in out), status, status != RUNNING and not unmoved)
