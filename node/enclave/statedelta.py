"""What changed in the enclave's state since its last durable save, as a record the sealed journal appends.

The state (``core_state.State``) is an ``array_like`` msgspec struct: its msgpack form is an array of its
fields, and a list field is an array of its elements. ``Layout.cut`` cuts a state into those pieces, each
encoded on its own (a scalar field's bytes, or a list field's list of element bytes), and returns with them
the ``Delta`` from the previous cut: the scalar fields that changed and, per list field, its new length and
the elements (by index) that changed or were added. ``Layout.apply`` replays a delta onto a cut and
``Layout.join`` puts a cut back together as the very bytes msgspec encodes for the whole state.

So a release writes its key record and journal entry (a few hundred bytes), not the key table and journal of
the enclave's whole life (about 0.5 kB per swap, megabytes after a few thousand). A removal in the middle of a
list (a contract forgotten) rewrites the elements after it: those lists are short.

Pure functions of bytes and structs: no I/O, nothing of the host (the enclave package imports nothing of it).
"""

from __future__ import annotations

import copy
import itertools
import operator
import typing

import msgspec

DELTA_VERSION = 1
#: bounds of a delta read back (it authenticates, so only a bug could break them; checked anyway)
MAX_LIST = 1 << 24
MAX_FIELDS = 64

_IMMUTABLE = (int, str, bytes, bool, float)


class Change(msgspec.Struct, array_like=True, frozen=True):
    """One field: a scalar's new encoding (``length`` -1), or a list's new length and changed elements."""

    field: int
    value: bytes = b""
    length: int = -1
    items: list[tuple[int, bytes]] = []


class Delta(msgspec.Struct, array_like=True, frozen=True):
    v: int
    fields: int  # how many fields the state has: a delta of another layout is refused
    changes: list[Change]


class DeltaError(ValueError):
    """A delta that does not fit the state it is applied to."""


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _plain(typ) -> bool:
    """A struct type whose fields are all immutable (scalars, or frozen structs of immutable fields): a shallow
    copy is a faithful snapshot of an element, and ``==`` (msgspec's, in C) tells whether it changed without
    encoding it."""
    if getattr(typ, "__struct_config__", None) is None:
        return False
    return all(f.type in _IMMUTABLE or (_plain(f.type) and f.type.__struct_config__.frozen)
               for f in msgspec.structs.fields(typ))


class Layout:
    """How one struct type (``State``) is cut into parts, and what changed since the last cut.

    ``cut(state)`` returns the parts and the delta from the previous cut (None for the first, or after
    ``reset``). It remembers, per list field, a snapshot of each element and its encoding: for elements of a
    plain type (``_plain``) the snapshot is the element itself when frozen, a shallow copy otherwise, and an
    element equal to its snapshot keeps its encoding (no encoding, no byte comparison); elements of other types
    (contract states, with nested lists) are encoded every cut and compared as bytes (those lists are short).
    A cut that raises changes nothing. A cut whose seal then fails stays the base of the next delta: that
    delta is never written, the store's next save after a failure being a whole snapshot
    (``SealedStore._save``)."""

    def __init__(self, typ: type) -> None:
        self.typ = typ
        fields = msgspec.structs.fields(typ)
        self.names = [f.name for f in fields]
        if not getattr(typ, "__struct_config__").array_like or len(self.names) > MAX_FIELDS:
            raise TypeError(f"{typ.__name__}: an array_like struct of at most {MAX_FIELDS} fields is expected")
        self.is_list = [typing.get_origin(f.type) is list for f in fields]
        elem = [typing.get_args(f.type)[0] if lst else None for lst, f in zip(self.is_list, fields)]
        self.plain = [lst and _plain(t) for lst, t in zip(self.is_list, elem)]
        self.frozen = [bool(p and t.__struct_config__.frozen) for p, t in zip(self.plain, elem)]
        self._enc = msgspec.msgpack.Encoder()
        self._last: list | None = None  # the previous cut's parts
        self._snap: dict[int, list] = {}  # plain list field -> snapshots of its elements at the previous cut

    def cut(self, state) -> tuple[list, bytes | None]:
        enc = self._enc.encode
        last = self._last
        parts: list = []
        changes: list[Change] = []
        snaps: dict[int, list] = {}  # the new snapshots, kept only once the whole cut is made
        for i, name in enumerate(self.names):
            value = getattr(state, name)
            if not self.is_list[i]:
                b = enc(value)
                parts.append(b)
                if last is not None and last[i] != b:
                    changes.append(Change(i, value=b))
                continue
            if last is None or not self.plain[i]:
                cur = [enc(e) for e in value]
                if self.plain[i]:
                    snaps[i] = list(value) if self.frozen[i] else [copy.copy(e) for e in value]
                parts.append(cur)
                if last is not None:
                    old = last[i]
                    items = [(k, e) for k, e in enumerate(cur) if k >= len(old) or old[k] != e]
                    if items or len(cur) != len(old):
                        changes.append(Change(i, length=len(cur), items=items))
                continue
            snap, old = self._snap[i], last[i]
            n = min(len(snap), len(value))
            if self.frozen[i] and value[:n] == snap[:n]:  # in C, by identity: about 5 ns an element
                changed: list[int] = []
            else:  # in C: identity first, then msgspec's field-wise == (about 0.1 us an element)
                changed = list(itertools.compress(range(n), map(operator.ne, value[:n], snap[:n])))
            cur = old[:n]
            new_snap = snap[:n]
            items = []
            for k in changed:
                cur[k] = enc(value[k])
                new_snap[k] = value[k] if self.frozen[i] else copy.copy(value[k])
                items.append((k, cur[k]))
            for k in range(n, len(value)):
                cur.append(enc(value[k]))
                new_snap.append(value[k] if self.frozen[i] else copy.copy(value[k]))
                items.append((k, cur[k]))
            snaps[i] = new_snap
            parts.append(cur)
            if items or len(cur) != len(old):
                changes.append(Change(i, length=len(cur), items=items))
        self._last, self._snap = parts, snaps
        if last is None:
            return parts, None
        return parts, msgspec.msgpack.encode(Delta(DELTA_VERSION, len(parts), changes))

    def parts(self, state) -> list:
        """The state's parts, with no memory kept (a load's working copy)."""
        enc = self._enc.encode
        return [[enc(e) for e in getattr(state, n)] if lst else enc(getattr(state, n))
                for n, lst in zip(self.names, self.is_list)]

    def join(self, parts: list) -> bytes:
        chunks = [_array_header(len(parts))]
        for p in parts:
            if isinstance(p, list):
                chunks.append(_array_header(len(p)))
                chunks.extend(p)
            else:
                chunks.append(p)
        return b"".join(chunks)

    def apply(self, parts: list, delta: bytes) -> None:
        """Apply ``delta`` to the cut ``parts`` in place (the caller's own cut: a load's working copy).
        DeltaError if it does not fit (the cut is then of no use)."""
        try:
            d = msgspec.msgpack.decode(delta, type=Delta)
        except msgspec.MsgspecError as exc:
            raise DeltaError(f"delta does not decode: {exc}") from None
        # a delta sealed by an older build names fewer fields (fields are only ever added at the end, with a
        # default): the ones after them did not change
        if d.v != DELTA_VERSION or not 0 < d.fields <= len(parts) or len(parts) != len(self.names):
            raise DeltaError(f"delta v{d.v} of {d.fields} fields does not fit a state of {len(parts)}")
        for c in d.changes:
            if not 0 <= c.field < d.fields:
                raise DeltaError(f"delta names field {c.field}")
            if not self.is_list[c.field]:
                if c.length != -1 or c.items:
                    raise DeltaError(f"field {c.field} is not a list")
                parts[c.field] = c.value
                continue
            if not 0 <= c.length <= MAX_LIST:
                raise DeltaError(f"list field {c.field}: length {c.length}")
            cur = parts[c.field]
            del cur[c.length:]
            for k, e in c.items:
                if not 0 <= k < c.length or k > len(cur):
                    raise DeltaError(f"list field {c.field}: element {k} of {c.length}")
                if k == len(cur):
                    cur.append(e)
                else:
                    cur[k] = e
            if len(cur) != c.length:
                raise DeltaError(f"list field {c.field}: {len(cur)} elements for a length of {c.length}")
