"""Requests to contracts in a running daemon: ``POST /v1/requests`` with ``give`` (``keyswitch request --give``).

The decisions are ``node.protocols.request_run.RequestRun``'s (sans-IO); this module carries out its commands
and feeds it what happened, one run per request, in the daemon's nursery:

* ``Ask``: the requests-for-proposals round trip (``NodeServices.choose``: gossip the request, collect the
  proposals until ``risk.request_deadline``, allocate by the local rules), leaving out the providers named;
  its ``Chosen`` comes back as ``Allocated``.
* ``StartSwap``: one swap per provider, all at once, through the machinery ``keyswitch swap --peer`` uses
  (``SwapDesk.plan_swap`` over exactly the allocated offers, the initiator's caps checked and held by
  ``reserve_plan``, the offer over ``/keyswitch/contract/1``, the turns contract over ``/keyswitch/contract-run/1``). Our
  chunks of the give asset are split between the swaps being agreed (``_promised``), never promised twice.
  The swap's end comes from its outcome (``SwapDesk.watchers``): no polling.
* ``StartSwap`` of an option request (``RequestRun.kind`` "option"): one stdlib option per provider instead
  (``SwapDesk.plan_option`` over exactly the allocated offers, the provider the writer; the writer's device
  caps checked and held by ``reserve_spec`` until the contract ends; agreed over ``/keyswitch/contract/1``,
  run over ``/keyswitch/contract-run/1``). The row ends once the option is written: our premium released to
  the writer (``SwapDesk.run_watchers``: no polling), or the contract ended first (failed).
* ``Finished``: the report is kept (the last ``KEEP`` runs) for ``GET /v1/requests/{id}``.

Every run's state is stored after each change (``node.stores.requests``, ``requests.sqlite``): after a restart
its report is still there, and a run that had not ended resumes (``RequestRun.resume``): an ask in flight is
asked again; a swap not ended is found among the contracts the release protocol resumed (``ResumeSwap``) and
waited for, its outcome read at once when it ended while the daemon was down; a swap that was never proposed
(the restart came between the provider's agreement and our proposal) counts as refused.

Readers wait for news with ``wait(id, version, timeout)`` (a long poll: the answer comes as soon as the
run's ``version`` passes the one the reader has).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

import trio

from node.api.services import ApiError
from node.protocols.request_run import (
    PREMIUM_BLOCKS, Allocated, Ask, Finished, RequestRun, ResumeSwap, StartSwap, SwapAgreed, SwapEnded, SwapRefused,
)

log = logging.getLogger("keyswitch.requests")
KEEP = 100  # finished runs kept for GET /v1/requests/{id}
SWAP_LIMIT = 900.0  # s one swap may take, agreement to outcome, before it is counted as failed
RECEIVED = ("claimed", "kept", "received")  # a chunk outcome that means we hold the key (or swept its funds)


@dataclass
class _Entry:
    run: RequestRun
    send: trio.MemorySendChannel
    recv: trio.MemoryReceiveChannel
    changed: trio.Event = field(default_factory=trio.Event)


class RequestDesk:
    """The runs of this daemon's requests to contracts. ``services``: the daemon's ``NodeServices``; ``store``: a
    ``node.stores.requests.RequestStore`` (the runs it holds are loaded, and those not ended resumed), or None
    (in memory only)."""

    def __init__(self, services, nursery, store=None) -> None:
        self.svc, self.nursery, self.store = services, nursery, store
        self.runs: dict[str, _Entry] = {}
        self._promised: set[bytes] = set()  # our deposit keys promised to swaps being agreed
        self._waiting: dict[tuple[str, frozenset[str]], trio.MemorySendChannel] = {}  # (peer, their addresses)
        self._contracts: dict[str, str] = {}  # request id -> its contract field (asked again on a resume)
        self._options: dict[str, trio.MemorySendChannel] = {}  # an option's contract id -> its row's news
        services.stack.desk.watchers.append(self._on_outcome)
        services.stack.desk.run_watchers.append(self._on_run)
        for rid, state in store.load() if store is not None else ():
            self._load(rid, state)

    def _load(self, rid: str, state: dict | str) -> None:
        try:
            if isinstance(state, str):
                raise ValueError(state)
            run = RequestRun.from_state(state["run"])
        except (KeyError, ValueError) as exc:
            log.warning("request %s: its stored state is skipped: %s", rid, exc)
            return
        send, recv = trio.open_memory_channel(1000)
        self.runs[rid] = e = _Entry(run, send, recv)
        self._contracts[rid] = str(state.get("contract", ""))
        if not run.done:
            self.nursery.start_soon(self._drive, e, self._contracts[rid], True)

    def _save(self, e: _Entry) -> None:
        if self.store is None:
            return
        run = e.run
        try:
            self.store.save(run.request_id, run.started_at, run.done,
                            {"run": run.to_state(), "contract": self._contracts.get(run.request_id, "")})
        except Exception:  # (a full disk: the run goes on in memory; its report is lost on a restart)
            log.exception("request %s: its state could not be stored", run.request_id)

    # ------------------------------------------------------------------ API
    def start(self, asset: str, cents: int, contract: str, give: str, premium_chunks: int = 0,
              expiry_blocks: int = 0) -> str:
        """Start a run; its id (``GET /v1/requests/{id}``). ``contract`` "option": one option per provider, with
        ``premium_chunks`` and ``expiry_blocks`` (``node.protocols.request_run``); else swaps."""
        if len([e for e in self.runs.values() if not e.run.done]) >= 16:
            raise ApiError(429, "16 requests to contracts are running; wait for one to end")
        rid = secrets.token_hex(8)
        kind = "option" if contract.strip().lower() == "option" else "swap"
        try:
            run = RequestRun(rid, asset, give, cents, self.svc.stack.peer_id, kind=kind,
                             premium_chunks=premium_chunks, expiry_blocks=expiry_blocks)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        send, recv = trio.open_memory_channel(1000)
        self.runs[rid] = _Entry(run, send, recv)
        self._contracts[rid] = contract
        for old in [k for k, e in self.runs.items() if e.run.done][:-KEEP]:
            del self.runs[old]
            self._contracts.pop(old, None)
        self.nursery.start_soon(self._drive, self.runs[rid], contract)
        return rid

    def report(self, rid: str) -> dict:
        e = self.runs.get(rid)
        if e is None:
            raise ApiError(404, f"no request {rid!r} on this node (the last {KEEP} finished ones are kept)")
        return e.run.report()

    async def wait(self, rid: str, version: int, timeout: float, *, until_done: bool = False) -> dict:
        """The run's report once its version passes ``version`` (or it ended, or ``timeout`` seconds passed);
        ``until_done``: once it ended."""
        e = self.runs.get(rid)
        if e is None:
            return self.report(rid)
        with trio.move_on_after(timeout):
            while (until_done or e.run.version <= version) and not e.run.done:
                await e.changed.wait()
        return e.run.report()

    # ------------------------------------------------------------------ the run
    def _news(self, e: _Entry) -> None:
        e.changed.set()
        e.changed = trio.Event()

    async def _drive(self, e: _Entry, contract: str, resumed: bool = False) -> None:
        run = e.run
        clock = self.svc.clock
        try:
            async with trio.open_nursery() as swaps:
                cmds = run.resume(clock.now()) if resumed else run.start(clock.now())
                while True:
                    self._save(e)
                    for c in cmds:
                        if isinstance(c, Ask):
                            swaps.start_soon(self._ask, e, c, contract)
                        elif isinstance(c, StartSwap):
                            swaps.start_soon(self._option if run.kind == "option" else self._swap, e, c)
                        elif isinstance(c, ResumeSwap):
                            swaps.start_soon(self._resume_option if run.kind == "option" else self._resume_swap,
                                             e, c)
                        elif isinstance(c, Finished):
                            log.info("request %s %s: %s", run.request_id, run.state, c.report["reason"])
                    self._news(e)
                    if run.done:
                        break
                    event = await e.recv.receive()
                    cmds = run.handle(event, clock.now())
                swaps.cancel_scope.cancel()
        except Exception as exc:  # a bug: the run ends with the reason rather than hanging its readers
            log.exception("request %s failed", run.request_id)
            run.reason = f"internal error: {type(exc).__name__}: {exc}"
            run._finish(clock.now())
            self._save(e)
            self._news(e)

    async def _ask(self, e: _Entry, c: Ask, contract: str) -> None:
        run = e.run
        try:
            chosen = await self.svc.choose(run.asset, c.usd_cents, contract, exclude=c.exclude)
        except ApiError as exc:
            await e.send.send(Allocated(False, (), exc.reason))
            return
        await e.send.send(Allocated(chosen.ok, chosen.offers, chosen.reason, tuple(chosen.notes), chosen.proposals))

    async def _swap(self, e: _Entry, c: StartSwap) -> None:
        run, desk = e.run, self.svc.stack.desk
        addresses = frozenset(o.address for o in c.offers)
        key = (c.peer, addresses)
        ends_send, ends_recv = trio.open_memory_channel(4)
        mine: list[bytes] = []
        try:
            try:
                await self.svc.swap_peer(c.peer)  # (before planning: our chunks are promised as the plan is made)
                plan, summary = desk.plan_swap(c.peer, run.give, run.asset, len(c.offers),
                                               busy=frozenset(self._promised), addresses=addresses)
            except (ApiError, ValueError) as exc:
                await e.send.send(SwapRefused(c.peer, exc.reason if isinstance(exc, ApiError) else str(exc)))
                return
            mine = desk.plan_keys(plan)
            self._promised.update(mine)
            why = desk.reserve_plan(c.peer, plan, self.svc.clock.now())  # our caps on its device, held
            if why:
                await e.send.send(SwapRefused(c.peer, why))
                return
            self._waiting[key] = ends_send
            try:
                await self.svc._offer_swap(desk, c.peer, plan, summary)
            except ApiError as exc:
                desk.unreserve_plan(c.peer, plan)
                await e.send.send(SwapRefused(c.peer, exc.reason))
                return
            except BaseException:  # (the request cancelled while the offer was out: never proposed)
                desk.unreserve_plan(c.peer, plan)
                raise
            give_cents = summary["give"]["usd_cents"] // max(1, len(mine))  # one chunk of ours, for what is lost
            await e.send.send(SwapAgreed(c.peer, give_cents))
            await self._until_ended(e, c.peer, ends_recv, give_cents)
        finally:
            self._waiting.pop(key, None)
            self._promised.difference_update(mine)

    async def _until_ended(self, e: _Entry, peer: str, ends, give_cents: int) -> None:
        with trio.move_on_after(SWAP_LIMIT):
            d = await ends.receive()
            await e.send.send(self._ended(peer, d, give_cents))
            return
        await e.send.send(SwapEnded(peer, "failed", reason=f"no outcome within {SWAP_LIMIT:.0f} s"))

    async def _resume_swap(self, e: _Entry, c: ResumeSwap) -> None:
        """After a restart: the swap's contract (persisted, resumed by the release protocol) ends it; none
        means it was never proposed."""
        addresses = frozenset(o.address for o in c.offers)
        key = (c.peer, addresses)
        ends_send, ends_recv = trio.open_memory_channel(4)
        self._waiting[key] = ends_send  # (before the look: an outcome from now on is heard)
        try:
            found = self._contract_of(c.peer, addresses)
            if found is None:
                await e.send.send(SwapRefused(c.peer, "the daemon restarted before this swap was proposed"))
                return
            if not c.agreed:
                await e.send.send(SwapAgreed(c.peer, c.give_cents))
            outcome = found.outcome
            if outcome is None and hasattr(found, "spec"):  # a swap over contract-run/1 that ended before the
                desk = self.svc.stack.desk  # restart: its outcome from our enclave's view (on the driver)
                await self.svc._submit(desk.run, lambda now: desk.swaps.outcome(found) and [])
                outcome = found.outcome
            if outcome is not None:  # it ended before the restart, or while its record was read again
                await e.send.send(self._ended(c.peer, outcome.to_json(), c.give_cents))
                return
            await self._until_ended(e, c.peer, ends_recv, c.give_cents)
        finally:
            self._waiting.pop(key, None)

    def _contract_of(self, peer: str, addresses: frozenset[str]):
        """Our swap with ``peer`` in which it gives the chunks at ``addresses`` (one not ended first), or None."""
        desk = self.svc.stack.desk
        found = [r for r in list(desk.run.runs.values()) if desk.is_swap(r.spec) and r.me == 0
                  and r.spec.ids[1] == peer and addresses == frozenset(ch.address for ch in r.spec.parties[1].chunks)]
        found.sort(key=lambda c: c.outcome is not None)
        return found[0] if found else None

    @staticmethod
    def _ended(peer: str, d: dict, give_cents: int) -> SwapEnded:
        state = {"claimed": "done", "withheld": "withheld"}.get(d["status"], "failed")
        got = tuple(ch["address"] for ch in d["chunks"] if ch["status"] in RECEIVED)
        return SwapEnded(peer, state, got, int(d["released"]), int(d["lost"]), int(d["lost"]) * give_cents,
                         d.get("reason", ""))

    def _on_outcome(self, d: dict) -> None:
        """A swap's outcome (on the trio thread): the swap of a run that waits for it ends."""
        send = self._waiting.get((d.get("peer", ""), frozenset(ch["address"] for ch in d.get("chunks", []))))
        if send is not None:
            try:
                send.send_nowait(d)
            except trio.WouldBlock:
                pass

    # ------------------------------------------------------------------ options
    async def _option(self, e: _Entry, c: StartSwap) -> None:
        """One option with the provider ``c.peer`` as the writer, over exactly its allocated offers."""
        from node.contracts.spec import spec_id

        run, desk, svc = e.run, self.svc.stack.desk, self.svc
        mine: list[bytes] = []
        cid = ""
        news_send, news_recv = trio.open_memory_channel(64)
        try:
            try:
                await svc._who([c.peer])  # its attested binding, for the spec
                spec, summary = desk.plan_option(
                    c.peer, run.give, run.asset, len(c.offers), run.premium_chunks,
                    min(PREMIUM_BLOCKS, run.expiry_blocks), run.expiry_blocks, busy=frozenset(self._promised),
                    addresses=frozenset(o.address for o in c.offers))
            except ApiError as exc:
                await e.send.send(SwapRefused(c.peer, exc.reason))
                return
            except Exception as exc:  # (ValueError: not enough chunks; a ledger away for the height)
                await e.send.send(SwapRefused(c.peer, f"planning the option failed: {exc}"))
                return
            mine = [ch.pubkey for ch in spec.parties[0].chunks]
            self._promised.update(mine)
            why = desk.reserve_spec(spec, svc.clock.now())  # the writer's device, owner and class caps, held
            if why:
                await e.send.send(SwapRefused(c.peer, why))
                return
            cid = spec_id(spec).hex()
            self._options[cid] = news_send  # (before the offer: every release of the contract is heard)
            try:
                await svc._offer(c.peer, "option", spec.encode())
                await svc._submit(desk.run, lambda now: desk.feed_heights(now) + desk.run.start(spec, now))
            except ApiError as exc:
                desk.unreserve_spec(spec)
                await e.send.send(SwapRefused(c.peer, exc.reason))
                return
            except BaseException:  # (the request cancelled while the offer was out: never started)
                desk.unreserve_spec(spec)
                raise
            give_cents = sum(ch.usd_cents for ch in spec.parties[0].chunks) // max(1, len(mine))
            await e.send.send(SwapAgreed(c.peer, give_cents, cid))
            await self._until_written(e, c, cid, news_recv, set())
        finally:
            self._options.pop(cid, None)
            self._promised.difference_update(mine)

    async def _until_written(self, e: _Entry, c: StartSwap | ResumeSwap, cid: str, news, paid: set[int]) -> None:
        """The option ``cid`` is written once each premium chunk of ours went to the writer (our enclave releases
        it only once the writer's enclave opened the contract, its chunks committed); it failed if the
        contract ended first."""
        premium = set(range(e.run.premium_chunks))
        with trio.move_on_after(SWAP_LIMIT):
            while not premium <= paid:
                kind, d = await news.receive()
                if kind == "contract.released":
                    paid.add(int(d.get("index", -1)))
                    continue
                await e.send.send(SwapEnded(c.peer, "failed", reason=f"the option ended before it was written: "
                                            f"{d.get('state', '')}: {d.get('reason', '')}"))
                return
            await e.send.send(SwapEnded(c.peer, "done", tuple(o.address for o in c.offers), len(premium)))
            return
        await e.send.send(SwapEnded(c.peer, "failed", reason=f"the premium was not paid within {SWAP_LIMIT:.0f} s"))

    async def _resume_option(self, e: _Entry, c: ResumeSwap) -> None:
        """After a restart: the option's contract (persisted, resumed by contract-run/1) says how far it got."""
        desk = self.svc.stack.desk
        addresses = {o.address for o in c.offers}
        found = desk.run.runs.get(c.contract) if c.contract else next(  # (agreed, or restarted mid-agreement)
            (r for r in list(desk.run.runs.values()) if r.me == 0 and r.spec.ids[1:] == (c.peer,)
             and {ch.address for ch in r.spec.parties[1].chunks} == addresses), None)
        cid = found.key if found is not None else ""
        news_send, news_recv = trio.open_memory_channel(64)
        self._options[cid] = news_send
        try:
            if found is None:
                await e.send.send(SwapRefused(c.peer, "the daemon restarted before this option was proposed"))
                return
            try:
                moved = await self.svc._submit(desk.run, lambda now: desk.run.summary(bytes.fromhex(cid)))
            except ApiError as exc:
                await e.send.send(SwapEnded(c.peer, "failed", reason=f"after a restart: {exc.reason}"))
                return
            paid = {i for i, _to in (moved or {}).get("released", [])}
            if not c.agreed:
                await e.send.send(SwapAgreed(c.peer, c.give_cents, cid))
            if found.rec.state in ("done", "failed") and not set(range(e.run.premium_chunks)) <= paid:
                await e.send.send(SwapEnded(c.peer, "failed", reason=f"the option ended before it was written: "
                                            f"{found.rec.state}: {found.rec.reason}"))
                return
            await self._until_written(e, c, cid, news_recv, paid)
        finally:
            self._options.pop(cid, None)

    def _on_run(self, kind: str, d: dict) -> None:
        """A language contract's release or end (on the trio thread): the option row that waits for it hears."""
        send = self._options.get(str(d.get("contract", "")))
        if send is not None:
            try:
                send.send_nowait((kind, d))
            except trio.WouldBlock:
                pass
