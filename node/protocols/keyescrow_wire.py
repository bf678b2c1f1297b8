"""The key-escrow protocol's message bodies (``/keyswitch/key-escrow/1``; node/protocols/keyescrow.py has the
protocol and the wire table). Canonical MessagePack arrays (``node.wire``), carried in signed envelopes."""

from __future__ import annotations

import msgspec

from node.attest.binding import Binding
from node.contracts.protocol.envelope import ErrorBody
from node.enclave.contracts import PartySig, SplitShare


class HoldBody(msgspec.Struct, array_like=True, frozen=True):
    spec: bytes
    sigs: list[PartySig]
    shares: list[SplitShare]
    #: the owner's enclave binding and quote: a holder's enclave takes shares only from an owner it verified
    #: itself (I3), so the holder's host hands them to it (``attest_peer``) first
    binding: Binding | None = None
    quote: bytes = b""


class MovedBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    record: bytes


class HeldBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    held: list[tuple[int, int]]
    missing: list[int]


class AskBody(msgspec.Struct, array_like=True, frozen=True):
    spec: bytes
    sigs: list[PartySig]
    party: int
    index: int
    recipient: bytes
    #: the asking (beneficiary) enclave's binding and quote: the holder's enclave releases a share only to a
    #: beneficiary it verified itself (I3), so the holder's host hands them to it (``attest_peer``) first
    binding: Binding | None = None
    quote: bytes = b""


class ShareBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    party: int
    index: int
    ciphertext: bytes


BODIES = {"hold": HoldBody, "moved": MovedBody, "held": HeldBody, "ask": AskBody, "share": ShareBody,
          "error": ErrorBody}
