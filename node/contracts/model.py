"""Values exchanged between the host and a contract: terms, the view, releases, outcomes.

Everything here is immutable and has one canonical order, so that the same
inputs give the same outputs byte for byte (``Outcome.encode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

import msgspec

#: Status of a contract after an evaluation.
RUNNING = "running"
COMPLETE = "complete"
REFUNDING = "refunding"


class ViewError(ValueError):
    """The host handed in an inconsistent view (a bug on the host side, not in the contract)."""


class Chunk(msgspec.Struct, array_like=True, frozen=True):
    """One deposit committed to the contract, with values verified by the host.

    ``amount`` is in the asset's smallest unit, ``usd_cents`` in US cents.
    """

    asset: str
    amount: int
    usd_cents: int


class Transfer(msgspec.Struct, array_like=True, frozen=True, order=True):
    """Chunk ``index`` of ``giver`` has moved to ``receiver`` (``receiver == giver``: returned).

    For the host's own chunks: released by its enclave. For the others': received
    and verified by its enclave (the key matches the address, the funds are there).
    """

    giver: str
    index: int
    receiver: str


class Release(msgspec.Struct, array_like=True, frozen=True):
    """The enclave of ``giver`` may now release the key of its chunk ``index`` to ``receiver``.

    ``receiver == giver`` means: hand the key back to its owner (refund).
    """

    giver: str
    index: int
    receiver: str


class Outcome(msgspec.Struct, array_like=True, frozen=True):
    """Result of one evaluation.

    ``releases``: every release allowed now, in a canonical order (party order of
    the terms, then chunk index). ``status``: ``running``, ``complete`` or
    ``refunding``. ``settled``: the contract has ended and every chunk has moved,
    so the host can stop asking.
    """

    releases: tuple[Release, ...]
    status: str
    settled: bool

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self)


def _int(name: str, value: object) -> int:
    if type(value) is not int:
        raise ViewError(f"{name} must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class View:
    """What a contract can read. Build it with plain dicts and iterables; it freezes them.

    * ``chunks``: party -> its committed chunks, in index order;
    * ``moved``: the transfers that have happened (see :class:`Transfer`);
    * ``heights``: asset -> ledger height (time-locks count blocks: no trusted clock);
    * ``prices``: asset -> integer US cents per unit, from the price feed;
    * ``signatures``: (party, message) pairs whose signatures the host has verified
      (over the contract id and the message).
    """

    chunks: Mapping[str, Iterable[Chunk]] = field(default_factory=dict)
    moved: Iterable[Transfer] = ()
    heights: Mapping[str, int] = field(default_factory=dict)
    prices: Mapping[str, int] = field(default_factory=dict)
    signatures: Iterable[tuple[str, str]] = ()

    def __post_init__(self) -> None:
        chunks = {}
        for party, cs in dict(self.chunks).items():
            cs = tuple(cs)
            for c in cs:
                if not isinstance(c, Chunk):
                    raise ViewError(f"chunks of {party!r} must be Chunk values")
                _int("amount", c.amount)
                _int("usd_cents", c.usd_cents)
                if c.amount < 0 or c.usd_cents < 0:
                    raise ViewError(f"negative value in a chunk of {party!r}")
            chunks[str(party)] = cs
        raw = tuple(self.moved)
        if not all(isinstance(t, Transfer) for t in raw):
            raise ViewError("moved must hold Transfer values")
        moved = tuple(sorted(set(raw)))
        where: dict[tuple[str, int], str] = {}
        for t in moved:
            n = len(chunks.get(t.giver, ()))
            if not 0 <= t.index < n:
                raise ViewError(f"transfer of unknown chunk {t.giver}[{t.index}]")
            if (t.giver, t.index) in where:
                raise ViewError(f"chunk {t.giver}[{t.index}] moved twice")
            where[(t.giver, t.index)] = t.receiver
        heights = {str(k): _int("height", v) for k, v in dict(self.heights).items()}
        prices = {str(k): _int("price", v) for k, v in dict(self.prices).items()}
        sigs = frozenset((str(p), str(m)) for p, m in self.signatures)
        object.__setattr__(self, "chunks", MappingProxyType(dict(sorted(chunks.items()))))
        object.__setattr__(self, "moved", moved)
        object.__setattr__(self, "heights", MappingProxyType(dict(sorted(heights.items()))))
        object.__setattr__(self, "prices", MappingProxyType(dict(sorted(prices.items()))))
        object.__setattr__(self, "signatures", tuple(sorted(sigs)))
        object.__setattr__(self, "_where", MappingProxyType(where))
        object.__setattr__(self, "_sigs", sigs)

    def __hash__(self) -> int:  # mapping proxies are unhashable; hash the canonical content
        return hash((tuple((p, cs) for p, cs in self.chunks.items()), self.moved,
                     tuple(self.heights.items()), tuple(self.prices.items()), self.signatures))

    def receiver_of(self, party: str, index: int) -> str | None:
        """Where chunk ``index`` of ``party`` went, or None if it has not moved."""
        return self._where.get((party, index))  # type: ignore[attr-defined]

    def has_signature(self, party: str, message: str) -> bool:
        return (party, message) in self._sigs  # type: ignore[attr-defined]

    def with_moved(self, *transfers: Transfer) -> "View":
        """A copy with more transfers (for host loops and tests)."""
        return View(self.chunks, self.moved + tuple(transfers), self.heights, self.prices, self.signatures)

    def with_heights(self, **heights: int) -> "View":
        return View(self.chunks, self.moved, {**self.heights, **heights}, self.prices, self.signatures)

    def with_signature(self, party: str, message: str) -> "View":
        return View(self.chunks, self.moved, self.heights, self.prices, self.signatures + ((party, message),))


ParamValue = int | str | bool


@dataclass(frozen=True)
class Terms:
    """What the parties agree on: the source text, its parameters, and the parties.

    ``parties`` are the parties' identities (e.g. peer ids), in the order that
    binds them to the roles declared by ``parties a, b`` in the source.
    Parameter values are ``int`` (amounts in cents or smallest units, heights),
    ``str`` (asset names, messages) or ``bool``; a ``party`` parameter holds one
    of the identities.
    """

    source: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    parties: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(dict(self.params).items()))))
        object.__setattr__(self, "parties", tuple(self.parties))

    def encode(self) -> bytes:
        """Deterministic encoding (msgpack) that the contract id hashes."""
        for k, v in self.params.items():
            if type(v) not in (int, str, bool):
                raise TypeError(f"parameter {k!r}: only int, str and bool values are allowed")
        return msgspec.msgpack.encode(
            ["keyswitch/contract-terms/1", self.source, [[k, v] for k, v in self.params.items()],
             list(self.parties)]
        )
