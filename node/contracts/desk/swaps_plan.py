"""``SwapDesk``'s planning (``node.contracts.desk.swaps``), the initiator's side: a swap's ``turns`` spec from
our offers and a peer's in the book, and the specs of an escrow, an option and a ring; and an approval signed for a
contract we run or arbitrate."""

from __future__ import annotations


class Planning:
    """The planning of ``SwapDesk`` (a mixin: the state and the helpers are there)."""

    # -------------------------------------------------------------- planning
    def plan_swap(self, peer: str, give_asset: str, take_asset: str, chunks: int, *,
                  busy: frozenset[bytes] = frozenset(), addresses: frozenset[str] | None = None):
        """(plan, summary) for swapping ``chunks`` of our ``give_asset`` for the peer's ``take_asset``: the plan is
        the ``turns`` spec of the schedule (``SwapRuns.spec``: the peer's attested binding must be known,
        ``NodeServices._who``).
        ``busy``: deposit keys of ours not to use (promised to another swap being agreed); ``addresses``: take
        only these offers of the peer (a request's allocation), else any."""
        schedule, summary, usd = self._swap_schedule(peer, give_asset, take_asset, chunks, busy, addresses)
        return self.swaps.spec(peer, schedule, usd), summary

    def _swap_schedule(self, peer: str, give_asset: str, take_asset: str, chunks: int,
                       busy: frozenset[bytes], addresses: frozenset[str] | None):
        """(schedule, summary, declared USD cents per round) of ``plan_swap``."""
        from node.contracts.protocol.schedule import Chunk, swap_schedule

        now = self.clock.now()
        mine = [o for o in (self.stack.protocol.own.offers if self.stack.protocol.own else [])
                if o.asset == give_asset and o.expiry > now and o.pubkey not in busy][:chunks]
        if len(mine) < chunks:
            raise ValueError(f"this node offers {len(mine)} unexpired {give_asset} chunk(s) not promised to another "
                             f"swap, {chunks} needed (fund more with: keyswitch deposit --asset {give_asset})")
        theirs = [c for c in self.stack.book.candidates(take_asset, now=now) if c.owner_id == peer
                  and (addresses is None or c.address in addresses)]
        taken = self.keys_in_our_contracts()
        theirs = [c for c in theirs if bytes(self._book_offer(c.address, peer)["pubkey"]) not in taken]
        if len(theirs) < chunks:  # (a key already in one of our contracts is never bought again: a device that
            # offers it once more would be selling it twice, and our own enclave would refuse the second copy)
            raise ValueError(f"the book holds {len(theirs)} {take_asset} offer(s) from {peer} that are in none of "
                             f"our contracts, {chunks} needed")
        want = sum(o.usd_cents for o in mine)
        theirs = [c for c in theirs if isinstance(self._our_value("", c.asset, c.amount, c.usd_cents), int)]
        if len(theirs) < chunks:  # (a chunk whose declared value our price does not bear out is skipped)
            raise ValueError(f"the book holds {len(theirs)} {take_asset} offer(s) from {peer} whose declared "
                             f"value matches our price (risk.price_tolerance), {chunks} needed")
        theirs.sort(key=lambda c: (abs(c.usd_cents - want / chunks), c.offer_id))
        theirs = theirs[:chunks]
        a = [Chunk(o.asset, o.address, o.pubkey, o.amount) for o in mine]
        b = [Chunk(c.asset, c.address, bytes(self._book_offer(c.address, peer)["pubkey"]), c.amount) for c in theirs]
        summary = {"peer": peer, "give": {"asset": give_asset, "chunks": chunks, "usd_cents": want},
                   "take": {"asset": take_asset, "chunks": chunks, "usd_cents": sum(c.usd_cents for c in theirs)}}
        schedule = swap_schedule(a, b)
        declared = {o.pubkey: o.usd_cents for o in mine} | {ch.pubkey: c.usd_cents for ch, c in zip(b, theirs)}
        return schedule, summary, [declared[rd.chunk.pubkey] for rd in schedule.rounds]

    # -------------------------------------------------------------- a swap's plan: its turns spec
    def reserve_plan(self, peer: str, plan, now: float) -> str | None:
        """The initiator's caps on ``peer``'s device for a swap ``plan`` (``plan_swap``), checked and held."""
        return self.reserve_spec(plan, now)

    def unreserve_plan(self, peer: str, plan) -> None:
        self.unreserve_spec(plan)

    @staticmethod
    def plan_keys(plan) -> list[bytes]:
        """Our deposit keys (party 0's) in a swap ``plan``."""
        return [c.pubkey for c in plan.parties[0].chunks]

    @staticmethod
    def plan_rounds(plan) -> int:
        return sum(len(p.chunks) for p in plan.parties)

    @staticmethod
    def is_swap(spec) -> bool:
        """Is ``spec`` a two-party swap (the stdlib ``turns`` contract ``plan_swap`` builds)? By the exact hash."""
        from node.contracts.desk.swaprun import is_swap

        return is_swap(spec)

    def keys_in_our_contracts(self) -> set[bytes]:
        """Every deposit key named in one of our contracts, any state (swaps and language contracts), or in a swap
        we proposed that the peer has not opened yet (a second swap must not buy the same key: our enclave would
        refuse the second contract after our chunk of it was paid)."""
        specs = [r.spec for r in list(self.run.runs.values())] + [s for _, s in list(self.swaps.proposed.values())]
        return {ch.pubkey for spec in specs for p in spec.parties for ch in p.chunks}

    def _identity(self):
        """Our current offer sheet identity (binding and quote change when our deposits do)."""
        return self.stack.protocol.own

    def _commits(self, offers) -> list:
        from node.contracts.spec import Commit

        return [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in offers]

    def _my_offers(self, asset: str, n: int, now: float, promised: frozenset[bytes] = frozenset()) -> list:
        busy = {c.pubkey for r in self.run.runs.values() if r.rec.state not in ("done", "failed")
                for c in r.spec.parties[r.me].chunks} | promised  # committed to a running contract, or promised
        mine = [o for o in (self.stack.protocol.own.offers if self.stack.protocol.own else [])
                if o.asset == asset and o.expiry > now and o.pubkey not in busy][:n]
        if len(mine) < n:
            raise ValueError(f"this node offers {len(mine)} unexpired {asset} chunk(s), {n} needed "
                             f"(fund more with: keyswitch deposit --asset {asset})")
        return mine

    def _known(self, peer: str):
        b = self.run.known.get(peer)
        if b is None:
            raise ValueError(f"no attested binding of {peer} (it did not answer who)")
        return b

    def plan_escrow(self, payee: str, arbiter: str, asset: str, chunks: int, refund_blocks: int):
        """(spec, summary): our ``chunks`` of ``asset`` held for ``payee`` until ``arbiter`` signs "release";
        back to us at the current height + ``refund_blocks`` without it."""
        from node.contracts import stdlib
        from node.contracts.spec import PartySpec, make_spec

        now = self.clock.now()
        own = self._identity()
        mine = self._my_offers(asset, chunks, now)
        height = self.stack.ledger.height(asset)
        spec = make_spec(self.stack.net, stdlib.source("escrow"),
                         {"height_asset": asset, "refund_height": height + refund_blocks},
                         [PartySpec(own.binding, self._commits(mine)), PartySpec(self._known(payee)),
                          PartySpec(self._known(arbiter), [], False)])
        return spec, {"kind": "escrow", "payee": payee, "arbiter": arbiter, "asset": asset, "chunks": chunks,
                      "usd_cents": sum(o.usd_cents for o in mine), "refund_height": height + refund_blocks}

    def plan_option(self, writer: str, give: str, take: str, chunks: int, premium_chunks: int,
                    premium_blocks: int, expiry_blocks: int, *, busy: frozenset[bytes] = frozenset(),
                    addresses: frozenset[str] | None = None):
        """(spec, summary): a call option on ``chunks`` of the writer's ``take``; we pay ``premium_chunks`` of
        ``give`` now (before + ``premium_blocks``) and ``chunks`` more of ``give`` as the strike on exercise
        (before + ``expiry_blocks``). Heights count on the ledger of ``take``. ``busy`` and ``addresses``: as
        for ``plan_swap`` (a request's allocation)."""
        from node.contracts import stdlib
        from node.contracts.spec import Commit, PartySpec, make_spec

        now = self.clock.now()
        own = self._identity()
        mine = self._my_offers(give, premium_chunks + chunks, now, busy)
        theirs = [c for c in self.stack.book.candidates(take, now=now) if c.owner_id == writer
                  and (addresses is None or c.address in addresses)][:chunks]
        if len(theirs) < chunks:
            raise ValueError(f"the book holds {len(theirs)} {take} offer(s) from {writer}, {chunks} needed")
        wc = [Commit(bytes(self._book_offer(c.address, writer)["pubkey"]), c.asset, c.address, c.amount, c.usd_cents)
              for c in theirs]
        height = self.stack.ledger.height(take)
        params = {"height_asset": take, "premium_chunks": premium_chunks, "premium_by": height + premium_blocks,
                  "expiry": height + expiry_blocks}
        spec = make_spec(self.stack.net, stdlib.source("option"), params,
                         [PartySpec(own.binding, self._commits(mine)), PartySpec(self._known(writer), wc)])
        return spec, {"kind": "option", "writer": writer, "give": give, "take": take, "chunks": chunks,
                      **params}

    def plan_ring(self, give: str, legs: list[tuple[str, str]], chunks: int, deadline_blocks: int):
        """(spec, summary): the stdlib ring: we give ``chunks`` of ``give`` to the first peer of ``legs``,
        each peer ``(peer, asset)`` gives ``chunks`` of its ``asset`` offers (from our book) to the next, the
        last to us. Each party must bring ``usd`` (the smallest total): unmoved chunks go home at the current
        height of ``give`` + ``deadline_blocks``."""
        from node.contracts import stdlib
        from node.contracts.spec import Commit, PartySpec, make_spec

        now = self.clock.now()
        own = self._identity()
        peers = [p for p, _ in legs]
        if len(legs) < 2 or len(set(peers)) != len(peers) or own.binding.peer_id in peers:
            raise ValueError("a ring needs at least two other, distinct peers")
        parties = [PartySpec(own.binding, self._commits(self._my_offers(give, chunks, now)))]
        for peer, asset in legs:
            theirs = sorted(self.stack.book.candidates(asset, now=now), key=lambda c: c.offer_id)
            theirs = [c for c in theirs if c.owner_id == peer][:chunks]
            if len(theirs) < chunks:
                raise ValueError(f"the book holds {len(theirs)} {asset} offer(s) from {peer}, {chunks} needed")
            parties.append(PartySpec(self._known(peer), [
                Commit(bytes(self._book_offer(c.address, peer)["pubkey"]), c.asset, c.address, c.amount,
                       c.usd_cents) for c in theirs]))
        usd = min(sum(c.usd_cents for c in p.chunks) for p in parties)
        height = self.stack.ledger.height(give)
        params = {"usd": usd, "height_asset": give, "deadline": height + deadline_blocks}
        spec = make_spec(self.stack.net, stdlib.source("ring"), params, parties)
        return spec, {"kind": "ring", "parties": [own.binding.peer_id, *peers], "give": give,
                      "legs": [{"peer": p, "asset": a} for p, a in legs], "chunks": chunks, **params}

    def approve(self, contract: str, message: str, now: float):
        """Sign ``message`` for a contract we run or arbitrate (by id hex)."""
        r = self.run.runs.get(contract)
        spec = r.spec if r is not None else self.arbitrated.get(contract)
        if spec is None:
            raise ValueError(f"no contract {contract} here")
        return self.run.approve(spec, message, now)
