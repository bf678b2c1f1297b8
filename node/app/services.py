"""``NodeServices``: what the local API asks of a running node (``node.api.services.Services``), over the
parts ``node.app.daemon`` composed (runtime, offer stack, desks, enclave, ledger, risk engine).

Actions go to a protocol through ``driver.call`` (awaited: taken by the driver's worker in time, or withdrawn and
never run: ``NodeServices._call``) and await what it records (``Listeners``): no polling.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import trio

from node.api.services import ApiError
from node.app.stack import OfferStack
from node.runtime.calls import NotTaken, StillRunning

log = logging.getLogger("keyswitch.daemon")
#: why a request to contracts (``request --give``) is not made under these kinds (docs/risk.md, "Escrow and option")
REQUEST_KINDS = {  # (option requests run: one option per provider, node.app.requestdesk)
    "escrow": "contract escrow: an escrow has one giver, a payee and an arbiter you name, nothing for providers "
              "to propose (a request across providers has no arbiter); make it with: "
              "keyswitch escrow --payee P --arbiter A --give ASSET",
}


class NodeServices:
    """``node.api.services.Services`` over a running daemon's parts."""

    #: seconds the driver's worker has to take an action (then as long again to end it): ``ProtocolDriver.call``
    take_timeout = 10.0

    def __init__(self, node, stack: OfferStack, clock, started_at: float) -> None:
        self.node, self.stack, self.clock, self.started_at = node, stack, clock, started_at
        self.requests = None  # node.app.requestdesk.RequestDesk, set by run_daemon (it needs the daemon's nursery)

    def status(self) -> dict[str, Any]:
        from node.runtime.runner import trio_task_groups, trio_tasks

        info = self.stack.enclave.info()
        now = self.clock.now()
        return {
            "peer_id": self.node.peer_id,
            "net": self.stack.net,
            "listen": list(self.node.listen_addrs),
            "peers": len(self.node.connected_peers()),
            "offers_in_book": self.stack.book.count(now=now),
            "own_offers": len(self.stack.protocol.own.offers) if self.stack.protocol.own else 0,
            "uptime": round(now - self.started_at, 3),
            "enclave": {"simulated": info.simulated, "device_id": info.device_id.hex(),
                        "measurement": info.measurement, "broken": getattr(self.stack.enclave, "mode", ""),
                        "calls": self.stack.enclave.call_stats() if hasattr(self.stack.enclave, "call_stats")
                        else {}},
            "driver": self.node.driver.stats() if getattr(self.node, "driver", None) is not None else {},
            "ready": True,
            "requests": dict(self.stack.rfp.stats, reasons=dict(self.stack.rfp.reasons)) if self.stack.rfp else {},
            "revocations": self.stack.revocations.status() if self.stack.revocations else {},
            "outcomes": self.stack.outcomes.status() if self.stack.outcomes else {},
            "tasks": trio_tasks(),  # trio tasks alive in the daemon (a leak shows as growth: benchmarks.soak)
            "task_groups": trio_task_groups(),  # the biggest groups of them by name: which ones grow
            "sheet": self.stack.protocol.published(),  # our last published sheet: seq, addresses offered
        }

    def peers(self) -> list[dict[str, Any]]:
        mesh = set(self.node.mesh_peers(self.stack.protocol.topic)) if self.node.pubsub else set()
        peers = sorted(self.node.connected_peers())
        scores = self.node.gossip_health(peers)["peer_scores"]  # gossipsub score, components, drops (issue #23)
        boot = self.node.peers.boot_ids
        return [{"peer": p, "bootstrap": p in boot, **self.node.probe.describe(p), "in_offer_mesh": p in mesh,
                 **scores.get(p, {})} for p in peers]

    async def connect(self, multiaddr: str) -> dict[str, Any]:
        """Dial ``multiaddr`` (checked by the API: ip4/ip6, ends in /p2p/<id>); the peer's row once connected."""
        from node.runtime.peering import DIAL_TIMEOUT
        from node.runtime.peerinfo import PING_ID

        pid = multiaddr.rsplit("/p2p/", 1)[-1]
        if pid == self.node.peer_id:
            raise ApiError(409, f"{multiaddr} is this node's own address")
        if pid in self.node.connected_peers():  # (py-libp2p would not dial it again, whatever the address)
            return {"peer": pid, "connected": True, "already": True, **self.node.probe.describe(pid)}
        with trio.move_on_after(DIAL_TIMEOUT):
            try:
                pid = await self.node.connect(multiaddr, now=True)
            except Exception as exc:  # noqa: BLE001 (refused, unreachable, another peer id at that address, ...)
                why = " ".join(str(exc).split()) or exc.__class__.__name__
                raise ApiError(409, f"could not connect to {multiaddr}: {why} (is the node running there, and "
                                    f"is /p2p/ its peer id?)") from None
            if await self.node.will_speak(pid, PING_ID):  # (once the host's identify is done: node.runtime.peerinfo)
                await self.node.probe.ping(pid)
            return {"peer": pid, "connected": True, **self.node.probe.describe(pid)}
        raise ApiError(504, f"no answer from {multiaddr} within {DIAL_TIMEOUT:g} s")

    def balance(self) -> dict[str, Any]:
        with self._consistent():
            return self.stack.desk.balance() if self.stack.desk else {"claims": [], "totals": []}

    def offers(self, asset: str | None, limit: int) -> list[dict[str, Any]]:
        return self.stack.book.rows(now=self.clock.now(), asset=asset, limit=limit)

    def deposits(self) -> list[dict[str, Any]]:
        from node.app.deposits import deposit_status

        states = {k.pubkey: k.state for k in self.stack.enclave.list_keys()}
        store = self.stack.deposits
        kept = store.kept()
        return [{**deposit_status(d, self.stack.ledger, states.get(d.pubkey, "unknown")),
                 "kept_from": kept.get(d.pubkey, "")} for d in store.all()]

    def _consistent(self):
        """The driver's lock: the contract protocols' ``handle`` runs on a worker thread (it calls the enclave),
        so a reader of their state on the event loop takes the lock every handle holds, and never iterates a
        contract table while a handle changes it. Held for the reading only (no ledger call under it)."""
        driver = getattr(self.node, "driver", None)
        return driver.lock if driver is not None else contextlib.nullcontext()

    def contracts(self) -> list[dict[str, Any]]:
        with self._consistent():
            return self.stack.desk.contracts() if self.stack.desk else []

    def escrow(self) -> dict[str, Any]:
        with self._consistent():
            return self.stack.escrow.status()

    async def escrow_recover(self, contract: str) -> dict[str, Any]:
        return await self.stack.escrow.recover(self, contract)

    async def revoke(self, kind: str, target: str, reason: str) -> dict[str, Any]:
        """Sign a revocation notice with this node's peer key, apply it here and gossip it."""
        from node.identity import load_or_create_seed
        from node.peerkey import PeerSigner
        from node.protocols.revocation import RevocationNotice, make_notice

        signer = PeerSigner(load_or_create_seed(self.stack.datadir))
        notice = RevocationNotice(1, self.stack.net, kind, target, reason, "", b"", signer.peer_id, self.clock.now())
        data = make_notice(notice, signer.sign)
        proto = self.stack.revocations
        # (409: well-formed, but the notice itself is refused, e.g. a device id that is not one)
        await self._call(proto, lambda now: (None, proto.publish(data, now)), "the revocation")
        return {"issued": {"kind": kind, "target": target, "reason": reason, "issuer": signer.peer_id},
                "applied_here": proto.status()["applied"][-1:] }

    async def _call(self, proto, fn, what: str, *, refused: int = 409):
        """``driver.call(proto, fn)`` (``fn(now) -> (value, commands)``): its value, or an ApiError that says what
        is true: 429 the node did not take it in time (withdrawn: nothing was done, nothing will be), 504 it was
        taken but did not end in time (it may take effect), ``refused`` (409) ``fn`` raised ValueError, 500 a bug
        (logged)."""
        try:
            return await self.node.driver.call(proto, fn, timeout=self.take_timeout)
        except NotTaken as exc:
            raise ApiError(429, f"the node did not take {what} in time ({exc}): nothing was done; ask again") from None
        except StillRunning as exc:
            raise ApiError(504, f"{what} started but did not end in time ({exc}): it may still take effect; check "
                                "before asking again") from None
        except ValueError as exc:
            raise ApiError(refused, str(exc)) from None
        except Exception as exc:  # a bug in the call (the driver kept running): answer it
            log.exception("%s failed", what)
            raise ApiError(500, f"{what} failed: {type(exc).__name__}: {exc}") from None

    async def _submit(self, proto, fn):
        """Run ``fn(now)`` on the driver (``_call``): its return value, carried out as commands when a list."""
        def call(now: float):
            out = fn(now)
            return out, (out if isinstance(out, list) else [])

        return await self._call(proto, call, "the contract call")

    async def _offer(self, peer: str, kind: str, payload: bytes) -> None:
        """Offer a contract to ``peer`` over /keyswitch/contract/1; raises ApiError unless it agrees."""
        answer = await self._contract_answer(peer, kind, payload)
        if answer is None:
            raise ApiError(504, f"{peer} did not answer the contract offer in time")
        accepted, reason = answer
        if not accepted:
            raise ApiError(409, f"{peer} refused: {reason}")

    async def _contract_answer(self, peer: str, kind: str, payload: bytes) -> tuple[bool, str] | None:
        """Offer a contract to ``peer`` over /keyswitch/contract/1 and await its (accepted, reason); None when no
        answer came in time. The answer wakes us (``rfp.answer_listeners``, registered in the very call that
        makes the offer, so it cannot be missed): no polling."""
        rfp = self.stack.rfp
        token = trio.lowlevel.current_trio_token()
        answered = trio.Event()

        def offer(now: float):
            rid, cmds = rfp.offer_contract(peer, kind, payload, now)
            rfp.answer_listeners.add(rid, lambda: token.run_sync_soon(answered.set))
            return rid, cmds

        rid = await self._call(rfp, offer, "the contract offer")  # (429: not offered, and never will be)
        try:
            with trio.move_on_after(35):  # the offer's own request times out sooner, with an answer saying so
                await answered.wait()
        finally:  # (cancelled too: the listener goes)
            self.node.driver.submit(rfp, lambda now: rfp.answer_listeners.discard(rid))
        return rfp.contract_answers.pop(rid, None)

    async def _who(self, peers: list[str]) -> None:
        run = self.stack.desk.run
        token = trio.lowlevel.current_trio_token()
        learnt = {p: trio.Event() for p in peers}

        def ask(now: float, p: str):
            run.known.pop(p, None)  # always asked afresh: a binding's keys root moves with the peer's deposits
            run.who_listeners.add(p, lambda: token.run_sync_soon(learnt[p].set))
            return run.who(p, now)

        for p in peers:
            await self._submit(run, lambda now, p=p: ask(now, p))
        with trio.move_on_after(15):  # woken as each binding is learnt (``run.who_listeners``): no polling
            for p in peers:
                await learnt[p].wait()
        for p in peers:
            self.node.driver.submit(run, lambda now, p=p: run.who_listeners.discard(p))
        missing = [p for p in peers if p not in run.known]
        if missing:
            raise ApiError(504, f"no attested binding from {', '.join(missing)} (see /v1/contracts refusals)")

    async def language_contract(self, kind: str, peer: str, give: str, take: str, chunks: int,
                                terms: dict[str, Any]) -> dict[str, Any]:
        """An escrow (we pay ``chunks`` of ``give`` to ``peer`` on ``terms['arbiter']``'s approval, refunded
        after ``refund_blocks``) or an option (we buy a call on ``chunks`` of ``peer``'s ``take``, paying in
        ``give``): the spec is built from attested bindings, agreed over /keyswitch/contract/1 and run over
        /keyswitch/contract-run/1, where the enclaves decide every release."""
        from node.contracts.spec import spec_id

        from libp2p.peer.id import ID

        desk = self.stack.desk
        arbiter = str(terms.get("arbiter", ""))
        for p in [peer] + ([arbiter] if kind == "escrow" else []):
            try:
                ID.from_base58(p)
            except Exception:
                raise ApiError(409, f"{p!r} is not a peer id") from None
        await self._who([peer] + ([arbiter] if kind == "escrow" else []))
        try:
            if kind == "escrow":
                if not arbiter or arbiter in (peer, self.stack.peer_id):
                    raise ValueError("an escrow needs an arbiter other than the payer and the payee")
                spec, summary = desk.plan_escrow(peer, arbiter, give, chunks, int(terms.get("refund_blocks", 100)))
            else:
                spec, summary = desk.plan_option(peer, give, take, chunks, int(terms.get("premium_chunks", 1)),
                                                 int(terms.get("premium_blocks", 20)),
                                                 int(terms.get("expiry_blocks", 100)))
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        except Exception as exc:  # a bug: say what, in the answer and the log
            log.exception("planning a %s failed", kind)
            raise ApiError(500, f"planning the {kind} failed: {type(exc).__name__}: {exc}") from None
        if terms.get("key_escrow"):  # our chunks' keys in shares held by other nodes (node.contracts.desk.escrow)
            spec, summary = await self.stack.escrow.attach(self, spec, summary, terms["key_escrow"])
        why = desk.reserve_spec(spec, self.clock.now())  # the peer's device, owner and class caps, held
        if why:
            raise ApiError(409, why)
        data = spec.encode()
        try:
            if kind == "escrow":
                await self._offer(arbiter, "arbiter", data)
            await self._offer(peer, kind, data)
            await self._submit(desk.run, lambda now: desk.feed_heights(now) + desk.run.start(spec, now))
        except BaseException:  # (our enclave refused the open, or a peer's chunk is gone: never started)
            desk.unreserve_spec(spec)
            raise
        return {"state": "agreed", "contract": spec_id(spec).hex(), **summary}

    async def ring(self, give: str, legs: list[tuple[str, str]], chunks: int, deadline_blocks: int
                   ) -> dict[str, Any]:
        """A ring (stdlib ``ring``): we give ``chunks`` of ``give`` to the first peer of ``legs``, each
        ``(peer, asset)`` gives its chunks to the next, the last to us; agreed with every peer over
        /keyswitch/contract/1, run over /keyswitch/contract-run/1 (the enclaves decide every release)."""
        from node.contracts.spec import spec_id

        from libp2p.peer.id import ID

        desk = self.stack.desk
        for p, _ in legs:
            try:
                ID.from_base58(p)
            except Exception:
                raise ApiError(409, f"{p!r} is not a peer id") from None
        await self._who([p for p, _ in legs])
        try:
            spec, summary = desk.plan_ring(give, legs, chunks, deadline_blocks)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        why = desk.reserve_spec(spec, self.clock.now())  # our predecessor's device, owner and class caps, held
        if why:
            raise ApiError(409, why)
        data = spec.encode()
        try:
            for p, _ in legs:
                await self._offer(p, "ring", data)
            await self._submit(desk.run, lambda now: desk.feed_heights(now) + desk.run.start(spec, now))
        except BaseException:  # (as for an escrow or option: never started)
            desk.unreserve_spec(spec)
            raise
        return {"state": "agreed", "contract": spec_id(spec).hex(), **summary}

    async def approve(self, contract: str, message: str) -> dict[str, Any]:
        """Sign ``message`` (an escrow arbiter's "release", an option buyer's "exercise") for a contract."""
        desk = self.stack.desk
        await self._submit(desk.run, lambda now: desk.approve(contract, message, now))
        return {"contract": contract, "approved": message}

    async def contract(self, peer: str, give: str, take: str, chunks: int, kind: str = "swap",
                       terms: dict[str, Any] | None = None) -> dict[str, Any]:
        """Plan a swap with ``peer`` from the offer book, agree it over /keyswitch/contract/1, start the
        release rounds; answers once the peer agreed (the rounds then run by themselves). ``kind`` escrow
        or option: see ``language_contract``."""
        from node.assets import ASSETS

        desk = self.stack.desk
        if kind not in ("swap", "escrow", "option", "ring"):
            raise ApiError(400, f"kind must be swap, escrow, option or ring, not {kind!r}")
        if peer == self.stack.peer_id:
            raise ApiError(400, "a contract needs another peer")
        if kind == "ring":  # terms: legs [(peer, asset)] in ring order, refund_blocks
            for a in [give] + [a for _, a in terms["legs"]]:
                if a not in ASSETS:
                    raise ApiError(400, f"unknown asset {a!r}")
            return await self.ring(give, list(terms["legs"]), chunks, int(terms.get("refund_blocks", 100)))
        if kind != "swap":
            for a in (give, take) if kind == "option" else (give,):
                if a not in ASSETS:
                    raise ApiError(400, f"unknown asset {a!r}")
            return await self.language_contract(kind, peer, give, take, chunks, terms or {})
        for a in (give, take):
            if a not in ASSETS:
                raise ApiError(400, f"unknown asset {a!r}")
        if peer == self.stack.peer_id:
            raise ApiError(400, "a swap needs another peer")
        plan, summary = await self.plan_swap(peer, give, take, chunks)
        # the initiator's own caps on the peer named by hand: its device's reputation, device, owner and class
        # caps, checked and held from now (released if the offer comes to nothing, else when the contract ends)
        why = desk.reserve_plan(peer, plan, self.clock.now())
        if why:
            raise ApiError(409, why)
        try:
            return await self._offer_swap(desk, peer, plan, summary)
        except BaseException:
            desk.unreserve_plan(peer, plan)
            raise

    async def plan_swap(self, peer: str, give: str, take: str, chunks: int) -> tuple[Any, dict[str, Any]]:
        """``SwapDesk.plan_swap`` once the peer is known (``swap_peer``). ApiError with the reason."""
        await self.swap_peer(peer)
        try:
            return self.stack.desk.plan_swap(peer, give, take, chunks)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None

    async def swap_peer(self, peer: str) -> None:
        """A swap's plan is a spec naming the peer's attested binding: asked first (``who``)."""
        await self._who([peer])

    async def _offer_swap(self, desk, peer: str, plan, summary: dict[str, Any]) -> dict[str, Any]:
        """Offer the swap ``plan`` (``plan_swap``) to ``peer`` over /keyswitch/contract/1; once it agreed, run it:
        its turns spec over /keyswitch/contract-run/1 (we expect it before the offer, the peer opens it once agreed,
        we then open it too)."""
        from node.contracts.spec import spec_id

        rounds = desk.plan_rounds(plan)
        await self._submit(desk.run, lambda now: desk.swaps.propose(plan, now))
        answer = await self._contract_answer(peer, "swap", plan.encode())
        if not (answer and answer[0]):  # (no contract: none to expect)
            self.node.driver.submit(desk.run, lambda now: desk.swaps.withdraw(plan, now))
        if answer is None:
            raise ApiError(504, "the peer did not answer the contract offer in time")
        accepted, reason = answer
        if not accepted:
            raise ApiError(409, f"the peer refused: {reason}")
        return {"state": "agreed", "contract": spec_id(plan).hex(), **summary, "rounds": rounds}

    def reputation(self) -> list[dict[str, Any]]:
        return self.stack.engine.reputation_table(self.clock.now())

    async def deposit(self, asset: str, chunks: int) -> dict[str, Any]:
        from node.assets import UnknownAsset
        from node.app.deposits import QuoteRefused, make_deposits

        stack = self.stack
        try:
            made = await trio.to_thread.run_sync(lambda: make_deposits(
                self.stack.enclave, stack.ledger, stack.deposits, asset=asset, chunks=chunks,
                chunk_usd_cents=stack.chunk_usd_cents, now=self.clock.now(), net=self.stack.net,
                peer_id=self.stack.peer_id, prices=stack.prices))  # priced with the node's feed
        except QuoteRefused as exc:
            raise ApiError(409, str(exc)) from None
        except (UnknownAsset, ValueError) as exc:
            raise ApiError(400, str(exc)) from None
        await trio.to_thread.run_sync(self.stack.refresh_offers, self.clock.now())
        self.node.driver.submit(self.stack.protocol,
                                lambda now: self.stack.protocol.set_own_sheet(self.stack.protocol.own, now))
        return {"deposits": [d.to_json() for d in made]}

    async def request(self, asset: str, usd: float, contract: str, give: str = "", wait: bool = True,
                      terms: dict[str, int] | None = None) -> dict[str, Any]:
        """Ask the network for proposals and choose; answers once the deadline has passed. With ``give``: a
        request to contracts (``node.app.requestdesk``): the chosen providers' chunks are swapped against ours of
        ``give`` (contract option: optioned, ``terms`` premium_chunks and expiry_blocks); its report once it
        ended (``wait``), else at once (its ``request_id`` names it)."""
        from node.assets import ASSETS
        from node.protocols.rfp import MAX_REQUEST_CENTS

        if asset not in ASSETS:
            raise ApiError(400, f"unknown asset {asset!r}")
        if give and give not in ASSETS:
            raise ApiError(400, f"unknown asset {give!r} (give)")
        if usd != usd or usd in (float("inf"), float("-inf")):
            raise ApiError(400, f"usd must be a finite number, got {usd!r}")
        cents = int(round(usd * 100))
        if len(contract) > 128:
            raise ApiError(400, "contract: at most 128 characters")
        if not 0 < cents <= MAX_REQUEST_CENTS:
            raise ApiError(400, f"usd must be in (0, {MAX_REQUEST_CENTS / 100:.0f}], got {usd!r}")
        if give:
            if contract.strip().lower() not in ("", "swap", "option"):  # (what runs per provider: say so)
                raise ApiError(400, REQUEST_KINDS.get(contract.strip().lower(), f"contract {contract!r}: a request "
                               "to contracts (give) runs swaps or options only: ask with contract swap or option"))
            premium, expiry = int((terms or {}).get("premium_chunks", 1)), int((terms or {}).get("expiry_blocks", 100))
            if contract.strip().lower() == "option":
                from node.protocols.request_run import option_terms_refusal

                why = option_terms_refusal(give, premium, expiry)
                if why:
                    raise ApiError(400, why)
            rid = self.requests.start(asset, cents, contract, give, premium, expiry)
            return await self.requests.wait(rid, -1, math.inf, until_done=True) if wait else self.requests.report(rid)
        return (await self.choose(asset, cents, contract)).to_json()

    async def request_report(self, rid: str, version: int, timeout: float) -> dict[str, Any]:
        """A request to contracts' report; with ``version`` >= 0, once it changed since (or ``timeout``)."""
        if version < 0:
            return self.requests.report(rid)
        return await self.requests.wait(rid, version, timeout)

    async def choose(self, asset: str, cents: int, contract: str, exclude: frozenset[str] = frozenset()):
        """The requests-for-proposals round trip: the ``rfp.Chosen`` (leaving out offers of ``exclude``)."""
        rfp = self.stack.rfp
        decided = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def start(now: float):
            rid, cmds = rfp.request(asset, cents, contract, now, deadline=self.stack.request_deadline,
                                    exclude=exclude)
            rfp.result_listeners.add(rid, lambda: token.run_sync_soon(decided.set))
            if rid in rfp.results:  # (decided at once)
                rfp.result_listeners.fire(rid)
            return rid, cmds

        # 429: not sent, and never will be (withdrawn), or refused by rfp (too many open requests): ask again
        rid = await self._call(rfp, start, "the request", refused=429)
        try:
            with trio.move_on_after(self.stack.request_deadline + 10):  # woken by the decision: no polling
                await decided.wait()
        finally:  # (cancelled too: the listener goes)
            self.node.driver.submit(rfp, lambda now: rfp.result_listeners.discard(rid))
        if rid not in rfp.results:
            raise ApiError(504, "no decision within the deadline")
        return rfp.results[rid]

    async def sweep(self, deposit: str, to: str) -> dict[str, Any]:
        """Withdraw one of this node's deposits to ``to``: the enclave exports the key to its owner
        (the one clear export it allows; the key is then never offered or released again), and the
        funds are swept at once. The key is used here and dropped, never logged or returned."""
        from node.ledger.base import LedgerError
        from node.tee.client import EnclaveRefused

        stack = self.stack
        try:
            pub = bytes.fromhex(deposit)
        except ValueError:
            raise ApiError(400, "deposit must be the hex public key of one of this node's deposits") from None
        if not to:
            raise ApiError(400, "empty destination address")
        match = [d for d in stack.deposits.all() if d.pubkey == pub]
        if not match:
            raise ApiError(404, "no such deposit on this node (see GET /v1/deposits)")
        d = match[0]
        from node.api.addresses import check_destination

        # before the enclave exports anything: a destination that is not an address of the deposit's chain
        # (another asset's or network's, a checksum error) would burn the funds
        canonical, why = check_destination(d.asset, to)
        if why is not None:
            raise ApiError(400, f"to: not a {d.asset} address to sweep to: {why}")
        to = canonical

        exports = Path(self.stack.datadir) / "owner-exports"
        keep = exports / f"{d.asset}-{pub.hex()}.key"

        def work() -> str:
            from node.assets import export_key
            from node.fsutil import atomic_write

            secret = self.stack.enclave.export_to_owner(pub)
            try:
                # nothing lost on a failed sweep: the exported key is kept for its owner (0600) until the
                # sweep has gone through, then removed
                exports.mkdir(mode=0o700, exist_ok=True)
                atomic_write(keep, (export_key(d.asset, secret) + "\n").encode())
                txid = stack.ledger.sweep(d.asset, secret, to)
            finally:
                del secret
            keep.unlink()
            return txid

        try:
            txid = await trio.to_thread.run_sync(work)
        except EnclaveRefused as exc:
            raise ApiError(409, f"the enclave refused: {exc.reason}") from None
        except LedgerError as exc:
            raise ApiError(409, f"the ledger refused the sweep ({exc}); the key was exported to its owner "
                                f"and kept in {keep} (mode 0600): sweep it with a wallet") from None
        await trio.to_thread.run_sync(self.stack.refresh_offers, self.clock.now())
        self.stack.protocol.own.retracted.append(pub)
        self.node.driver.submit(self.stack.protocol,
                                lambda now: self.stack.protocol.set_own_sheet(self.stack.protocol.own, now))
        return {"txid": txid, "asset": d.asset, "to": to}
