"""A gossip peer for the cost comparison of ``benchmarks._netcost``: our runtime or stock py-libp2p.

``python -m benchmarks._netpeer --impl ours|stock [--listen MA] [--dial MA]... --topic T --datadir D``

Speaks the same JSON lines as the js-libp2p node of the interop test (tests/interop/jsnode/node.mjs), so the
harness drives the three implementations alike: on stdout ``{"event": "listening", "peer", "addrs"}`` first, then
``{"event": "message", "topic", "from", "size"}`` per delivered message and ``{"event": "published"}``; on stdin
``{"cmd": "publish", "topic", "hex"}``, ``{"cmd": "status"}`` (-> ``{"event": "status", "peers", "mesh"}``) and
``{"cmd": "stop"}`` (or EOF).

* ``ours``: ``node.runtime.Node`` as a daemon runs it (Noise + Yamux host, ``KsPubsub`` over ``KsGossipSub``
  with our settings), dialling exactly the ``--dial`` peers (no peer exchange dials), no validator;
* ``stock``: py-libp2p's own ``new_host`` (its default security and muxer choices), ``Pubsub`` and
  ``GossipSub`` with the same mesh parameters (degree 6, 4-12, heartbeat 1 s) and the library's defaults for
  everything else: what an application written against py-libp2p gets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import multiaddr
import trio


def emit(**obj) -> None:
    sys.stdout.write(json.dumps({"t": time.time(), **obj}) + "\n")
    sys.stdout.flush()


async def commands(publish, status, stop) -> None:
    """Read JSON commands from stdin until ``stop`` or EOF."""
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buf = b""
    while True:
        chunk = await stdin.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                c = json.loads(line)
            except ValueError:
                emit(event="error", what="command", reason="not a JSON line")
                continue
            if c.get("cmd") == "publish":
                await publish(c["topic"], bytes.fromhex(c["hex"]))
                emit(event="published", topic=c["topic"], size=len(c["hex"]) // 2)
            elif c.get("cmd") == "status":
                emit(event="status", **status())
            elif c.get("cmd") == "stop":
                stop()
                return
    stop()


async def run_ours(args) -> None:
    from node.runtime import Node, NodeConfig

    cfg = NodeConfig(datadir=Path(args.datadir), net="bench", listen=[args.listen], bootnodes=list(args.dial),
                     target_peers=max(8, 2 * len(args.dial)), pex_interval=1e9, dial_learned=False,
                     gossip_rate_limit=1e6, seed=1)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(Node(cfg).run)
        undo(node, args.undo)
        for t in args.topic:
            await node.pubsub.subscribe(t)
        emit(event="listening", peer=node.peer_id, addrs=node.listen_addrs)

        async def deliver() -> None:
            async for d in node.pubsub.deliveries:
                emit(event="message", topic=d.topic, **{"from": d.origin}, size=len(d.data), hex=d.data.hex())

        nursery.start_soon(deliver)

        def status() -> dict:
            return {"peers": sorted(node.connected_peers()), "mesh": {t: node.mesh_peers(t) for t in args.topic}}

        await commands(node.publish, status, nursery.cancel_scope.cancel)


def undo(node, changes: list[str]) -> None:
    """Take back changes to our use of py-libp2p on this node, to measure each alone: issue #23's
    ``idontwant`` (py-libp2p's IDONTWANT for every message, ours included) and ``record`` (our signed peer
    record in every RPC, as py-libp2p builds and sends it), and ``yamux`` (py-libp2p's WINDOW_UPDATE after every
    read and its locked read path: ``node.runtime.yamuxwin``)."""
    from libp2p.peer.peerstore import env_to_send_in_RPC
    from libp2p.pubsub import gossipsub
    from libp2p.pubsub.pubsub import Pubsub

    from node.runtime import yamuxwin

    for change in changes:
        if change == "idontwant":
            node.router.skip_idontwant = lambda msg_id: None
        elif change == "record":
            node.pubsub.write_msg = lambda stream, rpc: Pubsub.write_msg(node.pubsub, stream, rpc)
            gossipsub.env_to_send_in_RPC = env_to_send_in_RPC  # (node.runtime.gossiprecord's, taken back)
        elif change == "yamux":
            yamuxwin.uninstall()
        else:
            raise SystemExit(f"--undo: unknown change {change!r} (idontwant, record, yamux)")


async def run_stock(args) -> None:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service

    host = new_host(key_pair=create_new_key_pair(), listen_addrs=[multiaddr.Multiaddr(args.listen)])
    router = GossipSub(protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12,
                       heartbeat_interval=1, heartbeat_initial_delay=0.1)  # type: ignore[arg-type]
    pubsub = Pubsub(host, router)
    async with host.run(listen_addrs=[multiaddr.Multiaddr(args.listen)]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            async with trio.open_nursery() as nursery:
                queues = {t: await pubsub.subscribe(t) for t in args.topic}
                me = host.get_id().to_base58()
                emit(event="listening", peer=me, addrs=[f"{a}" for a in host.get_addrs()])

                async def deliver(topic, q) -> None:
                    while True:
                        msg = await q.get()
                        emit(event="message", topic=topic, **{"from": ID(msg.from_id).to_base58()}, size=len(msg.data),
                             hex=bytes(msg.data).hex())

                for t, q in queues.items():
                    nursery.start_soon(deliver, t, q)

                async def dial() -> None:  # the given peers, and again while not connected (as the js node does)
                    while True:
                        for a in args.dial:
                            info = info_from_p2p_addr(multiaddr.Multiaddr(a))
                            if not host.get_network().connections.get(info.peer_id):
                                try:
                                    await host.connect(info)
                                except Exception as exc:  # noqa: BLE001 - reported, retried
                                    emit(event="error", what=f"dial {a}", reason=str(exc)[:200])
                        await trio.sleep(2)

                nursery.start_soon(dial)

                def status() -> dict:
                    return {"peers": sorted(p.to_base58() for p in host.get_network().connections),
                            "mesh": {t: sorted(p.to_base58() for p in router.mesh.get(t, ())) for t in args.topic}}

                await commands(pubsub.publish, status, nursery.cancel_scope.cancel)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks._netpeer", description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=("ours", "stock"), required=True)
    ap.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    ap.add_argument("--dial", action="append", default=[])
    ap.add_argument("--topic", action="append", default=[])
    ap.add_argument("--datadir", required=True)
    ap.add_argument("--profile", default="", help="cProfile the process into this file (diagnosis)")
    ap.add_argument("--undo", action="append", default=[], help="ours without a change of issue #23: idontwant, "
                    "record (to measure each; repeatable)")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # py-libp2p's error lines are not the benchmark's output
    fn = run_ours if args.impl == "ours" else run_stock
    if args.profile:  # diagnosis: cProfile the whole process into this file
        import cProfile

        prof = cProfile.Profile(time.process_time)  # CPU time: other processes running meanwhile do not count
        try:
            prof.runcall(trio.run, fn, args)
        finally:
            prof.dump_stats(args.profile)
    else:
        trio.run(fn, args)


if __name__ == "__main__":
    main()
