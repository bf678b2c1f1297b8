"""The TEST build of the enclave boundary: the production handler table plus the raw key operations that
are not in it (``release``, ``resend``, ``accept``: a key released, resent or accepted outside any contract).

Only tests import this module (it lives under ``tests/``, which the package does not ship): neither the daemon
nor any setting can select it. ``python -m node.enclave`` and ``InProcessEnclave`` serve only
``node.enclave.messages.handle``, which refuses these operations (code ``test-only-op``).
"""

from __future__ import annotations

from typing import Union

import msgspec

from node import wire
from node.tee.client import InProcessEnclave, SubprocessEnclave
from node.enclave import messages as m
from node.enclave.core import EnclaveCore, Refusal


class ReleaseKey(msgspec.Struct, tag="release", array_like=True, frozen=True):
    pub: bytes
    recipient: bytes
    context: bytes


class ResendRelease(msgspec.Struct, tag="resend", array_like=True, frozen=True):
    pub: bytes
    recipient: bytes
    context: bytes


class AcceptKey(msgspec.Struct, tag="accept", array_like=True, frozen=True):
    ciphertext: bytes
    context: bytes
    expected_pub: bytes


RawOp = Union[ReleaseKey, ResendRelease, AcceptKey]


class RawRequest(msgspec.Struct, array_like=True, frozen=True):
    v: int
    id: int
    op: RawOp


def handle_test(core: EnclaveCore, payload: bytes) -> bytes:
    """The test handler table: a test-only op is served here, anything else by the production ``handle``."""
    try:
        req = wire.decode(payload, RawRequest, max_size=m.MAX_FRAME)
    except wire.WireError:
        return m.handle(core, payload)
    op = req.op
    try:
        if isinstance(op, ReleaseKey):
            out = core.release_key(op.pub, op.recipient, op.context)
        elif isinstance(op, ResendRelease):
            out = core.resend_release(op.pub, op.recipient, op.context)
        else:
            out = core.accept_key(op.ciphertext, op.context, op.expected_pub)
        resp = m._ok(req.id, out)
    except Refusal as r:
        resp = m.Response(m.PROTOCOL_VERSION, req.id, False, r.code, r.reason)
    return m._enc.encode(resp)


class _RawCalls:
    """The three raw calls, over whatever ``_call`` the enclave client has."""

    def release_key(self, deposit_pub: bytes, recipient_enc_pub: bytes, context: bytes) -> bytes:
        return self._call(ReleaseKey(deposit_pub, recipient_enc_pub, context), bytes)

    def resend_release(self, deposit_pub: bytes, recipient_enc_pub: bytes, context: bytes) -> bytes:
        return self._call(ResendRelease(deposit_pub, recipient_enc_pub, context), bytes)

    def accept_key(self, ciphertext: bytes, context: bytes, expected_pub: bytes) -> bytes:
        return self._call(AcceptKey(ciphertext, context, expected_pub), bytes)


class RawOps(_RawCalls, InProcessEnclave):
    """An in-process enclave served by the test handler table (``release_key``, ``resend_release``,
    ``accept_key`` on top of the production calls). Mix it in AFTER another ``InProcessEnclave`` subclass
    (``class X(BrokenEnclave, RawOps)``) so that subclass's ``super()`` calls reach these."""

    def _roundtrip(self, payload: bytes) -> bytes:
        from node.tee.client import EnclaveUnavailable

        if self._core is None:
            raise EnclaveUnavailable("enclave closed")
        try:
            return handle_test(self._core, payload)
        finally:
            self._core.flush()


class RawOpsSubprocess(_RawCalls, SubprocessEnclave):
    """The enclave process of the test build (``python -m tests.tee.testbuild_server``): the production
    server loop with the test handler table."""

    def __init__(self, datadir, **kw) -> None:
        import sys

        kw.setdefault("command", [sys.executable, "-m", "tests.tee.testbuild_server", "--datadir", str(datadir)])
        super().__init__(datadir, **kw)


def attest(*enclaves, net: str = "dev") -> None:
    """Every enclave verifies every other's quote itself (``attest_peer``, I3), as the contract protocol's
    host has them do when a party's quote arrives."""
    for a in enclaves:
        verifies(a, *(b for b in enclaves if b is not a), net=net)


def verifies(enclave, *others, net: str = "dev") -> None:
    """``enclave`` verifies each of ``others``' quotes itself (``attest_peer``), and only that way round (an
    owner's enclave and its escrow holders and recovery enclave, as the escrow desk and the key-escrow
    protocol's asks have them do)."""
    for b in others:
        binding = b.binding_for(net, "peer")
        enclave.attest_peer(binding, b.quote(binding))
