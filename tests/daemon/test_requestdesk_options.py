"""``node.app.requestdesk`` for option requests, after a daemon restart (in process, its desk stood in for): a
row whose option had been agreed finds its contract again and ends as soon as the premium is seen paid (in
the enclave's summary, or in a ``contract.released`` that comes later); one whose contract is gone is refused
and its share asked for again; one whose contract ended before the premium went counts as failed."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from node.api.services import ApiError
from node.app.requestdesk import RequestDesk
from node.protocols.request_run import Allocated, RequestRun, SwapAgreed
from node.risk.types import Candidate
from tests.polling import eventually

CID = "c1" * 32


def _offer(owner: str) -> Candidate:
    return Candidate(b"\1" * 32, b"\2" * 32, owner, "sim", "BTC-REG", f"{owner}-a0", 10_000, 5_000, 1e12)


class _Run:  # contract-run/1's table of contracts, as the desk reads it
    def __init__(self, state: str, released: list) -> None:
        spec = SimpleNamespace(ids=("me", "w1"), parties=[SimpleNamespace(chunks=[]), SimpleNamespace(
            chunks=[SimpleNamespace(address="w1-a0")])])
        self.runs = {CID: SimpleNamespace(key=CID, me=0, spec=spec, rec=SimpleNamespace(state=state, reason="x"))}
        self.released = released

    def summary(self, cid: bytes) -> dict:
        assert cid.hex() == CID
        return {"released": self.released}


def _services(run: _Run):
    desk = SimpleNamespace(watchers=[], run_watchers=[], run=run)

    async def submit(proto, fn):
        return fn(0.0)

    async def choose(asset, cents, contract, exclude):  # the shortfall's ask: no other provider answers
        assert contract == "option" and "w1" in exclude
        raise ApiError(504, "no decision within the deadline")

    return SimpleNamespace(stack=SimpleNamespace(desk=desk, peer_id="me"), clock=SimpleNamespace(now=lambda: 5.0),
                           _submit=submit, choose=choose)


def _stored(contract: str) -> dict:
    """A run that had agreed an option with w1 for the whole request when the daemon stopped."""
    r = RequestRun("rid", "BTC-REG", "ETH-DEV", 5_000, "me", kind="option", premium_chunks=1, expiry_blocks=100)
    r.start(0.0)
    r.handle(Allocated(True, (_offer("w1"),)), 1.0)
    r.handle(SwapAgreed("w1", 5_000, contract), 2.0)
    return {"run": r.to_state(), "contract": "option"}


def _resume(run: _Run, contract: str, after=None) -> dict:
    async def main():
        async with trio.open_nursery() as nursery:
            store = SimpleNamespace(load=lambda: [("rid", _stored(contract))], save=lambda *a: None)
            desk = RequestDesk(_services(run), nursery, store)
            if after is not None:
                await eventually(lambda: CID in desk._options, timeout=10)
                after(desk)
            await eventually(lambda: desk.runs["rid"].run.done, timeout=10)
            return desk.report("rid")

    return trio.run(main)


def test_an_option_whose_premium_was_paid_before_the_restart_is_written_at_once():
    rep = _resume(_Run("running", [(0, 1)]), CID)
    assert rep["state"] == "complete" and rep["restarts"] == 1 and rep["providers"][0]["contract"] == CID
    assert rep["providers"][0]["state"] == "done" and rep["obtained_cents"] == 5_000


def test_an_option_found_by_its_writer_and_chunks_is_written_when_the_premium_goes_after_the_restart():
    rep = _resume(_Run("running", []), "", after=lambda d: d._on_run("contract.released", {"contract": CID,
                                                                                            "index": 0}))
    assert rep["state"] == "complete" and rep["providers"][0]["state"] == "done"


def test_an_option_that_ended_unwritten_failed_and_one_never_proposed_is_refused():
    rep = _resume(_Run("failed", []), CID)
    assert rep["providers"][0]["state"] == "failed" and "ended before it was written" in rep["providers"][0]["reason"]
    assert rep["state"] == "short" and rep["asks"] == 2 and "asked for again" in rep["reason"]  # (not an internal error)
    gone = _Run("running", [])
    gone.runs.clear()
    rep = _resume(gone, CID)
    assert rep["providers"][0]["state"] == "refused" and "restarted before" in rep["providers"][0]["reason"]
    assert rep["state"] == "short" and rep["asks"] == 2
