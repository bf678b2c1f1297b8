"""A stand-alone node process: ``python -m node.runtime`` (and ``python -m bootstrap``).

Runs ``run_host`` with the protocols made by ``--protocol module:factory``
factories (each ``factory(ctx: ProtocolContext)`` returns one protocol or a
list), prints ``LISTEN <multiaddr>`` lines once listening, writes a JSON
status file every ``--status-interval`` seconds if asked (what the
functional-test harness polls), and shuts down gracefully on SIGINT/SIGTERM.
Settings come from ``node.config`` (defaults < config.toml < env < flags).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.clock import Clock, SystemClock
from node.fsutil import atomic_write

log = logging.getLogger("keyswitch.runtime.runner")


def _live_tasks() -> list[trio.lowlevel.Task]:
    stack, out = [trio.lowlevel.current_root_task()], []
    while stack:
        task = stack.pop()
        out.append(task)
        stack.extend(t for nursery in task.child_nurseries for t in nursery.child_tasks)
    return out


def trio_tasks() -> int:
    """The trio tasks alive in this run now (the root task and every descendant): what ``/v1/status``
    reports as ``tasks``, so that a long run (``benchmarks.soak``) sees a task leak. Call it on the trio
    thread."""
    return len(_live_tasks())


_TRIO_DIR = os.path.dirname(trio.__file__) + os.sep


def _blocked_in(task: trio.lowlevel.Task) -> str:
    """The innermost function (outside trio itself) the task waits in: along its coroutine's await chain."""
    coro, last = task.coro, ""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        if not frame.f_code.co_filename.startswith(_TRIO_DIR):
            last = frame.f_code.co_name
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return last


def trio_task_groups(top: int = 25) -> dict[str, int]:
    """The live trio tasks grouped by name (trio names a task after its function, e.g.
    ``libp2p.network.swarm.Swarm._conn_handler``; the last two dotted parts kept) and the function it waits in
    (``name > function``), the ``top`` biggest groups: what ``/v1/status`` reports as ``task_groups``, to tell
    which tasks grow in a long run and where they wait (issue #22). Call it on the trio thread."""
    groups: dict[str, int] = {}
    for task in _live_tasks():
        name = ".".join(task.name.split(".")[-2:])
        where = _blocked_in(task)
        key = f"{name} > {where}" if where and not name.endswith(where) else name
        groups[key] = groups.get(key, 0) + 1
    return dict(sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


@dataclass
class ProtocolContext:
    """What a protocol factory gets."""

    peer_id: str
    net: str
    datadir: Path
    clock: Clock
    options: dict[str, str] = field(default_factory=dict)
    seed: int | None = None


def load_factory(spec: str):
    mod, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--protocol {spec!r}: expected module:factory")
    return getattr(importlib.import_module(mod), name)


def make_protocols(specs: list[str], ctx: ProtocolContext) -> list[Any]:
    out: list[Any] = []
    for spec in specs:
        made = load_factory(spec)(ctx)
        out.extend(made if isinstance(made, (list, tuple)) else [made])
    return out


def write_status(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, default=str, sort_keys=True).encode(), mode=0o644, durable=False)


def snapshot(node, protocols: list[Any], clock: Clock) -> dict:
    st = node.status()
    st["time"] = clock.now()
    st["protocols"] = {}
    for i, p in enumerate(protocols):
        fn = getattr(p, "status", None)
        if callable(fn):
            try:
                st["protocols"][f"{i}:{type(p).__name__}"] = fn()
            except Exception as exc:
                st["protocols"][f"{i}:{type(p).__name__}"] = {"error": repr(exc)}
    drv = getattr(node, "driver", None)
    if drv is not None:
        st["driver_errors"] = drv.errors
        st["notifications"] = [{"kind": n.kind, "detail": n.detail} for n in list(drv.notifications)[-20:]]
    return st


def parser(prog: str, *, bootstrap: bool = False) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--datadir", type=Path, default=None,
                    help="data directory (identity.key, config.toml); default "
                    + ("$KEYSWITCH_BOOTSTRAP_DATADIR or ~/.keyswitch-bootstrap" if bootstrap
                       else "$KEYSWITCH_DATADIR or ~/.keyswitch"))
    ap.add_argument("--net", default=None, help="network id (topics are /keyswitch/<net>/...)")
    ap.add_argument("--listen", action="append", default=None, help="multiaddr to listen on (repeatable)")
    ap.add_argument("--announce", action="append", default=None, help="multiaddr to announce (repeatable)")
    ap.add_argument("--bootnodes", action="append", default=None,
                    help="bootnode multiaddr(s) with /p2p/<id>; repeatable or comma-separated")
    ap.add_argument("--bootnodes-file", default=None, help="file with one bootnode multiaddr per line")
    ap.add_argument("--target-peers", type=int, default=None)
    ap.add_argument("--gossip-rate-limit", type=int, default=None)
    ap.add_argument("--pex-interval", type=float, default=None)
    ap.add_argument("--status-file", type=Path, default=None, help="write a JSON status here periodically")
    ap.add_argument("--status-interval", type=float, default=0.25)
    ap.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    ap.add_argument("--seed", type=int, default=None, help="seed for peer selection randomness")
    if not bootstrap:
        ap.add_argument("--protocol", action="append", default=[], help="module:factory (repeatable)")
        ap.add_argument("--opt", action="append", default=[], help="key=value passed to factories")
    return ap


def build_config(args, *, bootstrap: bool = False):
    from node import config as cfgmod
    from node.runtime.node import NodeConfig

    # a bootstrap node never shares a node's datadir (it would share its identity)
    env, default = ("KEYSWITCH_BOOTSTRAP_DATADIR", "~/.keyswitch-bootstrap") if bootstrap else ("KEYSWITCH_DATADIR", "~/.keyswitch")
    datadir = args.datadir or Path(os.environ.get(env, default)).expanduser()
    boots = None
    if args.bootnodes:
        boots = [b.strip() for arg in args.bootnodes for b in arg.split(",") if b.strip()]
    cfg = cfgmod.load(datadir, overrides={
        "network.net": args.net,
        "network.listen": args.listen,
        "network.announce": args.announce,
        "network.bootnodes": boots,
        "network.bootnodes_file": args.bootnodes_file,
        "network.target_peers": args.target_peers,
        "network.gossip_rate_limit": args.gossip_rate_limit,
        "log.level": args.log_level,
    })
    extra: dict[str, Any] = {"seed": args.seed}
    if args.pex_interval is not None:
        extra["pex_interval"] = args.pex_interval
    if bootstrap:
        # gossipsub runs (so peers' pubsub streams to it open cleanly) but it
        # subscribes to no topic: it neither stores nor relays any message
        extra.update(dial_learned=False)
    return cfg, NodeConfig.from_config(cfg, **extra)


async def serve(ncfg, protocol_specs: list[str], options: dict[str, str], *, status_file: Path | None,
                status_interval: float, out=sys.stdout) -> None:
    """Run one node process until SIGINT/SIGTERM."""
    from node.identity import peer_id as peer_id_of
    from node.logs import bind_peer
    from node.runtime.driver import run_host

    clock = SystemClock()
    pid = peer_id_of(ncfg.datadir)
    bind_peer(pid)
    ctx = ProtocolContext(pid, ncfg.net, ncfg.datadir, clock, options, ncfg.seed)
    protocols = make_protocols(protocol_specs, ctx)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(run_host, ncfg, protocols)
        for a in node.listen_addrs:
            print(f"LISTEN {a}", file=out, flush=True)
        print(f"ready {node.peer_id}", file=out, flush=True)  # as `keyswitch run` says it

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                async for _ in sigs:
                    log.info("signal: shutting down")
                    node.stop()
                    return

        async def status_loop() -> None:
            while True:
                write_status(status_file, snapshot(node, protocols, clock))
                await trio.sleep(status_interval)

        nursery.start_soon(on_signals)
        if status_file is not None:
            nursery.start_soon(status_loop)
        await node.stopped.wait()
        if status_file is not None:
            st = snapshot(node, protocols, clock)
            st["stopped"] = True
            write_status(status_file, st)
        nursery.cancel_scope.cancel()
    print("stopped", file=out, flush=True)


def main(argv: list[str] | None = None, *, bootstrap: bool = False) -> None:
    prog = "python -m bootstrap" if bootstrap else "python -m node.runtime"
    args = parser(prog, bootstrap=bootstrap).parse_args(argv)
    from node.config import ConfigError
    from node.logs import configure

    try:
        cfg, ncfg = build_config(args, bootstrap=bootstrap)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    configure(level=cfg["log.level"], fmt=cfg["log.format"], file=cfg.log_file, stream=sys.stderr)
    options = dict(o.split("=", 1) for o in getattr(args, "opt", []) if "=" in o)
    trio.run(functools.partial(serve, ncfg, getattr(args, "protocol", []), options,
                               status_file=args.status_file, status_interval=args.status_interval))
