"""node.contracts: the contract language run inside the enclave (pure: no I/O).

Use::

    from node.contracts import Terms, View, Chunk, Transfer, compile_terms, next_release, stdlib

    contract = compile_terms(Terms(stdlib.source("swap"), params, parties))
    contract.contract_id            # 32 bytes; every party's enclave signs it
    next_release(contract, view)    # -> list[Release] allowed now

See README.md in this package for the language and the standard library.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import stdlib
from .errors import ContractError, ContractRuntimeError, StepLimitExceeded
from .interp import DEFAULT_STEP_LIMIT, evaluate_program
from .lang import PARTY, Program, compile_source
from .model import COMPLETE, REFUNDING, RUNNING, Chunk, Outcome, Release, Terms, Transfer, View, ViewError

__all__ = [
    "COMPLETE", "REFUNDING", "RUNNING", "Chunk", "Contract", "ContractError", "ContractRuntimeError",
    "Outcome", "Release", "StepLimitExceeded", "Terms", "Transfer", "View", "ViewError",
    "compile_terms", "contract_id", "evaluate", "next_release", "stdlib",
]

_PY_TYPES = {"int": int, "str": str, "bool": bool, "party": str}


@dataclass(frozen=True)
class Contract:
    """A compiled contract bound to its terms. ``contract_id`` = SHA-256 of ``terms.encode()``."""

    terms: Terms
    program: Program
    contract_id: bytes
    step_limit: int = DEFAULT_STEP_LIMIT

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def parties(self) -> tuple[str, ...]:
        return self.terms.parties


def contract_id(terms: Terms) -> bytes:
    """SHA-256 over the deterministic encoding of source text, parameters and parties."""
    return hashlib.sha256(terms.encode()).digest()


def compile_terms(terms: Terms, *, step_limit: int = DEFAULT_STEP_LIMIT) -> Contract:
    """Parse and check the source, and check the terms against its declarations.

    Raises ContractError (with line and column where there is one) on any problem.
    """
    program = compile_source(terms.source)
    parties = terms.parties
    if any(not isinstance(p, str) or not p for p in parties):
        raise ContractError("parties must be non-empty strings")
    if len(set(parties)) != len(parties):
        raise ContractError("a party appears twice in the terms")
    if program.roles is not None and len(parties) != len(program.roles):
        raise ContractError(f"contract {program.name!r} needs {len(program.roles)} parties "
                            f"({', '.join(program.roles)}), terms give {len(parties)}")
    if len(parties) < program.min_parties:
        raise ContractError(f"contract {program.name!r} needs at least {program.min_parties} parties, "
                            f"terms give {len(parties)}")
    declared = {p.name for p in program.params}
    for extra in sorted(set(terms.params) - declared):
        raise ContractError(f"parameter {extra!r} is not declared by contract {program.name!r}")
    for p in program.params:
        if p.name not in terms.params:
            raise ContractError(f"missing parameter {p.name!r} ({p.type})", p.line, p.column)
        v = terms.params[p.name]
        if type(v) is not _PY_TYPES[p.type]:
            raise ContractError(f"parameter {p.name!r} must be {p.type}, got {type(v).__name__}",
                                p.line, p.column)
        if p.type == PARTY and v not in parties:
            raise ContractError(f"parameter {p.name!r} names {v!r}, who is not a party", p.line, p.column)
        if p.type == "int" and not -(1 << 127) <= v < (1 << 127):
            raise ContractError(f"parameter {p.name!r} out of range", p.line, p.column)
    return Contract(terms, program, contract_id(terms), step_limit)


def evaluate(contract: Contract, view: View, *, step_limit: int | None = None) -> Outcome:
    """Everything the contract allows now, and its status (running / complete / refunding)."""
    return evaluate_program(contract.program, contract.terms.parties, dict(contract.terms.params), view,
                            contract.step_limit if step_limit is None else step_limit)


def next_release(contract: Contract, view: View, giver: str | None = None) -> list[Release]:
    """The releases allowed now that have not happened yet (optionally only ``giver``'s).

    The host asks this each round, performs some of them, records each as a
    Transfer in the next view, and asks again.
    """
    return [r for r in evaluate(contract, view).releases if giver is None or r.giver == giver]
