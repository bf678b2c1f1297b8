"""The signed envelope every contract message travels in, sans-IO: size, canonical form, version, network, kind
and enclave signature checked in one place (``parse``), messages sealed by the enclave (``seal``).

Wire (``node.wire``: canonical MessagePack, size-bounded): every message is a ``wire.Signed`` envelope
``(version, net, kind, body, signer, sig)``. A ``release`` record (``node.contracts.spec.ReleaseBody``) is made
and signed inside the giver's enclave (domain "release", which a host cannot ask its enclave to sign); every
other kind is ``Enclave.sign("release-msg", signing_digest(...))``; an ``error`` is unsigned. Used by
``contract_run`` (``/keyswitch/contract-run/1``), ``keyescrow`` and the outcome reports (a release record
carried as evidence).
"""

from __future__ import annotations

import msgspec

from node import wire
from node.contracts.spec import ReleaseBody

VERSION = 1
SIGN_DOMAIN = "release"  # release records: signed inside the enclave's contract_release, tagged_hash("keyswitch/release", d)
MSG_DOMAIN = "release-msg"  # every other kind: Enclave.sign("release-msg", digest)
MAX_MESSAGE = 256 * 1024


class AckBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    round: int


class ErrorBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    round: int
    code: str
    reason: str


#: the kinds ``parse`` knows when it is given no ``bodies`` (a release record, its ack, an error)
BODIES = {"release": ReleaseBody, "ack": AckBody, "error": ErrorBody}


class MessageError(Exception):
    """A message refused; ``code`` is stable, ``reason`` one human line."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def signature_ok(env: wire.Signed) -> bool:
    from node.tee.client import verify_domain_sig

    domain = SIGN_DOMAIN if env.kind == "release" else MSG_DOMAIN
    return verify_domain_sig(env.signer, domain, env.digest(), env.sig)


def parse(data: bytes, *, net: str, kinds: frozenset[str] | set[str], bodies: dict | None = None
          ) -> tuple[wire.Signed, object]:
    """Decode and check one message (size, canonical form, version, network, kind, signature); ``bodies``
    maps kinds to body types (default: this protocol's)."""
    bodies = BODIES if bodies is None else bodies
    try:
        env = wire.decode(data, wire.Signed, max_size=MAX_MESSAGE)
    except wire.WireError as exc:
        raise MessageError("malformed", exc.reason) from None
    if env.version != VERSION:
        raise MessageError("version", f"unsupported version {env.version} (we speak {VERSION})")
    if env.net != net:
        raise MessageError("network", f"wrong network {env.net!r} (we are {net!r})")
    if env.kind not in bodies:
        raise MessageError("kind", f"unknown message kind {env.kind!r}")
    if env.kind not in kinds:
        raise MessageError("out-of-order", f"a {env.kind!r} message is not expected here")
    try:
        body = wire.decode(env.body, bodies[env.kind], max_size=MAX_MESSAGE)
    except wire.WireError as exc:
        raise MessageError("malformed", f"{env.kind} body: {exc.reason}") from None
    if env.kind == "error":
        return env, body
    if not signature_ok(env):
        raise MessageError("signature", f"bad enclave signature on {env.kind}")
    return env, body


def seal(enclave, sign_pub: bytes, net: str, kind: str, body) -> bytes:
    """A ``wire.Signed`` message of ``kind`` (any but "release", which only the enclave's contract calls sign),
    signed by ``enclave`` in the "release-msg" domain; ``sign_pub`` is that enclave's signing key."""
    raw = wire.encode(body)
    sig = enclave.sign(MSG_DOMAIN, wire.signing_digest(VERSION, net, kind, raw))
    return wire.encode(wire.Signed(VERSION, net, kind, raw, sign_pub, sig))


def message_digest(net: str, kind: str, body) -> tuple[bytes, bytes]:
    """(the encoded ``body``, the digest an enclave signs in the "release-msg" domain for it): for a signature
    made inside another enclave call (``contract_step``'s answer), then ``signed``."""
    raw = wire.encode(body)
    return raw, wire.signing_digest(VERSION, net, kind, raw)


def signed(sign_pub: bytes, net: str, kind: str, raw: bytes, sig: bytes) -> bytes:
    """The ``wire.Signed`` message ``seal`` makes, from a signature already made over ``message_digest``."""
    return wire.encode(wire.Signed(VERSION, net, kind, raw, sign_pub, sig))


def error_message(net: str, cid: bytes, rnd: int, code: str, reason: str) -> bytes:
    body = wire.encode(ErrorBody(cid, rnd, code, reason[:300]))
    return wire.encode(wire.Signed(VERSION, net, "error", body, b"", b""))
