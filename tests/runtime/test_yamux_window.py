"""Yamux receive-window credit (``node.runtime.yamuxwin``): a WINDOW_UPDATE per half window read, not per read.

Two real nodes on 127.0.0.1 (``run_host``); every Yamux frame either writes is read off ``Yamux._write_frame``.
"""

from __future__ import annotations

import struct

import pytest
import trio
from libp2p.stream_muxer.yamux import yamux as ym

from node.runtime import run_host, yamuxwin
from tests.runtime.hostkit import ECHO, Probe, cfg

pytestmark = pytest.mark.network


@pytest.fixture
def frames(monkeypatch):
    """Every Yamux frame written by any node of this process: (type, flags, stream id, length field)."""
    seen: list[tuple[int, int, int, int]] = []
    write = ym.Yamux._write_frame

    async def counting(self, frame: bytes) -> None:
        _, typ, flags, sid, length = struct.unpack(ym.YAMUX_HEADER_FORMAT, frame[:ym.HEADER_SIZE])
        seen.append((typ, flags, sid, length))
        await write(self, frame)

    monkeypatch.setattr(ym.Yamux, "_write_frame", counting)
    return seen


def credits(seen) -> list[int]:
    """The increments of the plain WINDOW_UPDATE frames (no SYN/ACK/FIN/RST: those open or close a stream)."""
    return [n for typ, flags, _, n in seen if typ == ym.TYPE_WINDOW_UPDATE and flags == 0 and n > 0]


async def pair(n, tmp_path):
    a = await n.start(run_host, cfg(tmp_path, "a"), [Probe()])
    b = await n.start(run_host, cfg(tmp_path, "b"), [Probe()])
    await a.connect(b.listen_addrs[0])
    return a, b


async def test_small_requests_and_answers_cost_no_window_update(tmp_path, frames):
    """40 requests of 300 bytes and their answers over one reused stream: no WINDOW_UPDATE at all (py-libp2p's
    own rule sent one for nearly every read, several per frame: a varint prefix is read a byte at a time)."""
    assert ym.YamuxStream._auto_tune_and_send_window_update is yamuxwin._credit_by_half_window
    async with trio.open_nursery() as n:
        a, b = await pair(n, tmp_path)
        assert await a.request(b.peer_id, ECHO, b"warm") == b"WARM"
        frames.clear()
        for i in range(40):
            assert await a.request(b.peer_id, ECHO, b"x%03d" % i * 75) == b"X%03d" % i * 75
        data = [f for f in frames if f[0] == ym.TYPE_DATA and f[3] > 0]
        assert len(data) >= 80  # the requests and answers themselves went through this counter
        assert credits(frames) == []
        a.stop()
        b.stop()


async def test_the_old_rule_sent_window_updates_for_small_frames(tmp_path, frames):
    """The comparison the test above rests on: with py-libp2p's rule the same exchange credits per read."""
    yamuxwin.uninstall()
    try:
        async with trio.open_nursery() as n:
            a, b = await pair(n, tmp_path)
            assert await a.request(b.peer_id, ECHO, b"warm") == b"WARM"
            frames.clear()
            for i in range(40):
                await a.request(b.peer_id, ECHO, b"x%03d" % i * 75)
            assert len(credits(frames)) >= 80
            a.stop()
            b.stop()
    finally:
        yamuxwin.install()


async def test_frames_larger_than_the_window_still_flow_and_are_credited_by_half_windows(tmp_path, frames):
    """Three requests of 900 kB (the window is 256 kB) and their 900 kB answers over one stream arrive whole:
    the sender is credited as the receiver reads, each credit at least half a window."""
    async with trio.open_nursery() as n:
        a, b = await pair(n, tmp_path)
        frames.clear()
        for i in range(3):
            big = bytes([97 + i]) * 900_000
            with trio.fail_after(60):
                assert await a.request(b.peer_id, ECHO, big, timeout=60) == big.upper()
        got = credits(frames)
        # each side sent 2.7 MB through a 256 kB initial window: it was credited at least the difference
        assert sum(got) >= 2 * (3 * 900_000 - ym.DEFAULT_WINDOW_SIZE)
        assert min(got) >= ym.DEFAULT_WINDOW_SIZE // 2  # (the window grows as py-libp2p auto-tunes it)
        a.stop()
        b.stop()
