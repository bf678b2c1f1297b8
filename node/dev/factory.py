"""The offer stack as a bare runtime node's protocol (``python -m node.runtime --protocol
node.dev.factory:offers_factory``): the functional tests and the network benchmarks run it."""

from __future__ import annotations

from node.app.stack import make_offer_stack


def offers_factory(ctx):
    """``--protocol node.dev.factory:offers_factory`` for ``python -m node.runtime`` (functional tests).

    Options: ``republish=SECONDS`` (default 60: the first re-announcement of an unchanged sheet),
    ``republish_max=SECONDS`` (default 1800: the cap of its doubling), ``keys=N``: make N deposits of $50 of
    ``asset=`` (default BTC-REG) on a dev ledger in the data directory (enclave keys, quote verified,
    funded from the faucet, confirmed) and offer them. ``enclave=in-process``: the simulated enclave's
    trusted core runs in the node's process instead of a separate one (benchmarks with many nodes on few
    cores); the same core signs the same sheets.
    """
    stack = make_offer_stack(ctx.datadir, ctx.net, ctx.peer_id,
                             republish=float(ctx.options.get("republish", 60)),
                             republish_max=(float(ctx.options["republish_max"])
                                            if "republish_max" in ctx.options else None),
                             in_process=ctx.options.get("enclave", "subprocess") == "in-process")
    n = int(ctx.options.get("keys", 0))
    if n:
        from node.app.deposits import DepositStore, make_deposits
        from node.ledger.devnet import DevLedger

        ledger = DevLedger(ctx.datadir / "ledger.sqlite", automine=True)
        store = DepositStore(ctx.datadir / "deposits.sqlite")
        stack.ledger, stack.deposits = ledger, store
        if not store.all():
            make_deposits(stack.enclave, ledger, store, asset=ctx.options.get("asset", "BTC-REG"), chunks=n,
                          chunk_usd_cents=5000, now=ctx.clock.now(), net=ctx.net, peer_id=ctx.peer_id)
        stack.refresh_offers(ctx.clock.now())
    proto = stack.protocol
    proto.status = lambda: {"offers_in_book": stack.book.count(now=ctx.clock.now()),
                            "origins": sorted(stack.book._latest), "seq": proto.seq,
                            "reasons": proto.reasons, "pull": dict(proto.pull_stats),
                            "next_interval": proto.next_interval, **proto.stats}
    return proto
