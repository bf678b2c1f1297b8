"""``SwapDesk``'s exposure holds (``node.contracts.desk.swaps``): what a contract puts at risk on each
counterparty's device, reserved from agreement and held from the contract stores until it ends (``sync_holds``), and
the agreements withdrawn when their reservation lapses."""

from __future__ import annotations

import hashlib

#: s an agreed contract's exposure stays reserved at most before its contract exists (the initiator proposes as soon
#: as the offer is answered, within the API's 35 s; a responder hears the hello right after). Only the backstop for a
#: peer that vanished: a contract refused before it opened releases its reservation at once (``sync_holds``), and a
#: responder whose reservation lapses no longer agrees to the contract (its late open is refused: no hold uncapped)
RESERVE_TTL = 60.0


class Holds:
    """The exposure holds of ``SwapDesk`` (a mixin: the state and the helpers are there)."""

    # -------------------------------------------------------------- exposure holds
    def _chunk_worth(self, asset: str, amount: int, address: str, origin: str) -> int:
        row = self._book_offer(address, origin)
        return self._worth(asset, amount, int(row["usd_cents"]) if row else 0)

    def _device_of(self, peer: str, sign_pub: bytes | None, addresses: list[str]) -> tuple[bytes, str] | None:
        """(device id, class) of ``peer``'s enclave: from its binding when the contract has it (a device id is
        the SHA-256 of the enclave signing key), else from its offers in our book."""
        device = hashlib.sha256(sign_pub).digest() if sign_pub else None
        dclass = None
        for a in addresses:
            row = self._book_offer(a, peer)
            if row is not None and (device is None or bytes(row["device_id"]) == device):
                device, dclass = bytes(row["device_id"]), row["device_class"]
                break
        if device is None:
            return None
        if dclass is None:
            rec = self.stack.engine.reputation.record(device)
            dclass = rec.device_class if rec is not None else "unknown"
        return device, dclass

    def _spec_holds(self, spec, me: int) -> tuple:
        """What a language contract puts at risk: per other party whose enclave gives chunks to us (in a ring,
        our predecessor), its biggest such chunk at our price, on its device (the steps run in order, each
        enclave releasing only what the contract allows then: what we have given and not got back is at most
        one step, as in a swap); an option we buy adds our premium (paid first) to its writer's hold."""
        from node.risk.caps import Hold

        n = len(spec.parties)
        kind = spec.source.split("contract ", 1)[-1].split()[:1]
        ring = kind == ["ring"]
        # an option's buyer (party 0) pays its premium before anything comes back: the writer's device holds it too
        params = {p.name: p.value for p in spec.params}
        premium = sum(self._worth(c.asset, c.amount, c.usd_cents) for c in spec.parties[0].chunks[
            :int(params.get("premium_chunks", 0))]) if kind == ["option"] and me == 0 else 0
        out = []
        for i, p in enumerate(spec.parties):
            if i == me or not p.chunks or (ring and i != (me - 1) % n):
                continue
            peer = p.binding.peer_id
            dev = self._device_of(peer, p.binding.sign_pub, [c.address for c in p.chunks])
            if dev is None:
                continue
            out.append(Hold(dev[0], peer, dev[1], premium + max(self._chunk_worth(c.asset, c.amount, c.address, peer)
                                                                for c in p.chunks)))
        return tuple(out)

    def sync_holds(self, now: float) -> None:
        """Rebuild the risk engine's holds from the contract stores (one source of truth, so holds survive a
        restart with contracts in flight): every contract not ended holds its exposure; a reservation holds
        until its contract appears in a store (then the contract holds), its agreement is refused before it
        opened (the protocol no longer expects it: the enclave refused the open, the funds are gone...) or it
        expires (then the agreement is withdrawn too: a late open cannot hold beyond the caps)."""
        from node.contracts.protocol.run import TERMINAL as RUN_TERMINAL

        engine = self.stack.engine
        # read before the stores: a protocol stops expecting a contract only once it is in its store
        awaited = {key: self._awaited(match) for key, (_, match, responder) in list(self._reserved.items())
                   if responder}
        wanted: dict[str, tuple] = {}
        present: set[tuple] = set()
        for key, r in list(self.run.runs.items()):
            present.add(("run", key))
            if r.rec.state not in RUN_TERMINAL and not self.swaps.withheld(r):
                wanted["r-" + key] = self._spec_holds(r.spec, r.me)
        self.swaps.holds(now, RESERVE_TTL, present, wanted)  # (swaps we proposed, not opened yet)
        self._resumed_holds(now, wanted)
        for key, (until, match, responder) in list(self._reserved.items()):
            lapsed = self.lapses.due(key, until - RESERVE_TTL, RESERVE_TTL, now)  # (monotonic: ``desk.lapse``)
            if match in present or lapsed or not awaited.get(key, True):
                del self._reserved[key]
                if responder and lapsed and match not in present:
                    self._withdraw(match)  # the peer vanished: agreed no more
            elif key in engine.holds:
                wanted[key] = engine.holds[key]
        self.lapses.keep(wanted)  # (the deadlines of what no longer holds: forgotten)
        engine.sync_holds(wanted)

    def _resumed_holds(self, now: float, wanted: dict[str, tuple]) -> None:
        """``sync_holds``'s part: contracts we agreed to before a restart and the runner expects again (its
        ``agreed`` store) hold their exposure as the reservation this process no longer has would, until
        ``RESERVE_TTL`` after their agreement (counted on the monotonic clock from the restart: ``desk.lapse``);
        then the agreement is withdrawn (a late open is refused), as a lapsed reservation's is. Before, they held
        nothing: a restarted node agreed to new contracts against a device as if those in flight held nothing, and
        all of them could open beyond its cap."""
        reserved = {match for _, match, _ in self._reserved.values()}
        me = self._identity().binding.peer_id
        self._resumed = 0
        for cid, spec, at in self.run.agreements():
            key = cid.hex()
            if key in self.run.runs or ("run", key) in reserved or me not in spec.ids or (
                    self.is_swap(spec) and spec.ids[0] == me):  # (running: held as a run; agreed in this process:
                continue  # reserved; a swap we proposed: held by ``swaps`` while it is a proposal)
            if self.lapses.due("a-" + key, at, RESERVE_TTL, now):  # (monotonic: no wall-clock step moves it)
                self.run.forget(cid)  # the peer did not open it in time: agreed no more
                continue
            wanted["a-" + key] = self._spec_holds(spec, spec.ids.index(me))
            self._resumed += 1

    def _awaited(self, match: tuple) -> bool:
        """Does our protocol still expect the peer to start the contract ``match`` names (we agreed to it)?"""
        from node.contracts.spec import spec_id

        cid = bytes.fromhex(match[1])  # (a swap we agreed to as its responder waits in ``swaps.starts`` until we
        return self.run.expects(cid) or any(spec_id(s) == cid for s in self.swaps.starts)  # open it ourselves)

    def _withdraw(self, match: tuple) -> None:
        """Agree no more to the contract ``match`` names (its reservation lapsed before it started): the runner
        expects it no more, and a swap we agreed to as the responder and have not opened yet is not opened (its
        hold is gone: opened late, it would run beyond the caps)."""
        from node.contracts.spec import spec_id

        self.run.forget(bytes.fromhex(match[1]))
        self.swaps.starts = [s for s in self.swaps.starts if spec_id(s).hex() != match[1]]

    def _reserve(self, match: tuple, holds: tuple, now: float, responder: bool, ttl: float = RESERVE_TTL
                 ) -> str | None:
        """Check ``holds`` against every cap and hold them until the contract ``match`` names is in a store, or
        (``responder``: the protocol expects it from now on) until the protocol no longer expects it (refused
        before it opened), or ``ttl`` seconds (a peer that vanished); None, or the refusal (which cap, which
        device, which figures, which setting)."""
        self.sync_holds(now)
        key = "v-" + hashlib.sha256(repr(match).encode()).hexdigest()[:32]
        if key in self._reserved:
            return None  # the same contract offered again
        refusal = self.stack.engine.try_hold(key, holds, now)
        if refusal is not None:
            return f"risk: {refusal.reason}"
        self._reserved[key] = (now + ttl, match, responder)
        self.lapses.due(key, now, ttl, now)  # (its lapse fixed now, on the monotonic clock)
        return None

    def _unreserve(self, match: tuple) -> None:
        key = "v-" + hashlib.sha256(repr(match).encode()).hexdigest()[:32]
        self._reserved.pop(key, None)
        self.stack.engine.release_hold(key)

    def unreserve_spec(self, spec) -> None:
        from node.contracts.spec import spec_id

        self._unreserve(("run", spec_id(spec).hex()))

    def reserve_spec(self, spec, now: float, responder: bool = False) -> str | None:
        """Either side of a language contract: every counterparty device's caps, checked and held (``responder``:
        we agree to a peer's offer, and expect its open from now on)."""
        from node.contracts.spec import spec_id

        ids = spec.ids
        me = ids.index(self._identity().binding.peer_id)
        return self._reserve(("run", spec_id(spec).hex()), self._spec_holds(spec, me), now, responder)
