"""Parser and static checker: source text -> a checked program.

The grammar (``grammar.GRAMMAR``) is parsed with lark's LALR(1) parser. The parse
tree is turned into small immutable AST nodes that carry their line and column,
and every name, arity and type is checked before any evaluation: a contract
that compiles cannot fail with a type error at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import ContractError
from .grammar import GRAMMAR

INT, BOOL, STR, PARTY = "int", "bool", "str", "party"
TYPES = (INT, BOOL, STR, PARTY)

MAX_SOURCE = 64 * 1024
MAX_DEPTH = 64
#: Integers stay within +-2**127 (amounts in smallest units fit easily).
INT_LIMIT = 1 << 127

_parser = lark.Lark(
    GRAMMAR,
    parser="lalr",
    propagate_positions=True,
    maybe_placeholders=True,
)


# ---------------------------------------------------------------- AST


@dataclass(frozen=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True)
class Lit(Node):
    value: int | str | bool
    type: str


@dataclass(frozen=True)
class Var(Node):
    name: str


@dataclass(frozen=True)
class Call(Node):
    fn: str
    args: tuple


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Cond(Node):
    test: Node
    then: Node
    other: Node


@dataclass(frozen=True)
class Agg(Node):
    """``sum``/``all``/``any``/``maximum`` of ``body`` for ``var`` in ``lo .. hi``."""

    kind: str
    var: str
    lo: Node
    hi: Node
    body: Node


@dataclass(frozen=True)
class Let(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class If(Node):
    test: Node
    then: tuple
    other: tuple


@dataclass(frozen=True)
class For(Node):
    var: str
    lo: Node
    hi: Node
    body: tuple


@dataclass(frozen=True)
class ReleaseStmt(Node):
    giver: Node
    index: Node
    receiver: Node
    when: Node | None


@dataclass(frozen=True)
class Complete(Node):
    test: Node


@dataclass(frozen=True)
class Refund(Node):
    test: Node


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    line: int
    column: int


@dataclass(frozen=True)
class Program:
    name: str
    roles: tuple[str, ...] | None  # None: ``parties *`` (any number)
    min_parties: int
    params: tuple[Param, ...]
    body: tuple


# ---------------------------------------------------------------- builtins (signatures)

#: name -> (argument types, result type). Implementations live in interp.py.
BUILTINS: dict[str, tuple[tuple[str, ...], str]] = {
    "nparties": ((), INT),
    "party": ((INT,), PARTY),
    "chunks": ((PARTY,), INT),
    "asset": ((PARTY, INT), STR),
    "amount": ((PARTY, INT), INT),
    "usd": ((PARTY, INT), INT),
    "moved": ((PARTY, INT), BOOL),
    "moved_to": ((PARTY, INT, PARTY), BOOL),
    "next_chunk": ((PARTY,), INT),
    "moved_count": ((PARTY,), INT),
    "sent_usd": ((PARTY, PARTY), INT),
    "sent_count": ((PARTY, PARTY), INT),
    "count_to": ((PARTY, INT, INT, PARTY), INT),
    "total_usd": ((PARTY,), INT),
    "max_usd": ((PARTY,), INT),
    "all_asset": ((PARTY, STR), BOOL),
    "height": ((STR,), INT),
    "price": ((STR,), INT),
    "signed": ((PARTY, STR), BOOL),
    "min": ((INT, INT), INT),
    "max": ((INT, INT), INT),
    "abs": ((INT,), INT),
}

KEYWORDS = frozenset(
    "contract parties param let if else for in release to when complete refund then or and not true false"
    " sum all any maximum".split()
)


# ---------------------------------------------------------------- parsing


def _pos(x) -> tuple[int, int]:
    if isinstance(x, lark.Token):
        return x.line or 0, x.column or 0
    meta = x.meta
    return getattr(meta, "line", 0) or 0, getattr(meta, "column", 0) or 0


def _describe(tok: lark.Token) -> str:
    if tok.type == "$END":
        return "end of input"
    return repr(str(tok))


_TERMINAL_NAMES = {
    "NAME": "a name", "INT": "an integer", "STRING": "a string", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'",
    "EQUAL": "'='", "STAR": "'*'", "MINUS": "'-'", "PLUS": "'+'", "SLASH": "'/'", "PERCENT": "'%'",
    "LESSTHAN": "'<'", "MORETHAN": "'>'", "$END": "end of input",
}


def _expected(names) -> str:
    out = set()
    for n in names:
        try:
            pattern = _parser.get_terminal(n).pattern
            if pattern.type == "str":
                out.add(repr(pattern.value))
                continue
        except (KeyError, AttributeError):
            pass
        out.add(_TERMINAL_NAMES.get(n, n))
    return ", ".join(sorted(out))


def parse(source: str):
    """Source text -> lark tree; raise ContractError with the position on any syntax error."""
    if not isinstance(source, str):
        raise ContractError("contract source must be text")
    if len(source) > MAX_SOURCE:
        raise ContractError(f"contract source too long ({len(source)} > {MAX_SOURCE} characters)", 1, 1)
    try:
        return _parser.parse(source)
    except UnexpectedCharacters as e:
        ch = source[e.pos_in_stream] if 0 <= e.pos_in_stream < len(source) else "?"
        raise ContractError(f"unexpected character {ch!r}", e.line, e.column) from None
    except UnexpectedEOF as e:
        raise ContractError(f"unexpected end of input, expected {_expected(e.expected)}",
                            e.line if e.line and e.line > 0 else source.count("\n") + 1,
                            e.column if e.column and e.column > 0 else 1) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            lines = source.split("\n")
            line, col = len(lines), len(lines[-1]) + 1
        else:
            line, col = e.line, e.column
        raise ContractError(f"unexpected {_describe(tok)}, expected {_expected(e.accepts or e.expected)}",
                            line, col) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark input errors
        raise ContractError(f"syntax error: {e.__class__.__name__}", getattr(e, "line", 0),
                            getattr(e, "column", 0)) from None


_BIN = {"or_": "or", "and_": "and", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
        "add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}


def _int_literal(tok: lark.Token) -> int:
    text = str(tok)
    line, col = _pos(tok)
    if "__" in text or text.endswith("_"):
        raise ContractError(f"malformed integer {text!r}", line, col)
    value = int(text.replace("_", ""))
    if value >= INT_LIMIT:
        raise ContractError(f"integer literal too large: {text}", line, col)
    return value


def _expr(t, depth: int) -> Node:
    if depth > MAX_DEPTH:
        line, col = _pos(t)
        raise ContractError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", line, col)
    if isinstance(t, lark.Token):  # pragma: no cover - every atom is aliased
        raise ContractError(f"unexpected token {t!s}", *_pos(t))
    line, col = _pos(t)
    d = t.data
    c = t.children
    if d == "int_lit":
        return Lit(line, col, _int_literal(c[0]), INT)
    if d == "str_lit":
        return Lit(line, col, str(c[0])[1:-1], STR)
    if d == "true":
        return Lit(line, col, True, BOOL)
    if d == "false":
        return Lit(line, col, False, BOOL)
    if d == "var":
        return Var(line, col, str(c[0]))
    if d == "call":
        args = tuple(_expr(a, depth + 1) for a in c[1:] if a is not None)
        return Call(line, col, str(c[0]), args)
    if d in ("sum_of", "all_of", "any_of", "maximum_of"):
        return Agg(line, col, d[:-3], str(c[0]), *(_expr(x, depth + 1) for x in c[1:]))
    if d == "neg":
        return Unary(line, col, "-", _expr(c[0], depth + 1))
    if d == "not_":
        return Unary(line, col, "not", _expr(c[0], depth + 1))
    if d == "cond":
        return Cond(line, col, *(_expr(x, depth + 1) for x in c))
    if d in _BIN:
        return Binary(line, col, _BIN[d], _expr(c[0], depth + 1), _expr(c[1], depth + 1))
    raise ContractError(f"unexpected construct {d}", line, col)  # pragma: no cover


def _block(children, depth: int) -> tuple:
    return tuple(_stmt(s, depth) for s in children)


def _stmt(t, depth: int) -> Node:
    line, col = _pos(t)
    if depth > MAX_DEPTH:
        raise ContractError(f"statements nested too deeply (more than {MAX_DEPTH} levels)", line, col)
    d, c = t.data, t.children
    if d == "let":
        return Let(line, col, str(c[0]), _expr(c[1], 1))
    if d == "if_stmt":
        other: tuple = ()
        if len(c) > 2 and c[2] is not None:
            other = (_stmt(c[2], depth + 1),) if c[2].data == "if_stmt" else _block(c[2].children, depth + 1)
        return If(line, col, _expr(c[0], 1), _block(c[1].children, depth + 1), other)
    if d == "for_":
        return For(line, col, str(c[0]), _expr(c[1], 1), _expr(c[2], 1), _block(c[3].children, depth + 1))
    if d == "release":
        when = _expr(c[3], 1) if len(c) > 3 and c[3] is not None else None
        return ReleaseStmt(line, col, _expr(c[0], 1), _expr(c[1], 1), _expr(c[2], 1), when)
    if d == "complete":
        return Complete(line, col, _expr(c[0], 1))
    if d == "refund":
        return Refund(line, col, _expr(c[0], 1))
    raise ContractError(f"unexpected statement {d}", line, col)  # pragma: no cover


def _declarations(tree):
    header, *rest = tree.children
    name = str(header.children[0])
    roles: tuple[str, ...] | None = None
    min_parties = 1
    seen_parties = False
    role_pos: dict[str, tuple[int, int]] = {}
    params: list[Param] = []
    stmts = []
    for item in rest:
        line, col = _pos(item)
        if item.data in ("parties_fixed", "parties_any"):
            if seen_parties:
                raise ContractError("parties declared twice", line, col)
            seen_parties = True
            if item.data == "parties_fixed":
                roles = tuple(str(x) for x in item.children)
                for x in item.children:
                    if str(x) in role_pos:
                        raise ContractError(f"party {str(x)!r} declared twice", *_pos(x))
                    role_pos[str(x)] = _pos(x)
                min_parties = len(roles)
            else:
                n = item.children[0] if item.children else None
                min_parties = _int_literal(n) if n is not None else 1
        elif item.data == "param":
            pname, ptype = str(item.children[0]), str(item.children[1])
            if ptype not in TYPES:
                tl, tc = _pos(item.children[1])
                raise ContractError(f"unknown type {ptype!r} (types: {', '.join(TYPES)})", tl, tc)
            params.append(Param(pname, ptype, *_pos(item.children[0])))
        else:
            stmts.append(item)
    if not seen_parties:
        raise ContractError("missing 'parties' declaration", 1, 1)
    return name, roles, min_parties, tuple(params), stmts, role_pos


# ---------------------------------------------------------------- checking


class _Scope:
    def __init__(self, names: dict[str, str]) -> None:
        self.frames = [dict(names)]

    def lookup(self, name: str) -> str | None:
        for f in reversed(self.frames):
            if name in f:
                return f[name]
        return None

    def define(self, name: str, typ: str, node: Node) -> None:
        if name in KEYWORDS:
            raise ContractError(f"{name!r} is a keyword", node.line, node.column)
        if self.lookup(name) is not None:
            raise ContractError(f"name {name!r} is already defined (names cannot be redefined)",
                                node.line, node.column)
        self.frames[-1][name] = typ


def _check_expr(e: Node, scope: _Scope) -> str:
    if isinstance(e, Lit):
        return e.type
    if isinstance(e, Var):
        t = scope.lookup(e.name)
        if t is None:
            hint = " (a function: call it with parentheses)" if e.name in BUILTINS else ""
            raise ContractError(f"unknown name {e.name!r}{hint}", e.line, e.column)
        return t
    if isinstance(e, Call):
        sig = BUILTINS.get(e.fn)
        if sig is None:
            raise ContractError(f"unknown function {e.fn!r}", e.line, e.column)
        params, result = sig
        if len(e.args) != len(params):
            raise ContractError(
                f"{e.fn}() takes {len(params)} argument{'s' if len(params) != 1 else ''}, got {len(e.args)}",
                e.line, e.column)
        for i, (a, want) in enumerate(zip(e.args, params), 1):
            got = _check_expr(a, scope)
            if got != want:
                raise ContractError(f"argument {i} of {e.fn}() must be {want}, got {got}", a.line, a.column)
        return result
    if isinstance(e, Unary):
        t = _check_expr(e.operand, scope)
        want = INT if e.op == "-" else BOOL
        if t != want:
            raise ContractError(f"operator {e.op!r} needs {want}, got {t}", e.line, e.column)
        return want
    if isinstance(e, Binary):
        lt, rt = _check_expr(e.left, scope), _check_expr(e.right, scope)
        if e.op in ("and", "or"):
            if lt != BOOL or rt != BOOL:
                raise ContractError(f"operator {e.op!r} needs bool operands, got {lt} and {rt}", e.line, e.column)
            return BOOL
        if e.op in ("==", "!="):
            if lt != rt:
                raise ContractError(f"cannot compare {lt} with {rt}", e.line, e.column)
            return BOOL
        if lt != INT or rt != INT:
            raise ContractError(f"operator {e.op!r} needs int operands, got {lt} and {rt}", e.line, e.column)
        return BOOL if e.op in ("<", "<=", ">", ">=") else INT
    if isinstance(e, Cond):
        if _check_expr(e.test, scope) != BOOL:
            raise ContractError("condition of 'if' must be bool", e.test.line, e.test.column)
        a, b = _check_expr(e.then, scope), _check_expr(e.other, scope)
        if a != b:
            raise ContractError(f"branches of 'if' have different types: {a} and {b}", e.line, e.column)
        return a
    if isinstance(e, Agg):
        _want(e.lo, scope, INT, "start of range")
        _want(e.hi, scope, INT, "end of range")
        scope.frames.append({})
        try:
            scope.define(e.var, INT, e)
            want = BOOL if e.kind in ("all", "any") else INT
            _want(e.body, scope, want, f"the body of {e.kind}()")
        finally:
            scope.frames.pop()
        return want
    raise ContractError("unknown expression", e.line, e.column)  # pragma: no cover


def _want(e: Node, scope: _Scope, typ: str, what: str) -> None:
    got = _check_expr(e, scope)
    if got != typ:
        raise ContractError(f"{what} must be {typ}, got {got}", e.line, e.column)


def _check_block(stmts: tuple, scope: _Scope) -> None:
    scope.frames.append({})
    try:
        for s in stmts:
            _check_stmt(s, scope)
    finally:
        scope.frames.pop()


def _check_stmt(s: Node, scope: _Scope) -> None:
    if isinstance(s, Let):
        t = _check_expr(s.value, scope)
        scope.define(s.name, t, s)
    elif isinstance(s, If):
        _want(s.test, scope, BOOL, "condition of 'if'")
        _check_block(s.then, scope)
        _check_block(s.other, scope)
    elif isinstance(s, For):
        _want(s.lo, scope, INT, "start of range")
        _want(s.hi, scope, INT, "end of range")
        scope.frames.append({})
        try:
            scope.define(s.var, INT, s)
            _check_block(s.body, scope)
        finally:
            scope.frames.pop()
    elif isinstance(s, ReleaseStmt):
        _want(s.giver, scope, PARTY, "the giver of a release")
        _want(s.index, scope, INT, "a chunk index")
        _want(s.receiver, scope, PARTY, "the receiver of a release")
        if s.when is not None:
            _want(s.when, scope, BOOL, "condition of 'when'")
    elif isinstance(s, (Complete, Refund)):
        _want(s.test, scope, BOOL, "condition of 'when'")
    else:  # pragma: no cover
        raise ContractError("unknown statement", s.line, s.column)


@lru_cache(maxsize=64)  # a Program is immutable; a new contract over a known source (new parties) skips the parse
def compile_source(source: str) -> Program:
    """Parse and check ``source``. Raises ContractError (with line and column) on any problem."""
    tree = parse(source)
    name, roles, min_parties, params, raw, role_pos = _declarations(tree)
    body = _block(raw, 0)
    scope = _Scope({})
    for r in roles or ():
        scope.define(r, PARTY, Node(*role_pos[r]))
    for p in params:
        scope.define(p.name, p.type, Node(p.line, p.column))
    scope.frames.append({})
    for s in body:
        _check_stmt(s, scope)
    return Program(name, roles, min_parties, params, body)
