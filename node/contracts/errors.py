"""Errors of the contract language. Every error carries a 1-based line and column."""

from __future__ import annotations


class ContractError(Exception):
    """A bad contract: syntax, unknown name, type error, wrong arity, bad terms.

    ``line`` and ``column`` are 1-based positions in the source text (both 0
    when the error is about the terms rather than a place in the source).
    """

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        self.message = message
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line else ""
        super().__init__(f"{where}{message}")


class ContractRuntimeError(ContractError):
    """A contract failed while evaluating a view (division by zero, index out of range...)."""


class StepLimitExceeded(ContractRuntimeError):
    """Evaluation took more steps than allowed; the position is where the budget ran out."""
