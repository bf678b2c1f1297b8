"""Real py-libp2p hosts on 127.0.0.1 for the runtime tests: a recording protocol (``Probe``), a host config, and
three hosts in a line (a - b - c). Shared by ``test_runtime.py``, ``test_gossip_record.py``,
``test_yamux_window.py`` and ``test_yamux_overrun.py`` (no test module imports another: ``tests/test_test_modules.py``)."""

from __future__ import annotations

from pathlib import Path

from node.protocols.base import GossipReceived, RequestReceived, Respond, Validation, topic
from node.runtime import NodeConfig, run_host
from tests.polling import eventually

T = topic("rt", "probe", 1)
ECHO = "/keyswitch/test/rt-echo/1"


class Probe:
    """validate: b"ok*" ACCEPT, b"bad*" REJECT, b"old*" IGNORE. Records everything."""

    topics = (T,)
    stream_protocols = (ECHO,)

    def __init__(self) -> None:
        self.got: list[tuple[bytes, str]] = []
        self.verdicts: list[str] = []
        self.events: list = []
        self.outbox: list = []  # commands to return on the next event

    def validate(self, topic_, data, from_peer, now):
        if data.startswith(b"bad"):
            v = Validation.reject("bad")
        elif data.startswith(b"old"):
            v = Validation.ignore("old")
        else:
            v = Validation.accept()
        self.verdicts.append(v.result.value)
        return v

    def handle(self, event, now):
        self.events.append(event)
        if isinstance(event, GossipReceived):
            self.got.append((event.data, event.from_peer))
        if isinstance(event, RequestReceived):
            return [Respond(event.request_id, event.data.upper())]
        out, self.outbox = self.outbox, []
        return out


def cfg(tmp: Path, name: str, **kw) -> NodeConfig:
    kw.setdefault("target_peers", 1)
    kw.setdefault("pex_interval", 3600.0)
    return NodeConfig(datadir=tmp / name, net="rt", heartbeat=0.2, seed=1, **kw)


wait_for = eventually  # the shared polled wait (scaled timeout, names what it waited for)


async def line(nursery, tmp_path, **kw):
    """a - b - c, each with a Probe."""
    probes = [Probe(), Probe(), Probe()]
    nodes = [await nursery.start(run_host, cfg(tmp_path, n, **kw), [p]) for n, p in zip("abc", probes)]
    a, b, c = nodes
    await a.connect(b.listen_addrs[0])
    await c.connect(b.listen_addrs[0])
    await wait_for(lambda: len(b.mesh_peers(T)) == 2 and a.mesh_peers(T) and c.mesh_peers(T), what="mesh")
    return nodes, probes
