"""``keyswitch run``: the node daemon.

It composes the parts: the enclave (a separate process, simulated backend),
the offer book (SQLite in the data directory), the offers protocol driven by
the py-libp2p runtime, the local control API and, when asked, Prometheus
metrics. It prints readiness lines a person and a test can wait for::

    API listening on http://127.0.0.1:PORT
    swarm listening on /ip4/127.0.0.1/tcp/PORT/p2p/12D3Koo...
    metrics on http://127.0.0.1:PORT/metrics        (with --metrics-port)
    ready 12D3Koo...

Shutdown: SIGTERM or Ctrl-C stops the node gracefully within
``SHUTDOWN_DEADLINE`` seconds (the API stops, the runtime closes its
connections, the offer book and the enclave close; the enclave's sealed state
is only ever replaced atomically, so no exit leaves it half-written). A second
Ctrl-C forces an immediate exit. ``api.url`` and ``.cookie`` are removed on
the way out.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from node import config as cfgmod
from node.app.gauges import GaugeExporter
from node.app.services import NodeServices
from node.app.stack import add_switchboard, make_offer_stack, offer_settings

log = logging.getLogger("keyswitch.daemon")
SHUTDOWN_DEADLINE = 10.0


async def run_daemon(cfg: cfgmod.Config, *, republish: float = 60.0, out=sys.stdout,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the node until SIGINT/SIGTERM (or cancellation). ``task_status.started(node)`` once ready."""
    from node import identity, logs
    from node.api.app import build_app, serve, write_cookie
    from node.clock import SystemClock
    from node.metrics import NodeMetrics
    from node.runtime.driver import run_host
    from node.runtime.node import NodeConfig

    datadir = Path(cfg.datadir)
    clock = SystemClock()
    peer_id = identity.peer_id(datadir)
    logs.bind_peer(peer_id)
    from node.app.deposits import DepositStore, open_ledger

    from node.assets.feeds import build_feed

    prices = build_feed(cfg, datadir=datadir)  # the node's one price feed: a bad prices.* setting stops the start
    await trio.to_thread.run_sync(prices.refresh, clock.now())  # first fetch (HTTP sources) off the event loop
    ledger = open_ledger(cfg)  # first: an unreachable EVM node (ledger.evm_url) stops the start with its reason
    try:
        stack = make_offer_stack(datadir, cfg["network.net"], peer_id, republish=republish,
                                 republish_max=cfg["network.republish_max"], backend=cfg["tee.backend"],
                                 broken=cfg.get("tee.broken", ""), offers=offer_settings(cfg, prices))
    except BaseException:
        ledger.close()
        raise
    stack.prices = prices  # deposits, kept keys, proposals and contracts price with this same object
    print(f"prices: {prices.source} (prices.max_age={prices.max_age:g} s)", file=out, flush=True)
    for s_ in prices.sources:
        if s_.error:
            print(f"prices: {s_.name}: {s_.error}", file=out, flush=True)
    for asset, backend in getattr(ledger, "describe", dict)().items():
        print(f"ledger: {asset} on {backend}", file=out, flush=True)
    stack.ledger, stack.deposits, stack.datadir = ledger, DepositStore(datadir / "deposits.sqlite"), datadir
    stack.chunk_usd_cents = int(round(cfg["deposits.chunk_usd"] * 100))
    stack.refresh_offers(clock.now())
    add_switchboard(stack, datadir, cfg)
    from node.contracts.desk.swaps import HEIGHTS_EVERY, SwapDesk

    stack.desk = SwapDesk(stack, clock=clock, claim_policy=cfg["claims.policy"],  # claim keys: claim.seed
                          prices=prices, price_tolerance=cfg["risk.price_tolerance"],
                          allowed_hashes=cfg["contracts.allowed_hashes"],
                          max_lock_blocks=cfg["contracts.max_lock_blocks"])
    for key, what in stack.desk.migrated:  # release/1 records of an older node: now contract-run records
        print(f"release/1 record {key}: {what}", file=out, flush=True)
    stack.refresh_offers(clock.now())  # kept keys a crash left unadopted are offered at once
    from node.contracts.desk.escrow import EscrowDesk

    from node.stores.designations import DesignationStore

    stack.escrow = EscrowDesk(stack, clock, DesignationStore(datadir / "escrow.sqlite"))  # key escrow (holder,
    # owner, recovery): the contracts we are the recovery node of, on disk
    metrics = NodeMetrics()
    url_file = datadir / "api.url"
    from node.stores.requests import RequestStore

    requests = RequestStore(datadir / "requests.sqlite")  # requests to contracts, across restarts
    try:
        async with trio.open_nursery() as nursery:
            ncfg = NodeConfig.from_config(cfg, app_score=lambda pid: stack.engine.app_score(pid, clock.now()))
            protocols = [stack.protocol, stack.rfp, stack.revocations, stack.outcomes, stack.desk.run,
                         stack.escrow.proto]
            node = await nursery.start(functools.partial(run_host, ncfg, protocols, on_notify=stack.desk.on_notify))
            stack.desk.node = node
            services = NodeServices(node, stack, clock, clock.now())
            from node.app.requestdesk import RequestDesk

            services.requests = RequestDesk(services, nursery, requests)  # requests to contracts (request --give)
            cookie = write_cookie(datadir)
            url = await nursery.start(lambda task_status: serve(build_app(services, cookie, metrics=metrics),
                                                                port=cfg["api.port"], task_status=task_status))
            url_file.write_text(url + "\n")
            print(f"API listening on {url}", file=out, flush=True)
            for a in node.listen_addrs:
                print(f"swarm listening on {a}", file=out, flush=True)
            if cfg["api.metrics_port"]:
                from node.api.app import build_metrics_app

                murl = await nursery.start(lambda task_status: serve(build_metrics_app(metrics),
                                                                     port=cfg["api.metrics_port"],
                                                                     task_status=task_status))
                print(f"metrics on {murl}/metrics", file=out, flush=True)
            node.driver.submit(stack.protocol, lambda now: stack.protocol.set_own_sheet(stack.protocol.own, now))
            print(f"ready {peer_id}", file=out, flush=True)
            task_status.started(node)

            async def gauges() -> None:
                exporter = GaugeExporter(metrics, node, stack, clock)
                while True:
                    exporter.tick()
                    await trio.sleep(1.0)

            async def heights() -> None:
                """Ledger heights for the language contracts' time-locks (the enclaves trust us for them)."""
                while True:
                    if stack.desk.heights_wanted():  # (on the contract worker: it feeds the contract runner)
                        node.driver.submit(stack.desk.run, stack.desk.feed_heights)
                    else:  # nothing to feed: the rest of that tick stays off the worker swaps run on
                        stack.desk.tick(clock.now())
                    await trio.sleep(1.0)

            async def escrow_heights() -> None:
                """The key-escrow desk: recoveries resumed, then every second our ledger's heights for the
                contracts we hold shares of and the recoveries (read off the event loop), results recorded."""
                stack.escrow.start(node)
                while True:
                    if stack.escrow.tick():  # (nothing to watch: no ledger calls)
                        stack.escrow.observe(await trio.to_thread.run_sync(stack.escrow.read_heights))
                    await trio.sleep(1.0)

            async def offer_heights() -> None:
                """The heights of the assets we offer, read off the event loop for the agreement's lock horizon
                (``SwapDesk.refresh_heights``: the check itself then makes no ledger call on the loop)."""
                while True:
                    await trio.to_thread.run_sync(stack.desk.refresh_heights, clock.now(), abandon_on_cancel=True)
                    await trio.sleep(HEIGHTS_EVERY)

            async def offers_refresher() -> None:
                """Deposits confirm after the fact on a ledger with blocks (and funds can vanish):
                every few seconds, re-derive this node's offers and publish when they changed."""
                while True:
                    await trio.sleep(5.0)
                    before = stack.offered()
                    try:
                        await trio.to_thread.run_sync(stack.refresh_offers, clock.now())
                    except Exception as exc:  # an unreachable ledger server: try again later
                        log.warning("offers refresh failed: %s", exc)
                        continue
                    if stack.retract_gone(before):  # in the event loop, as the protocol's own publishing
                        node.driver.submit(stack.protocol,
                                           lambda now: stack.protocol.set_own_sheet(stack.protocol.own, now))

            async def prices_refresher() -> None:
                """The price sources are fetched in a worker thread, never in the event loop; ``price()``
                answers from the last good values meanwhile (and refuses once all are older than prices.max_age)."""
                while True:
                    await trio.sleep(cfg["prices.refresh"])
                    await trio.to_thread.run_sync(prices.refresh, clock.now(), abandon_on_cancel=True)
                    for s_ in prices.sources:
                        if s_.error:
                            log.warning("prices: %s: %s", s_.name, s_.error)

            nursery.start_soon(gauges)
            nursery.start_soon(prices_refresher)
            nursery.start_soon(offers_refresher)
            nursery.start_soon(heights)
            nursery.start_soon(offer_heights)
            nursery.start_soon(escrow_heights)
            await node.stopped.wait()
            nursery.cancel_scope.cancel()
    finally:
        for f in (url_file, datadir / ".cookie"):
            try:
                f.unlink()
            except FileNotFoundError:
                pass
        requests.close()
        stack.close()
        print("stopped", file=out, flush=True)


async def _main(cfg: cfgmod.Config, republish: float) -> None:
    async with trio.open_nursery() as nursery:
        node = await nursery.start(lambda task_status: run_daemon(cfg, republish=republish, task_status=task_status))

        async def signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                n = 0
                async for sig in sigs:
                    n += 1
                    if n == 1:
                        print(f"{signal.Signals(sig).name}: shutting down (again to force)", file=sys.stderr,
                              flush=True)
                        node.stop()
                        nursery.start_soon(_deadline)
                    else:
                        print("forced exit", file=sys.stderr, flush=True)
                        os._exit(130)

        async def _deadline() -> None:
            await trio.sleep(SHUTDOWN_DEADLINE)
            print(f"shutdown took over {SHUTDOWN_DEADLINE:.0f} s: forcing", file=sys.stderr, flush=True)
            os._exit(1)

        nursery.start_soon(signals)
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


def main(cfg: cfgmod.Config, *, republish: float = 60.0) -> None:
    from node.ledger.base import LedgerError

    failed = ""
    try:
        trio.run(_main, cfg, republish)
    except* LedgerError as eg:  # the ledger the node cannot start without (an unreachable EVM node)
        failed = "; ".join(str(e) for e in eg.exceptions)
    if failed:
        print(f"error: {failed}", file=sys.stderr, flush=True)
        raise SystemExit(3)
