"""Revocation notices: a device class (a broken TEE model) or one device stops being trusted.

A notice travels on ``/keyswitch/<net>/revocations/1``, signed by its
issuer's peer key (Ed25519, ``node.peerkey``). Who is believed:

* a notice whose **evidence this node can check itself** (a proof of
  cheating: two releases of one deposit key signed by one enclave; or any
  kind registered in ``checkers``) is acted on whoever signed it;
* a notice from a **configured signer** (``risk.revocation_signers``) is acted
  on only if the operator opted in (``risk.accept_signed_revocations``);
* anything else is refused, with the reason, and not forwarded.

Acting on a notice: the risk engine's class registry revokes the class (or
the reputation table marks the device a cheater), so its exposure drops to
zero at once; the offer book drops the device's offers; and if this node's
own deposits sit in a revoked device, it says so to the operator with the
action to take (``Notify("revocation.own-deposits", ...)``).

A node that assembles a proof of cheating itself (``node.protocols.outcomes``:
two release records of one key met in outcome reports) calls
``publish_proof``: it signs a device notice carrying the proof as evidence
and applies it here at once; it gossips it after a delay in
``[0, proof_delay)`` (a hash of its peer id and the device: deterministic,
different per node), at most once per device, and not at all when another
node's proof notice for that device reaches it first. (The timer comes back
through whichever protocol's handler returned it; the outcomes protocol hands
it on here.)

Validation is pure and labelled ``[REJECT]`` / ``[IGNORE]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import msgspec

from node import peerkey, wire
from node.protocols.base import (
    Command, Event, GossipReceived, Notify, Publish, SetTimer, Started, TimerFired, Validation, topic,
)

NOTICE_VERSION = 1
MAX_NOTICE_SIZE = 64 * 1024
MAX_CLOCK_SKEW = 600.0
KINDS = ("class", "device")


class RevocationNotice(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    kind: str  # "class" (e.g. "sgx" or "sgx:OutOfDate") | "device" (hex device id)
    target: str
    reason: str
    evidence_kind: str  # "" (none) | "cheating-proof" | a registered checker's name
    evidence: bytes
    issuer: str  # peer id; signs the notice
    issued_at: float


class SignedNotice(msgspec.Struct, array_like=True, frozen=True):
    body: bytes
    sig: bytes


def _signing_bytes(body: bytes) -> bytes:
    return b"keyswitch/revocation/1\x00" + body


def make_notice(notice: RevocationNotice, sign: Callable[[bytes], bytes]) -> bytes:
    body = wire.encode(notice)
    return wire.encode(SignedNotice(body, sign(_signing_bytes(body))))


@dataclass
class TrustConfig:
    signers: frozenset[str] = frozenset()  # peer ids whose bare notices may be believed
    accept_signed: bool = False  # the operator's opt-in for those
    #: evidence kind -> checker(notice) -> None if the evidence proves the notice, else why not
    checkers: dict[str, Callable[[RevocationNotice], str | None]] = field(default_factory=dict)


def cheating_proof_checker(net: str) -> Callable[[RevocationNotice], str | None]:
    """The checker for ``evidence_kind = "cheating-proof"``: the evidence is a wire-encoded
    ``cheating.CheatingProof`` (two releases of one key signed by one enclave), and it must name the
    notice's target device. Self-contained: any node checks it with no ledger and no trust."""

    def check(n: RevocationNotice) -> str | None:
        from node.contracts.protocol.cheating import CheatingProof, verify_cheating_proof

        if n.kind != "device":
            return "a cheating proof revokes one device, not a class"
        try:
            proof = wire.decode(n.evidence, CheatingProof, max_size=MAX_NOTICE_SIZE)
        except wire.WireError as exc:
            return f"malformed proof: {exc.reason}"
        got = verify_cheating_proof(proof, net=net)
        if isinstance(got, str):
            return got
        return None if got.hex() == n.target else "the proof names another device"

    return check


def validate_notice(data: bytes, *, net: str, now: float, trust: TrustConfig, seen: Callable[[bytes], bool]
                    ) -> tuple[Validation, RevocationNotice | None]:
    # [REJECT] Size, canonical encoding, version, network, kind.
    if len(data) > MAX_NOTICE_SIZE:
        return Validation.reject(f"over size: {len(data)} > {MAX_NOTICE_SIZE} bytes"), None
    try:
        signed = wire.decode(data, SignedNotice, max_size=MAX_NOTICE_SIZE)
        n = wire.decode(signed.body, RevocationNotice, max_size=MAX_NOTICE_SIZE)
    except wire.WireError as exc:
        return Validation.reject(f"malformed: {exc.reason}"), None
    if n.version != NOTICE_VERSION:
        return Validation.reject(f"unsupported notice version {n.version}"), None
    if n.net != net:
        return Validation.reject(f"wrong network {n.net!r} (we are {net!r})"), None
    if n.kind not in KINDS:
        return Validation.reject(f"kind must be one of {', '.join(KINDS)}, got {n.kind!r}"), None
    if n.kind == "device":
        try:
            if len(bytes.fromhex(n.target)) != 32:
                raise ValueError
        except ValueError:
            return Validation.reject("a device target is a 32-byte hex device id"), None
    elif not n.target or len(n.target) > 80:
        return Validation.reject("a class target is 1..80 characters"), None
    if len(n.reason) > 500:
        return Validation.reject("reason over 500 characters"), None
    # [REJECT] Signed by the issuer's peer key.
    if not peerkey.verify(n.issuer, _signing_bytes(signed.body), signed.sig):
        return Validation.reject("bad signature (not by the issuer's identity key)"), None
    # [IGNORE] Not from the future; not seen before.
    if n.issued_at > now + MAX_CLOCK_SKEW:
        return Validation.ignore(f"issued {n.issued_at - now:.0f} s in the future"), None
    if seen(signed.body):
        return Validation.ignore("duplicate notice"), None
    # [REJECT] Evidence, when given, proves the notice; [IGNORE] otherwise the signer must be trusted.
    if n.evidence_kind:
        check = trust.checkers.get(n.evidence_kind)
        if check is None:
            return Validation.ignore(f"cannot check evidence of kind {n.evidence_kind!r} here"), None
        why = check(n)
        if why:
            return Validation.reject(f"evidence does not prove the notice: {why}"), None
        return Validation.accept(), n
    if n.issuer not in trust.signers:
        return Validation.ignore("signer not trusted: a notice without checkable evidence needs a configured "
                                 "signer"), None
    if not trust.accept_signed:
        return Validation.ignore("signed notices not accepted: the operator has not opted in "
                                 "(risk.accept_signed_revocations)"), None
    return Validation.accept(), n


class RevocationProtocol:
    """Sans-IO revocation gossip. ``engine`` is a ``RiskEngine`` (its book, reputation and classes);
    ``own_devices`` returns this node's own device ids (hex) -> deposits count, to flag to the operator."""

    def __init__(self, *, net: str, engine, trust: TrustConfig | None = None,
                 own_devices: Callable[[], dict[str, int]] = dict, own_class: Callable[[], str] = lambda: "",
                 sign: Callable[[bytes], bytes] | None = None, proof_delay: float = 2.0) -> None:
        self.net = net
        self.topic = topic(net, "revocations", 1)
        self.topics = [self.topic]
        self.stream_protocols: list[str] = []
        self.engine = engine
        self.trust = trust or TrustConfig()
        self.own_devices = own_devices
        self.own_class = own_class
        self.applied: list[RevocationNotice] = []
        self._seen: set[bytes] = set()
        self.reasons: dict[str, int] = {}
        self.local_peer = ""
        self.sign = sign  # this node's peer key (``PeerSigner.sign``): signs the proofs it assembles
        self.proven: set[bytes] = set()  # devices revoked here on a proof of cheating (received or our own)
        self.proofs_published = 0
        self.proof_delay = proof_delay
        self._pending_proofs: dict[bytes, bytes] = {}  # device -> our signed proof notice, not yet gossiped

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        if topic_ != self.topic:
            return Validation.ignore(f"not our topic {topic_}")
        v, _ = validate_notice(data, net=self.net, now=now, trust=self.trust, seen=self._seen_body)
        if v.result.value != "accept":
            key = f"{v.result.value}: {v.reason.split(':', 1)[0][:60]}"
            self.reasons[key] = self.reasons.get(key, 0) + 1
        return v

    def _seen_body(self, body: bytes) -> bool:
        return body in self._seen

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, Started):
            self.local_peer = event.local_peer
        elif isinstance(event, GossipReceived) and event.topic == self.topic:
            v, n = validate_notice(event.data, net=self.net, now=now, trust=self.trust, seen=self._seen_body)
            if n is not None:
                self._seen.add(wire.decode(event.data, SignedNotice).body)
                return self.apply(n, now)
        elif isinstance(event, TimerFired):
            return self._on_timer(event.name)
        return []

    def publish(self, notice_bytes: bytes, now: float) -> list[Command]:
        """Issue this node's own notice (already signed by its peer key): this node trusts its own
        operator, so it is applied here at once; other nodes believe it per their own trust."""
        n = self._take_own(notice_bytes, now)
        return [Publish(self.topic, notice_bytes)] + self.apply(n, now)

    def _take_own(self, notice_bytes: bytes, now: float) -> RevocationNotice:
        own = TrustConfig(self.trust.signers | {self.local_peer} if self.local_peer else self.trust.signers,
                          True, self.trust.checkers)
        v, n = validate_notice(notice_bytes, net=self.net, now=now, trust=own, seen=self._seen_body)
        if n is None:
            raise ValueError(f"notice refused before sending: {v.reason}")
        self._seen.add(wire.decode(notice_bytes, SignedNotice).body)
        return n

    def publish_proof(self, proof, device: bytes, now: float) -> list[Command]:
        """Act on a proof of cheating this node assembled (a ``cheating.CheatingProof`` naming ``device``):
        sign a device notice with the proof as its evidence and apply it here at once; gossip it after a
        delay in ``[0, proof_delay)`` (deterministic per node and device) unless another node's proof of
        the same device arrives first, so a network that assembles the proof everywhere at once does not
        flood it N times. Without a signer the device is still dropped here."""
        if device in self.proven:
            return []
        from node.contracts.spec import ReleaseBody

        try:
            key = wire.decode(wire.decode(proof.first, wire.Signed).body, ReleaseBody).deposit_pub.hex()[:16]
        except wire.WireError:
            key = "?"
        reason = f"proof of cheating: its enclave released deposit key {key}... twice"
        notice = RevocationNotice(NOTICE_VERSION, self.net, "device", device.hex(), reason, "cheating-proof",
                                  wire.encode(proof), self.local_peer, now)
        if self.sign is None or not self.local_peer:
            return self.apply(notice, now)
        data = make_notice(notice, self.sign)
        try:
            n = self._take_own(data, now)
        except ValueError as exc:
            return [Notify("revocation.proof-refused", {"target": device.hex(), "reason": str(exc)})]
        self._pending_proofs[device] = data
        jitter = int.from_bytes(hashlib.sha256(self.local_peer.encode() + device).digest()[:4], "big") / 2 ** 32
        return self.apply(n, now) + [SetTimer(f"revocation.proof:{device.hex()}", now + self.proof_delay * jitter)]

    def _on_timer(self, name: str) -> list[Command]:
        what, _, target = name.partition(":")
        if what != "revocation.proof":
            return []
        try:
            data = self._pending_proofs.pop(bytes.fromhex(target), None)
        except ValueError:
            return []
        if data is None:  # another node's proof of this device reached us first
            return []
        self.proofs_published += 1
        return [Publish(self.topic, data)]

    def apply(self, n: RevocationNotice, now: float) -> list[Command]:
        self.applied.append(n)
        if n.kind == "device" and n.evidence_kind == "cheating-proof":
            self.proven.add(bytes.fromhex(n.target))
            if n.issuer != self.local_peer:  # someone else gossiped the proof: ours need not be
                self._pending_proofs.pop(bytes.fromhex(n.target), None)
        cmds: list[Command] = []
        if n.kind == "class":
            self.engine.caps.classes.revoke(n.target, n.reason)
            dropped = self._drop_class(n.target)
            mine = self.own_class()
            hit = bool(mine) and self.engine.caps.classes.is_revoked(mine) is not None
            own = self.own_devices() if hit else {}
        else:
            dev = bytes.fromhex(n.target)
            rec = self.engine.reputation.record(dev)
            if rec is None:
                self.engine.reputation.observe(dev, "", "unknown", now)
            self.engine.reputation.mark_cheater(dev, now)
            dropped = self.engine.book.drop_device(dev)
            own = {k: v for k, v in self.own_devices().items() if k == n.target}
        cmds.append(Notify("revocation.applied", {"kind": n.kind, "target": n.target, "reason": n.reason,
                                                  "offers_dropped": dropped, "issuer": n.issuer,
                                                  "evidence": n.evidence_kind}))
        if own:
            cmds.append(Notify("revocation.own-deposits", {
                "target": n.target, "reason": n.reason, "deposits": sum(own.values()),
                "action": "sweep them home: keyswitch deposits, then keyswitch vault withdraw for each "
                          "(POST /v1/sweep)"}))
        return cmds

    def _drop_class(self, name: str) -> int:
        book = self.engine.book
        n = 0
        for dev_id, dclass in list(book.devices()):
            if self.engine.caps.classes.is_revoked(dclass) is not None:
                n += book.drop_device(dev_id)
        return n

    def status(self) -> dict:
        return {"applied": [{"kind": n.kind, "target": n.target, "reason": n.reason, "issuer": n.issuer,
                             "evidence": n.evidence_kind} for n in self.applied],
                "reasons": dict(self.reasons), "proofs_published": self.proofs_published}

