"""``OutcomeReporter``: a counterparty's outcome, as our own node saw it, applied to our reputation view and
gossiped as a report our enclave signs (the desks', ``node.contracts.desk.swaps.SwapDesk.reporter``: see "Outcomes"
in that module's docstring)."""

from __future__ import annotations

import hashlib
from typing import Any, Callable

RECORD_GRACE = 120.0  # s a settled claim waits for its release record to be resent (a crash lost it)


class OutcomeReporter:
    """Our own view of a counterparty's outcome -> our reputation and a report our enclave signs, gossiped.

    ``report(key, d, peer, now)`` takes a ``claims.Outcome.to_json()``-shaped dict (contract_id, device,
    status, chunks) and acts once per ``key`` (kept in ``outcomes().records``: in SQLite in a daemon, so
    across restarts too). ``outcomes() -> OutcomesProtocol``, ``enclave() -> enclave``, ``devices() ->
    [(device, class)]`` (the offer book's), ``publish(bytes)`` hands the signed report to the driver."""

    def __init__(self, *, net: str, engine, outcomes: Callable[[], Any], enclave: Callable[[], Any],
                 devices: Callable[[], Any], publish: Callable[[bytes], None]) -> None:
        self.net, self.engine, self.outcomes, self.enclave = net, engine, outcomes, enclave
        self.devices, self.publish = devices, publish
        #: (contract, step) -> (since, claim detail): a settled claim whose release record is not here yet (a
        #: crash between our enclave accepting the key and its ack: the giver resends it, even after our side
        #: ended); reported without it after ``RECORD_GRACE`` seconds (``flush``)
        self.waiting: dict[tuple[str, int], tuple[float, dict]] = {}

    def observe(self, device: bytes, peer: str, now: float) -> None:
        """Give a counterparty's device a reputation record (its attestation was verified by the contract)."""
        rep = self.engine.reputation
        if rep.record(device) is None:
            rep.observe(device, peer, dict(self.devices()).get(device, "unknown"), now)

    def report(self, key: str, d: dict[str, Any], peer: str, now: float) -> bytes | None:
        """Apply and gossip the outcome ``d`` (once per ``key``); the signed report, or None."""
        from node.protocols.outcomes import make_report, report_for_outcome
        from node.risk.reputation import Action

        records = self.outcomes().records
        if not d.get("device") or not records.first_report(key):
            return None
        device = bytes.fromhex(d["device"])
        self.observe(device, peer, now)
        outcome = {"claimed": "claimed", "withheld": "withheld", "double-spent": "double-spent"}.get(d["status"])
        if outcome is None:
            return None
        rep = self.engine.reputation
        if outcome == "double-spent":
            rep.mark_cheater(device, now)  # our own sweep failed: checked on our own ledger
        else:
            rep.apply(device, Action.CLAIMED if outcome == "claimed" else Action.WITHHELD, now)
        enclave = self.enclave()
        report = report_for_outcome(d, net=self.net, reporter=enclave.info().sign_pub, now=now,
                                    records=records)  # carries the release record we received
        data = make_report(report, enclave.sign)
        self.publish(data)
        return data

    def on_contract_notify(self, n, now: float) -> list[bytes]:
        """A language contract's (``contract_run``) notifications: keep the release record our enclave
        accepted; report a settled claim of a received key (once its record is here, or ``RECORD_GRACE``
        later without it), and each party that withheld a key the contract let it give us. The reports made."""
        d = n.detail
        records = self.outcomes().records
        out = self.flush(now)
        if n.kind == "contract.received":
            records.observe(bytes.fromhex(d["record"]))
            held = self.waiting.pop((d["contract"], d["step"]), None)
            return out + (self._claimed(held[1], now) if held is not None else [])
        if n.kind == "contract.claim":
            key = (d["contract"], d["step"])
            if not (records.reported(f"{key[0]}:{key[1]}")
                    or records.get(bytes.fromhex(d["contract"]), bytes.fromhex(d["deposit_pub"]))):
                self.waiting.setdefault(key, (now, d))  # the giver resends the record our enclave took
                return out
            return out + self._claimed(d, now)
        if n.kind == "contract.withheld":
            for o in d.get("owed", []):
                chunk = {"asset": o["asset"], "address": o["address"], "status": "withheld"}
                data = self.report(f"{d['contract']}:withheld:{o['giver']}",
                                   self._outcome({**o, "contract": d["contract"]}, "withheld", [chunk]), o["peer"], now)
                out += [data] if data else []
        return out

    def flush(self, now: float) -> list[bytes]:
        """Report the claims whose release record did not come back within ``RECORD_GRACE`` seconds."""
        late = [k for k, (since, _) in self.waiting.items() if now >= since + RECORD_GRACE]
        return [x for k in late for x in self._claimed(self.waiting.pop(k)[1], now)]

    def _claimed(self, d: dict, now: float) -> list[bytes]:
        status = "claimed" if d["status"] == "kept" else d["status"]
        chunk = {k: d[k] for k in ("asset", "address", "txid", "detail", "deposit_pub")}
        data = self.report(f"{d['contract']}:{d['step']}", self._outcome(d, status, [{**chunk, "status": status}]),
                           d["peer"], now)
        return [data] if data else []

    @staticmethod
    def _outcome(d: dict, status: str, chunks: list[dict]) -> dict:
        device = hashlib.sha256(bytes.fromhex(d["sign_pub"])).hexdigest()  # the giver's device
        return {"contract_id": d["contract"], "device": device, "status": status, "chunks": chunks}
