"""``SwapDesk``'s agreement (``node.contracts.desk.swaps``), the responder's side: the policy a peer's offer
over ``/keyswitch/contract/1`` must pass (our current offers, the peer's in our book, the value at our price, the
contract policy by exact hash, the lock horizon, every counterparty device's caps)."""

from __future__ import annotations

VALUE_TOLERANCE = 0.98
#: the stdlib contracts' height parameters: how long a contract can keep chunks committed
HEIGHT_PARAMS = ("premium_by", "expiry", "refund_height", "deadline")
#: blocks our ledger may be behind the proposer's when it planned at the limit (not counted against it)
HEIGHT_LAG = 6
#: s a noted ledger height stays good for the lock horizon (the daemon notes our offers' heights every
#: ``HEIGHTS_EVERY`` s off the event loop: ``refresh_heights``); older, the check reads the ledger itself
HEIGHT_FRESH = 30.0
HEIGHTS_EVERY = 5.0


class Acceptance:
    """The responder's policy of ``SwapDesk`` (a mixin: the state and the helpers are there)."""

    # -------------------------------------------------------------- agreement
    def _accept_spec(self, peer: str, offer, now: float) -> str | None:
        """Escrow / option / arbiter offers: the spec must name us and the proposer, with current offers."""
        from node.contracts.spec import decode_spec

        spec = decode_spec(offer.schedule)
        if isinstance(spec, str):
            return spec
        bad = self._contract_policy(offer.kind, spec) or self._lock_horizon(spec, now)
        if bad:
            return bad
        own = self._identity()
        ids = spec.ids
        if peer not in ids or own.binding.peer_id not in ids:
            return "the spec does not name both of us"
        me = spec.parties[ids.index(own.binding.peer_id)]
        if me.binding.sign_pub != own.binding.sign_pub or me.binding.enc_pub != own.binding.enc_pub:
            return "the spec names another enclave for us"
        if offer.kind == "arbiter":  # (kept on disk before we answer yes)
            return self.arbitrated.agree(peer, spec, now)
        if offer.kind == "swap" and me is not spec.parties[1]:  # (turns: party 0 gives first, the proposer)
            return "a swap's proposer is party 0 of its turns contract, this node party 1"
        mine = {o.pubkey: o for o in (own.offers or [])}
        k = ids.index(own.binding.peer_id)
        pred = spec.parties[(k - 1) % len(spec.parties)]  # in a ring, only our predecessor gives to us
        give = got = 0
        for p in spec.parties:
            for c in p.chunks:
                if p is me:
                    o = mine.get(c.pubkey)
                    if o is None or o.address != c.address or o.amount != c.amount or o.expiry <= now:
                        return f"chunk {c.address} is not one of this node's current offers"
                    give += self._worth(o.asset, o.amount, o.usd_cents)
                else:
                    row = self._book_offer(c.address, p.binding.peer_id)
                    if row is None or row["origin"] != p.binding.peer_id or bytes(row["pubkey"]) != c.pubkey \
                            or row["amount"] != c.amount or row["asset"] != c.asset:
                        return f"chunk {c.address} is not an offer of {p.binding.peer_id} in this node's book"
                    worth = self._our_value(f"chunk {c.address} in the spec", c.asset, c.amount, c.usd_cents) \
                        if c.usd_cents else 0  # (0: no USD declared in the spec; the book's value is checked)
                    if isinstance(worth, str):
                        return worth
                    worth = self._our_value(f"offer {c.address} in our book", c.asset, c.amount, row["usd_cents"])
                    if isinstance(worth, str):
                        return worth
                    if offer.kind != "ring" or p is pred:
                        got += worth  # at OUR price, never the declared figure
        if got < VALUE_TOLERANCE * give:
            return f"value: would give {give / 100:.2f} USD for {got / 100:.2f} USD"
        why = self.reserve_spec(spec, now, responder=True)  # every counterparty device's caps, checked and held
        if why:
            return why
        if offer.kind == "swap":  # we open it first, once our answer is out (``contract.accepted``): as in
            self.swaps.starts.append(spec)  # release/1, the proposer commits its chunks only to a contract we signed
        else:
            self.run.expect(spec, now)
        return None

    def _lock_horizon(self, spec, now: float) -> str | None:
        """A peer's contract may keep our chunks committed (or our arbitration owed) until its last height
        parameter: refused past ``contracts.max_lock_blocks`` blocks from the height OUR ledger reads now.
        Before, a buyer could lock a writer's chunks for 100,000 blocks (~2 years of Bitcoin) for one premium."""
        params = {p.name: p.value for p in spec.params}
        heights = {k: v for k, v in params.items() if k in HEIGHT_PARAMS and isinstance(v, int)}
        asset = params.get("height_asset") or params.get("asset_a")
        if not heights or not isinstance(asset, str):
            return None
        try:
            now_height = self._height(asset, now)
        except Exception as exc:  # no ledger for it: nothing of ours can be committed on its clock
            return f"no height for {asset} on this node's ledger: {type(exc).__name__}"
        name, last = max(heights.items(), key=lambda kv: kv[1])
        if last - now_height > self.max_lock_blocks + HEIGHT_LAG and self.heights.get(asset, (None, now))[1] < now:
            # a noted height is a floor (heights only grow; a chain with a block a second is a block behind per
            # second of the note's age): read the ledger before refusing on it (a refusal path only)
            try:
                now_height = self._read_height(asset, now)
            except Exception as exc:
                return f"no height for {asset} on this node's ledger: {type(exc).__name__}"
        if last - now_height > self.max_lock_blocks + HEIGHT_LAG:
            return (f"lock horizon: {name} = {last} is {last - now_height} blocks of {asset} from now (height "
                    f"{now_height}); this node commits chunks for at most {self.max_lock_blocks} blocks "
                    f"(setting contracts.max_lock_blocks)")
        return None

    def _height(self, asset: str, now: float) -> int:
        """Our ledger's height of ``asset``: the one noted within ``HEIGHT_FRESH`` s (no ledger call: the check
        runs in the agreement, on the event loop), else read now (a blocking call, then noted)."""
        noted = self.heights.get(asset)
        if noted is not None and 0 <= now - noted[1] <= HEIGHT_FRESH:
            return noted[0]
        return self._read_height(asset, now)

    def _read_height(self, asset: str, now: float) -> int:
        """Our ledger's height of ``asset`` read now (a blocking call), and noted."""
        h = self.stack.ledger.height(asset)
        self.heights[asset] = (h, now)
        return h

    def refresh_heights(self, now: float) -> None:
        """Note our ledger's height of every asset we offer (what a peer's contract on our chunks is timed in) and
        of every asset an escrow we arbitrate ends on (its spec is dropped once that height passed). Blocking ledger
        calls: the daemon runs it on a worker thread every ``HEIGHTS_EVERY`` s; an asset whose
        ledger does not answer keeps its last note (which goes stale, and the check then reads for itself)."""
        own = self.stack.protocol.own
        for asset in sorted({o.asset for o in (own.offers if own is not None else [])} | self.arbitrated.assets()):
            try:
                self.heights[asset] = (self.stack.ledger.height(asset), now)
            except Exception:
                continue
        self.arbitrated.end(self.heights)  # escrows we arbitrate whose last height passed: dropped

    def _contract_policy(self, kind: str, spec) -> str | None:
        """Which contracts this node runs for a peer: a ``kind`` offer must carry the stdlib contract of that
        kind, known by the EXACT hash of its source and its parameter schema (never by words in its text), or
        a contract whose source hash the operator allowed (``contracts.allowed_hashes``)."""
        from node.contracts import stdlib

        want = {"escrow": "escrow", "option": "option", "arbiter": "escrow", "ring": "ring", "swap": "turns"}[kind]
        name, why = stdlib.identify(spec.source, {p.name: p.value for p in spec.params})
        if name == want:
            return None
        h = stdlib.source_hash(spec.source)
        if h in self.allowed_hashes:
            return None
        return (f"contract policy: a {kind} offer must carry the stdlib {want} contract (source hash "
                f"{stdlib.SOURCE_HASHES[want]}) or a contract in contracts.allowed_hashes; this one's source hash "
                f"is {h}: {why or f'it is the stdlib {name}'}")

    def accept(self, peer: str, offer, now: float) -> str | None:
        """The responder's policy; None to agree (and expect the contract), else the reason."""
        from node.contracts.spec import decode_spec

        if offer.kind in ("escrow", "option", "arbiter", "ring"):
            return self._accept_spec(peer, offer, now)
        if offer.kind != "swap":
            return f"unsupported contract kind {offer.kind!r}"
        if isinstance(decode_spec(offer.schedule), str):  # (release/1's bare schedule: that protocol is retired)
            return ("a swap offer must carry the turns spec of its schedule, run over /keyswitch/contract-run/1 "
                    "(/keyswitch/release/1 is retired)")
        return self._accept_spec(peer, offer, now)
