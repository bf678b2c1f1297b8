"""A bootstrap node: helps peers find each other, holds no offers.

``python -m bootstrap --listen /ip4/0.0.0.0/tcp/4001 [--bootnodes <other bootstraps>]``
prints its full multiaddr (``LISTEN .../p2p/<id>``) on start. It runs the same
libp2p host as a node (Noise, Yamux, identify, ping) and the
``/keyswitch/pex/1.0.0`` peer exchange; it speaks gossipsub but joins no
topic (so it never stores or relays a message) and runs no protocols: it
keeps a table of peers seen recently (peers that asked it, peers connected)
and hands a random sample of them to whoever asks. Bootstrap nodes given each
other as ``--bootnodes`` stay connected and exchange their tables, so a node
that knows any one of them finds the peers that used the others. It dials
only its own bootnodes, never the peers it learns of. It lists no sheets protocol in identify, so
nodes never ask it for the sheets pull (``node.runtime.node``: protocol selection).

Its identity (``identity.key``) lives in ``--datadir`` (default
``~/.keyswitch-bootstrap``), so its multiaddr is stable across restarts.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None, *, prog: str = "python -m bootstrap") -> None:
    """Run a bootstrap node (``python -m bootstrap`` and ``keyswitch bootstrap``, same options): an operator's
    mistake (a bad setting, a swarm port in use) exits 2 with one line, never a traceback. Prints
    ``LISTEN <multiaddr>`` and ``ready <peer id>`` as ``keyswitch run`` does (what tests/functional/framework.py
    and ``keyswitch dev`` wait for), and ``stopped`` on the way out."""
    import functools

    import trio

    from node.config import ConfigError
    from node.logs import configure
    from node.runtime import runner
    from node.runtime.node import tcp_listen_ports

    args = runner.parser(prog, bootstrap=True).parse_args(argv)
    try:
        cfg, ncfg = runner.build_config(args, bootstrap=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    from node.cli.daemonlock import Refused, port_in_use

    try:
        for host, port in tcp_listen_ports(ncfg.listen):
            if port_in_use(host, port):
                raise Refused(f"swarm port {host}:{port} is already in use (network.listen / --listen); "
                              f"is another node running? choose another port or /tcp/0")
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    configure(level=cfg["log.level"], fmt=cfg["log.format"], file=cfg.log_file, stream=sys.stderr)
    failed = ""
    try:
        trio.run(functools.partial(runner.serve, ncfg, [], {}, status_file=args.status_file,
                                   status_interval=args.status_interval))
    except* OSError as eg:  # a port taken between the check and the bind
        failed = "; ".join(str(e) for e in eg.exceptions)
    if failed:
        print(f"error: {failed}", file=sys.stderr, flush=True)
        raise SystemExit(2)
