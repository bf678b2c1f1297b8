"""Shared helpers of test_contract_outcomes, for it and other tests (a test module imports no other test module)."""

from __future__ import annotations

import hashlib
from node import wire
from node.stores.offerbook import OfferBook
from node.protocols.outcomes import (
    OutcomeReport, OutcomesProtocol, ReleaseRecords, SignedReport,
)
from node.risk.engine import RiskEngine
from node.stores.release_records import ReleaseRecordsDB
from node.contracts.desk.swaps import OutcomeReporter
from tests.protocols.contract_run_kit import NET


def dev(side) -> bytes:
    return hashlib.sha256(side.binding.sign_pub).digest()


class Reporting:
    """One side's ``OutcomeReporter`` with its own reputation view and release records (SQLite, as in a
    daemon), fed the side's notifications; ``restart`` is a new process: a new reporter, records reopened."""

    def __init__(self, side) -> None:
        self.side = side
        self.engine = RiskEngine(OfferBook(None))
        self.fed = 0
        self.all: list[bytes] = []  # published by earlier processes
        self._start()

    def _start(self) -> None:
        self.records = ReleaseRecords(NET, store=ReleaseRecordsDB(self.side.dir / "release-records.sqlite"))
        self.outcomes = OutcomesProtocol(net=NET, engine=self.engine, records=self.records)
        self.published: list[bytes] = []
        self.reporter = OutcomeReporter(net=NET, engine=self.engine, outcomes=lambda: self.outcomes,
                                        enclave=lambda: self.side.raw, devices=lambda: [],
                                        publish=self.published.append)

    def restart(self, now: float) -> None:
        self.feed(now)  # what the old process was told before it died
        self.all += self.published
        self.records.close()
        self._start()

    def feed(self, now: float) -> None:
        for n in self.side.notes[self.fed:]:
            self.reporter.on_contract_notify(n, now)
        self.fed = len(self.side.notes)

    def done(self) -> list[bytes]:
        return self.all + self.published

    def reports(self) -> list[OutcomeReport]:
        return [wire.decode(wire.decode(d, SignedReport).body, OutcomeReport) for d in self.published]

    def score(self, side) -> float:
        return self.engine.reputation.record(dev(side)).score
