"""Outcome reports: what happened to a chunk received in a contract, gossiped to everyone.

After a contract round the receiver of a key reports the outcome for the
device that released it: ``claimed`` (swept fine), ``double-spent`` (the funds
were gone: the spending transaction is named) or ``withheld`` (the key never
came). Reports travel on ``/keyswitch/<net>/outcomes/1``, signed by the
reporter's *enclave* (``Enclave.sign("outcome", digest)``), so a report is tied
to an attested device whose standing weighs it (``node.risk.reputation``).

Every node checks what it can on the ledger before weighing a report
(``ledger_check(report) -> LedgerCheck``): a double spend the ledger confirms
marks the device a cheater; one it refutes (the deposit is still unspent)
costs the reporter. Validation is pure and labelled ``[REJECT]`` / ``[IGNORE]``.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import msgspec

from node import wire
from node.protocols.base import Command, Event, GossipReceived, Notify, Publish, Validation, topic
from node.risk.reputation import LedgerCheck, Outcome

REPORT_VERSION = 1
MAX_REPORT_SIZE = 4 * 1024
MAX_CLOCK_SKEW = 600.0
MAX_AGE = 7 * 86_400.0
OUTCOMES = tuple(o.value for o in Outcome)


class OutcomeReport(msgspec.Struct, array_like=True, frozen=True):
    version: int
    net: str
    contract_id: bytes  # 32
    reporter: bytes  # the reporter enclave's 33-byte signing key
    subject: bytes  # 32-byte device id of the device that released (or withheld) the key
    outcome: str  # claimed | double-spent | withheld
    asset: str
    address: str  # the deposit address concerned
    txid: str  # the sweep (claimed) or the spending transaction (double-spent); "" for withheld
    issued_at: float


class SignedReport(msgspec.Struct, array_like=True, frozen=True):
    body: bytes
    sig: bytes  # Enclave.sign("outcome", sha256(body)) by ``reporter``


def report_digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def make_report(report: OutcomeReport, enclave_sign: Callable[[str, bytes], bytes]) -> bytes:
    body = wire.encode(report)
    return wire.encode(SignedReport(body, enclave_sign("outcome", report_digest(body))))


def validate_report(data: bytes, *, net: str, now: float, known_device: Callable[[bytes], bool],
                    seen: Callable[[bytes], bool]) -> tuple[Validation, OutcomeReport | None]:
    from node.offerbook import device_id_of
    from node.tee.client import verify_domain_sig

    # [REJECT] Size, canonical encoding, version, network, fields.
    if len(data) > MAX_REPORT_SIZE:
        return Validation.reject(f"over size: {len(data)} > {MAX_REPORT_SIZE} bytes"), None
    try:
        signed = wire.decode(data, SignedReport, max_size=MAX_REPORT_SIZE)
        r = wire.decode(signed.body, OutcomeReport, max_size=MAX_REPORT_SIZE)
    except wire.WireError as exc:
        return Validation.reject(f"malformed: {exc.reason}"), None
    if r.version != REPORT_VERSION:
        return Validation.reject(f"unsupported report version {r.version}"), None
    if r.net != net:
        return Validation.reject(f"wrong network {r.net!r} (we are {net!r})"), None
    if r.outcome not in OUTCOMES:
        return Validation.reject(f"outcome must be one of {', '.join(OUTCOMES)}, got {r.outcome!r}"), None
    if len(r.contract_id) != 32 or len(r.subject) != 32 or len(r.reporter) != 33:
        return Validation.reject("contract_id and subject are 32 bytes, reporter a 33-byte key"), None
    if r.outcome == "double-spent" and not r.txid:
        return Validation.reject("a double-spent report names the spending transaction"), None
    if device_id_of(r.reporter) == r.subject:
        return Validation.reject("a device cannot report on itself"), None
    # [REJECT] Signed by the reporter's enclave.
    if not verify_domain_sig(r.reporter, "outcome", report_digest(signed.body), signed.sig):
        return Validation.reject("bad signature (not by the reporter's enclave key)"), None
    # [IGNORE] Fresh, new, and from a device whose attestation this node has verified.
    if r.issued_at > now + MAX_CLOCK_SKEW:
        return Validation.ignore(f"issued {r.issued_at - now:.0f} s in the future"), None
    if r.issued_at < now - MAX_AGE:
        return Validation.ignore("too old"), None
    if seen(signed.body):
        return Validation.ignore("duplicate report"), None
    if not known_device(device_id_of(r.reporter)):
        return Validation.ignore("unknown reporter: no verified attestation of its device here"), None
    return Validation.accept(), r


class OutcomesProtocol:
    """Sans-IO outcome gossip feeding ``engine.reputation`` (a ``RiskEngine``)."""

    def __init__(self, *, net: str, engine, ledger_check: Callable[[OutcomeReport], LedgerCheck] | None = None,
                 max_seen: int = 100_000) -> None:
        self.net = net
        self.topic = topic(net, "outcomes", 1)
        self.topics = [self.topic]
        self.stream_protocols: list[str] = []
        self.engine = engine
        self.ledger_check = ledger_check or (lambda r: LedgerCheck.UNCHECKED)
        self._seen: dict[bytes, None] = {}
        self._max_seen = max_seen
        self.stats = {"accepted": 0, "confirmed": 0, "refuted": 0, "published": 0}
        self.by_kind: dict[str, int] = {}  # outcome -> reports applied
        self.reasons: dict[str, int] = {}

    def _known(self, device: bytes) -> bool:
        return self.engine.reputation.record(device) is not None

    def _seen_body(self, body: bytes) -> bool:
        return body in self._seen

    def validate(self, topic_: str, data: bytes, from_peer: str, now: float) -> Validation:
        if topic_ != self.topic:
            return Validation.ignore(f"not our topic {topic_}")
        v, _ = validate_report(data, net=self.net, now=now, known_device=self._known, seen=self._seen_body)
        if v.result.value != "accept":
            key = f"{v.result.value}: {v.reason.split(':', 1)[0][:60]}"
            self.reasons[key] = self.reasons.get(key, 0) + 1
        return v

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, GossipReceived) and event.topic == self.topic:
            v, r = validate_report(event.data, net=self.net, now=now, known_device=self._known,
                                   seen=self._seen_body)
            if r is not None:
                self._remember(wire.decode(event.data, SignedReport).body)
                return self._apply(r, now)
        return []

    def _remember(self, body: bytes) -> None:
        self._seen[body] = None
        while len(self._seen) > self._max_seen:
            self._seen.pop(next(iter(self._seen)))

    def _apply(self, r: OutcomeReport, now: float) -> list[Command]:
        from node.offerbook import device_id_of

        rep = self.engine.reputation
        if rep.record(r.subject) is None:
            rep.observe(r.subject, "", "unknown", now)
        check = self.ledger_check(r) if r.outcome == "double-spent" else LedgerCheck.UNCHECKED
        self.stats["accepted"] += 1
        self.by_kind[r.outcome] = self.by_kind.get(r.outcome, 0) + 1
        if check is LedgerCheck.CONFIRMED:
            self.stats["confirmed"] += 1
        elif check is LedgerCheck.REFUTED:
            self.stats["refuted"] += 1
        delta = rep.report(reporter=device_id_of(r.reporter), subject=r.subject, outcome=Outcome(r.outcome),
                           contract_id=r.contract_id, check=check, now=now)
        cmds: list[Command] = [Notify("outcome.applied", {"subject": r.subject.hex(), "outcome": r.outcome,
                                                          "check": check.value, "delta": round(delta, 3)})]
        if rep.is_cheater(r.subject):
            dropped = self.engine.book.drop_device(r.subject)
            cmds.append(Notify("outcome.cheater", {"subject": r.subject.hex(), "offers_dropped": dropped}))
        return cmds

    def publish(self, report_bytes: bytes, now: float) -> list[Command]:
        """Gossip this node's own report (already signed by its enclave)."""
        signed = wire.decode(report_bytes, SignedReport, max_size=MAX_REPORT_SIZE)
        self._remember(signed.body)
        self.stats["published"] += 1
        return [Publish(self.topic, report_bytes)]

    def status(self) -> dict:
        return {**self.stats, "reasons": dict(self.reasons)}
