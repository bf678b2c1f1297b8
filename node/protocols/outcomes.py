"""Outcome reports: what happened to a chunk received in a contract, gossiped to everyone.

After a contract round the receiver of a key reports the outcome for the
device that released it: ``claimed`` (swept fine), ``double-spent`` (the funds
were gone: the spending transaction is named) or ``withheld`` (the key never
came). Reports travel on ``/keyswitch/<net>/outcomes/1``, signed by the
reporter's *enclave* (``Enclave.sign("outcome", digest)``), so a report is tied
to an attested device whose standing weighs it (``node.risk.reputation``).

Every node checks what it can on the ledger before weighing a report
(``ledger_check(report) -> LedgerCheck``; ``node.app.stack.ledger_check``
confirms only a mined transaction that spends from the report's address). A
report is weighed by its reporter's standing, within the bounds every report
has (``node.risk.reputation``): a ledger-confirmed one weighs more, but an
emptied deposit does not say who emptied it (the reporter may have swept the
key it was given), so no report marks a device a cheater on its own. One the
ledger refutes (the deposit still holds its funds, or the named transaction
spends nothing from it), or that names the reporter's own claimed sweep as
the double spend, costs the reporter ``Action.SLANDER``. Validation is pure
and labelled ``[REJECT]`` / ``[IGNORE]``.

**Proof by the ledger.** A ``double-spent`` report proves cheating when all
of these hold: its release record verifies, is signed by the subject's
enclave for the report's contract and deposit (checked at validation), and
names the *reporter's* enclave as recipient (its attested encryption key,
``enc_key_of(reporter signing key)``, learnt from the reporter's verified
quote: a record seen in someone else's report does not name the reporter);
this node's own ledger confirms that the named transaction is mined and
spends from that deposit's address; and no device has reported that
transaction as its claimed sweep with a release record of the subject naming
it (a bare "claimed" counts for nothing here; a backed one, from another
device, makes a record pair below instead; from the reporter itself, the
report is refuted). The subject released the key to the reporter and the
funds went elsewhere: the device is marked a cheater for good and its offers
dropped here (each node checks the report itself, on its own ledger; nothing
is gossiped beyond the report). What it cannot tell: a reporter that swept
the key itself and never reported the claim.

**Proof of cheating, assembled from reports.** A ``claimed`` or
``double-spent`` report (version 2) carries the signed ``release`` record the
reporter received (``spec.ReleaseBody`` in a ``wire.Signed`` envelope, at
most ``MAX_RECORD_SIZE`` bytes): it must verify, be signed by the report's
subject and name the report's contract and deposit (its key's address on the
report's asset), or the report is rejected. Every node indexes the records of
the reports it accepts (and of its own) by (signing enclave, deposit key). Two
valid records of one deposit key by one enclave to different recipients,
contracts or rounds are a :class:`cheating.CheatingProof`: self-contained, no
ledger, no trust in either reporter. The node hands it to ``on_proof`` (the
revocation protocol: applied here at once, gossiped as a notice with evidence
kind ``cheating-proof``, once per device). One record alone proves nothing,
and the same record carried by two reports is not two releases.

A reporter cannot be tied to the record's recipient here (the report names
the reporter's signing key, the record its encryption key), so a node could
attach a record it saw rather than received; it gains nothing by it: a proof
needs two records the cheating enclave itself signed.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Protocol

import msgspec

from node import wire
from node.protocols.base import Command, Event, GossipReceived, Notify, Publish, TimerFired, Validation, topic
from node.risk.reputation import LedgerCheck, Outcome

REPORT_VERSION = 2  # 2: the signed release record rides along (``release``)
MAX_RECORD_SIZE = 2 * 1024
MAX_REPORT_SIZE = 8 * 1024
MAX_FIELD = 128  # characters of asset, address and txid
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
    #: the signed release record of ``address``'s key the reporter received in ``contract_id`` (claimed and
    #: double-spent; may be empty when the reporter no longer has it); always empty for withheld
    release: bytes = b""


class SignedReport(msgspec.Struct, array_like=True, frozen=True):
    body: bytes
    sig: bytes  # Enclave.sign("outcome", sha256(body)) by ``reporter``


def report_digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def make_report(report: OutcomeReport, enclave_sign: Callable[[str, bytes], bytes]) -> bytes:
    body = wire.encode(report)
    return wire.encode(SignedReport(body, enclave_sign("outcome", report_digest(body))))


class ReleaseSeen(msgspec.Struct, frozen=True):
    """A verified release record: who signed it, which key, to whom, where; ``record`` is its bytes."""

    signer: bytes
    deposit_pub: bytes
    recipient: bytes
    contract_id: bytes
    round: int
    record: bytes


def read_release_record(record: bytes, *, net: str) -> ReleaseSeen | str:
    """The verified content of a signed release record, or why it is refused (size, encoding, version,
    network, kind, enclave signature): ``envelope.parse`` does the checks the contract protocol does."""
    from node.contracts.protocol.envelope import MessageError, parse

    if len(record) > MAX_RECORD_SIZE:
        return f"over size: {len(record)} > {MAX_RECORD_SIZE} bytes"
    try:
        env, body = parse(record, net=net, kinds={"release"})
    except MessageError as exc:
        return f"{exc.code}: {exc.reason}"
    return ReleaseSeen(env.signer, body.deposit_pub, body.recipient, body.contract_id, body.round, record)


def check_record_of(r: OutcomeReport) -> ReleaseSeen | str:
    """The report's release record, verified and matched to the report: signed by the subject's enclave,
    for the report's contract and for the deposit at the report's address; else the reason."""
    from node.assets import address_for
    from node.protocols.offers import device_id_of

    seen = read_release_record(r.release, net=r.net)
    if isinstance(seen, str):
        return seen
    if device_id_of(seen.signer) != r.subject:
        return "signed by another enclave than the report's subject"
    if seen.contract_id != r.contract_id:
        return "a release of another contract"
    try:
        addr = address_for(r.asset, seen.deposit_pub)
    except Exception:  # an unknown asset, or a key that is not one
        return f"cannot derive a {r.asset!r} address from its deposit key"
    if addr != r.address:
        return "it releases another deposit key than the report's address"
    return seen


def validate_report(data: bytes, *, net: str, now: float, known_device: Callable[[bytes], bool],
                    seen: Callable[[bytes], bool]) -> tuple[Validation, OutcomeReport | None]:
    from node.protocols.offers import device_id_of
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
    if max(len(r.asset), len(r.address), len(r.txid)) > MAX_FIELD:
        return Validation.reject(f"asset, address and txid are at most {MAX_FIELD} characters"), None
    if r.outcome == "double-spent" and not r.txid:
        return Validation.reject("a double-spent report names the spending transaction"), None
    if device_id_of(r.reporter) == r.subject:
        return Validation.reject("a device cannot report on itself"), None
    if r.release:
        if r.outcome == "withheld":
            return Validation.reject("a withheld report carries no release record"), None
        got = check_record_of(r)
        if isinstance(got, str):
            return Validation.reject(f"release record: {got}"), None
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
                 max_seen: int = 100_000, on_proof: Callable[[object, bytes, float], list[Command]] | None = None,
                 attested: Callable[[bytes], bool] | None = None,
                 on_proof_timer: Callable[[Event, float], list[Command]] | None = None,
                 records: "ReleaseRecords | None" = None,
                 enc_key_of: Callable[[bytes], bytes | None] | None = None) -> None:
        self.net = net
        self.topic = topic(net, "outcomes", 1)
        self.topics = [self.topic]
        self.stream_protocols: list[str] = []
        self.engine = engine
        self.ledger_check = ledger_check or (lambda r: LedgerCheck.UNCHECKED)
        #: ``on_proof(proof, device_id, now) -> commands``: act on an assembled proof of cheating (the
        #: revocation protocol's ``publish_proof``); without it the device is dropped here only
        self.on_proof = on_proof
        #: a driver fires a timer at the protocol whose commands set it: timers ``on_proof`` set come back
        #: here and go on to ``on_proof_timer`` (the revocation protocol's ``handle``)
        self.on_proof_timer = on_proof_timer
        #: ``attested(device_id)``: has this node verified the device's attestation (its offer sheet's quote)?
        self.attested = attested
        #: ``enc_key_of(sign_pub)``: the attested encryption key of the enclave with that signing key, from a
        #: quote this node verified (None when unknown); without it no report is a proof by the ledger
        self.enc_key_of = enc_key_of
        #: (asset, txid) -> the device that reported that transaction as its own claimed sweep, with the
        #: subject's release record naming it (bounded)
        self._claims: dict[tuple[str, str], bytes] = {}
        #: device id -> the signed report body that proved it a cheater by the ledger
        self.ledger_proven: dict[bytes, bytes] = {}
        self._seen: dict[bytes, None] = {}
        self._max_seen = max_seen
        #: (signing enclave, deposit key) -> the first verified release record seen of that key
        self._releases: dict[tuple[bytes, bytes], ReleaseSeen] = {}
        self.proven: dict[bytes, object] = {}  # device id -> the CheatingProof this node assembled
        #: the release records this node received itself (fed by ``tap_release_records``)
        self.records = records if records is not None else ReleaseRecords(net, max_records=max_seen)
        self.stats = {"accepted": 0, "confirmed": 0, "refuted": 0, "published": 0, "proofs": 0, "ledger_proofs": 0}
        self.by_kind: dict[str, int] = {}  # outcome -> reports applied
        self.reasons: dict[str, int] = {}

    def _known(self, device: bytes) -> bool:
        """A device this node has weighed before, whose attestation it verified, or whose attested sheet is
        in its offer book (a device that traded its last offer away is still known)."""
        if self.engine.reputation.record(device) is not None:
            return True
        if self.attested is not None and self.attested(device):
            return True
        return any(d == device for d, _ in self.engine.book.devices())

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
                body = wire.decode(event.data, SignedReport).body
                self._remember(body)
                return self._apply(r, body, now) + self._index(r, now)
        elif isinstance(event, TimerFired) and self.on_proof_timer is not None:
            return list(self.on_proof_timer(event, now))
        return []

    def _index(self, r: OutcomeReport, now: float) -> list[Command]:
        """Index the report's release record; a second record of the same key by the same enclave to
        another recipient, contract or round completes a proof of cheating."""
        from node.contracts.protocol.cheating import CheatingProof, verify_cheating_proof

        if not r.release:
            return []
        seen = read_release_record(r.release, net=self.net)
        if isinstance(seen, str):  # validated already; defensive
            return []
        key = (seen.signer, seen.deposit_pub)
        first = self._releases.get(key)
        if first is None:
            self._releases[key] = seen
            while len(self._releases) > self._max_seen:
                self._releases.pop(next(iter(self._releases)))
            return []
        if (first.recipient, first.contract_id, first.round) == (seen.recipient, seen.contract_id, seen.round):
            return []  # the same release again (a resend, or another report carrying it): nothing proven
        proof = CheatingProof(first.record, seen.record)
        device = verify_cheating_proof(proof, net=self.net)
        if isinstance(device, str) or device in self.proven:
            return []
        self.proven[device] = proof
        self.stats["proofs"] += 1
        note = Notify("outcome.proof", {"subject": device.hex(), "deposit": seen.deposit_pub.hex(),
                                        "recipients": [first.recipient.hex(), seen.recipient.hex()]})
        if self.on_proof is not None:
            return [note] + list(self.on_proof(proof, device, now))
        rep = self.engine.reputation
        if rep.record(device) is None:
            rep.observe(device, "", "unknown", now)
        rep.mark_cheater(device, now)
        dropped = self.engine.book.drop_device(device)
        return [note, Notify("outcome.cheater", {"subject": device.hex(), "offers_dropped": dropped})]

    def _remember(self, body: bytes) -> None:
        self._seen[body] = None
        while len(self._seen) > self._max_seen:
            self._seen.pop(next(iter(self._seen)))

    def _record_to_reporter(self, r: OutcomeReport) -> str | None:
        """None when the report carries the subject's release record naming the reporter's attested enclave."""
        if not r.release:
            return "no release record to the reporter"
        seen = check_record_of(r)
        if isinstance(seen, str):  # validated already; defensive
            return f"release record: {seen}"
        enc = self.enc_key_of(r.reporter) if self.enc_key_of is not None else None
        if enc is None:
            return "the reporter's attested encryption key is unknown here"
        if seen.recipient != enc:
            return "the release record names another enclave than the reporter's"
        return None

    def _ledger_proof(self, r: OutcomeReport, check: LedgerCheck) -> str | None:
        """None when the report is a proof of cheating by the ledger (see the module docstring), else why not."""
        if r.outcome != "double-spent" or check is not LedgerCheck.CONFIRMED:
            return f"not a ledger-confirmed double spend ({r.outcome}, {check.value})"
        why = self._record_to_reporter(r)
        if why is not None:
            return why
        if (r.asset, r.txid.lower()) in self._claims:
            return "the spend is a claimed sweep"
        return None

    def _apply(self, r: OutcomeReport, body: bytes, now: float) -> list[Command]:
        from node.protocols.offers import device_id_of

        rep = self.engine.reputation
        reporter = device_id_of(r.reporter)
        if rep.record(r.subject) is None:
            rep.observe(r.subject, "", "unknown", now)
        check = self.ledger_check(r) if r.outcome == "double-spent" else LedgerCheck.UNCHECKED
        claimant = self._claims.get((r.asset, r.txid.lower())) if r.outcome == "double-spent" else None
        if claimant == reporter and check is not LedgerCheck.REFUTED:
            check = LedgerCheck.REFUTED  # its own claimed sweep, named as someone else's double spend
        elif r.outcome == "claimed" and r.txid and self._record_to_reporter(r) is None:
            # only a claim backed by the subject's release record to the claimant counts: a bare "claimed"
            # naming a thief's spend cannot shield the thief's accomplice from a victim's proof
            self._claims[(r.asset, r.txid.lower())] = reporter
            while len(self._claims) > self._max_seen:
                self._claims.pop(next(iter(self._claims)))
        if check is LedgerCheck.REFUTED and rep.record(reporter) is None:
            # a liar known only by its verified attestation (not yet by an offer in the book) pays too
            rep.observe(reporter, "", "unknown", now)
        self.stats["accepted"] += 1
        self.by_kind[r.outcome] = self.by_kind.get(r.outcome, 0) + 1
        if check is LedgerCheck.CONFIRMED:
            self.stats["confirmed"] += 1
        elif check is LedgerCheck.REFUTED:
            self.stats["refuted"] += 1
        delta = rep.report(reporter=reporter, subject=r.subject, outcome=Outcome(r.outcome),
                           contract_id=r.contract_id, check=check, now=now)
        why_not = self._ledger_proof(r, check)
        applied = {"subject": r.subject.hex(), "outcome": r.outcome, "check": check.value, "delta": round(delta, 3)}
        if r.outcome == "double-spent":  # why it proves nothing on its own, when it does not
            applied["not_a_proof"] = why_not or ""
        cmds: list[Command] = [Notify("outcome.applied", applied)]
        if why_not is None and not rep.is_cheater(r.subject):
            rep.mark_cheater(r.subject, now)
            self.ledger_proven[r.subject] = body
            self.stats["ledger_proofs"] += 1
            cmds.append(Notify("outcome.proof", {"subject": r.subject.hex(), "by": "ledger", "txid": r.txid,
                                                 "address": r.address, "reporter": reporter.hex()}))
        if rep.is_cheater(r.subject):  # proven now, or before (by a record pair, a notice, our own sweep)
            dropped = self.engine.book.drop_device(r.subject)
            cmds.append(Notify("outcome.cheater", {"subject": r.subject.hex(), "offers_dropped": dropped}))
        return cmds

    def publish(self, report_bytes: bytes, now: float) -> list[Command]:
        """Gossip this node's own report (already signed by its enclave)."""
        signed = wire.decode(report_bytes, SignedReport, max_size=MAX_REPORT_SIZE)
        self._remember(signed.body)
        self.stats["published"] += 1
        r = wire.decode(signed.body, OutcomeReport, max_size=MAX_REPORT_SIZE)
        ok = not r.release or not isinstance(check_record_of(r), str)
        return [Publish(self.topic, report_bytes)] + (self._index(r, now) if ok else [])

    def status(self) -> dict:
        return {**self.stats, "reasons": dict(self.reasons), "proven": sorted(d.hex() for d in self.proven),
                "ledger_proven": sorted(d.hex() for d in self.ledger_proven)}


class ReleaseRecordStore(Protocol):
    """Where ``ReleaseRecords`` keeps what must survive a restart (``node.stores.release_records``: SQLite).
    ``load()`` gives the records ``(contract id, deposit key, record)`` in the order they were added and the
    keys of the outcomes reported; each other call is one durable change."""

    def load(self) -> tuple[list[tuple[bytes, bytes, bytes]], set[str]]: ...

    def add(self, contract_id: bytes, deposit_pub: bytes, record: bytes) -> None: ...

    def remove(self, contract_id: bytes, deposit_pub: bytes) -> None: ...

    def add_reported(self, key: str) -> None: ...

    def close(self) -> None: ...


class ReleaseRecords:
    """The release records this node received, verified, by (contract id, deposit key), bounded: what its
    own outcome reports carry. ``observe`` takes the record our enclave accepted (``contract.received``). With a
    ``store`` they are kept there too, so a report made after a restart still carries its record, and
    so is the set of outcomes this node reported (``first_report``), so none is reported twice."""

    def __init__(self, net: str, *, store: ReleaseRecordStore | None = None, max_records: int = 100_000) -> None:
        self.net = net
        self.max_records = max_records
        self._by: dict[tuple[bytes, bytes], bytes] = {}
        self._reported: set[str] = set()
        self._store = store
        if store is not None:
            records, self._reported = store.load()
            for cid, pub, rec in records:
                self._by[(cid, pub)] = rec

    def observe(self, data: bytes) -> bool:
        seen = read_release_record(data, net=self.net)
        if isinstance(seen, str):
            return False
        key = (seen.contract_id, seen.deposit_pub)
        if key in self._by:
            return True
        self._by[key] = data
        if self._store is not None:
            self._store.add(*key, data)
        while len(self._by) > self.max_records:
            old = next(iter(self._by))
            del self._by[old]
            if self._store is not None:
                self._store.remove(*old)
        return True

    def reported(self, key: str) -> bool:
        return key in self._reported

    def first_report(self, key: str) -> bool:
        """Mark the outcome ``key`` reported; False when it was already (before a restart, too)."""
        if key in self._reported:
            return False
        self._reported.add(key)
        if self._store is not None:
            self._store.add_reported(key)
        return True

    def get(self, contract_id: bytes, deposit_pub: bytes) -> bytes:
        return self._by.get((contract_id, deposit_pub), b"")

    def __len__(self) -> int:
        return len(self._by)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None



_SPENT_BY = re.compile(r"already spent by ([0-9a-fA-F]{16,128})")


def report_for_outcome(d: dict, *, net: str, reporter: bytes, now: float, records: ReleaseRecords | None = None
                       ) -> OutcomeReport | None:
    """The outcome report for a finished contract (``claims.Outcome.to_json()``), or None when there is
    nothing to report (failed for a reason of ours). It names the first chunk with that outcome and carries
    the release record received for it; a double-spent chunk names the spending transaction (from the
    ledger's "already spent by TXID")."""
    outcome = {"claimed": "claimed", "withheld": "withheld", "double-spent": "double-spent"}.get(d["status"])
    if outcome is None or not d.get("device"):
        return None
    chunk = next((c for c in d["chunks"] if c["status"] == outcome or outcome == "withheld"), None)
    txid, record = "", b""
    if chunk is not None and outcome != "withheld":
        txid = chunk.get("txid", "")
        if outcome == "double-spent" and not txid:
            m = _SPENT_BY.search(chunk.get("detail", ""))
            txid = m.group(1) if m else ""
        if records is not None:
            record = records.get(bytes.fromhex(d["contract_id"]), bytes.fromhex(chunk["deposit_pub"]))
    return OutcomeReport(REPORT_VERSION, net, bytes.fromhex(d["contract_id"]), reporter, bytes.fromhex(d["device"]),
                         outcome, chunk["asset"] if chunk else "", chunk["address"] if chunk else "", txid, now,
                         record)
