import io
import json
import logging

import trio

from node import logs


async def test_json_lines_carry_utc_time_peer_and_route_stdlib():
    import libp2p  # noqa: F401  (its import-time logging setup detaches its loggers; configure must undo that)
    from libp2p.utils.logging import setup_logging

    setup_logging()
    buf = io.StringIO()
    logs.configure(level="info", fmt="json", stream=buf)

    async def node(pid: str):
        logs.bind_peer(pid)
        logs.get("test").info("hello", n=1, privkey="deadbeef")
        logging.getLogger("libp2p.pubsub").warning("from libp2p")

    async with trio.open_nursery() as n:
        n.start_soon(node, "12D3KooA")
        n.start_soon(node, "12D3KooB")
    lines = [json.loads(l) for l in buf.getvalue().splitlines()]
    assert len(lines) == 4
    assert {l["peer"] for l in lines} == {"12D3KooA", "12D3KooB"}
    for l in lines:
        assert l["timestamp"].endswith("Z")
    hello = [l for l in lines if l["event"] == "hello"]
    assert all(l["privkey"] == "[redacted]" for l in hello)
    assert "deadbeef" not in buf.getvalue()
    assert any(l["logger"] == "libp2p.pubsub" and l["event"] == "from libp2p" for l in lines)
