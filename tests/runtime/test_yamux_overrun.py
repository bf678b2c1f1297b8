"""A hostile Yamux peer that sends beyond the receive window we granted it (``node.runtime.yamuxwin``).

Two real nodes on 127.0.0.1 (``run_host``): the victim ``a`` asks the attacker ``b`` once over ECHO, and keeps the
stream idle in its pool for the next request (no one reads it meanwhile, as any idle pooled stream). ``b`` then
writes raw Yamux DATA frames on that stream with its own muxer's ``_write_frame``, through the real Noise
connection, without waiting for credit: four times the 256 kB window, in go-yamux's 64 kB frames. ``a``'s
receive buffer for the stream is swapped for one that records the most it held between two frames.
"""

from __future__ import annotations

import logging
import struct

import pytest
import trio
from libp2p.stream_muxer.yamux import yamux as ym

from node.dev.localnet import timeout_factor
from node.runtime import run_host, yamuxwin
from tests.runtime.hostkit import ECHO, Probe, cfg, wait_for

pytestmark = pytest.mark.network

WINDOW = ym.DEFAULT_WINDOW_SIZE
FRAME = ym.MAX_MESSAGE_SIZE  # 64 kB: go-yamux's largest frame
SENT = 4 * WINDOW


class Held(bytearray):
    """A stream's receive buffer that records the most it held when a frame came in (``extend``)."""

    most = 0

    def extend(self, data) -> None:
        self.most = max(self.most, len(self))
        super().extend(data)


async def overrun(n, tmp_path, frames_out):
    """Start a and b, make a's idle ECHO stream to b, then b floods it. Returns (a, b, a's Yamux connection,
    the YamuxStream on a's side, the recording buffer)."""
    a = await n.start(run_host, cfg(tmp_path, "a"), [Probe()])
    b = await n.start(run_host, cfg(tmp_path, "b"), [Probe()])
    await a.connect(b.listen_addrs[0])
    assert await a.request(b.peer_id, ECHO, b"warm") == b"WARM"
    (netstream, _), = a.streams._idle[(b.peer_id, ECHO)]  # idle in a's pool: nothing reads it
    mine = netstream.muxed_stream
    muxed_a, sid = mine.conn, mine.stream_id
    buf = Held(muxed_a.stream_buffers[sid])
    muxed_a.stream_buffers[sid] = buf
    muxed_b = next(c.muxed_conn for c in b.host.get_network().get_connections(a.host.get_id()))
    assert sid in muxed_b.streams  # the same stream, on b's side
    header = struct.pack(ym.YAMUX_HEADER_FORMAT, 0, ym.TYPE_DATA, 0, sid, FRAME)
    frames_out.clear()
    with trio.fail_after(10 * timeout_factor()):  # (once a closed the connection, b's later writes may fail)
        for i in range(SENT // FRAME):
            try:
                await muxed_b._write_frame(header + bytes([i]) * FRAME)
            except Exception:
                break
    return a, b, muxed_a, mine, buf


@pytest.fixture
def frames_out(monkeypatch):
    """Every Yamux frame header written by any node of this process: (muxer, type, flags, stream id, length)."""
    seen: list = []
    write = ym.Yamux._write_frame

    async def recording(self, frame: bytes) -> None:
        seen.append((self, *struct.unpack(ym.YAMUX_HEADER_FORMAT, frame[:ym.HEADER_SIZE])[1:]))
        await write(self, frame)

    monkeypatch.setattr(ym.Yamux, "_write_frame", recording)
    return seen


async def test_a_peer_sending_beyond_the_window_is_cut_off_and_nothing_beyond_it_is_buffered(
        tmp_path, frames_out, caplog):
    """go-yamux's rule: data beyond the granted window is a protocol error; the session is closed with a
    GO_AWAY (protocol error). The stream never held more than the window, and one warning names the peer."""
    caplog.set_level(logging.WARNING)
    async with trio.open_nursery() as n:
        a, b, muxed_a, mine, buf = await overrun(n, tmp_path, frames_out)
        await wait_for(lambda: muxed_a.is_closed, what="a closes its connection to the peer that overran")
        assert buf.most <= WINDOW and len(buf) == 0, buf.most
        assert mine.reset_received  # a reader of the stream would see a reset, not the peer's data
        assert (muxed_a, ym.TYPE_GO_AWAY, 0, 0, ym.GO_AWAY_PROTOCOL_ERROR) in frames_out
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING and "receive window" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert lines[0].name == "keyswitch.runtime.yamux" and b.peer_id in lines[0].getMessage()
        a.stop()
        b.stop()


async def test_without_the_cap_py_libp2p_buffers_everything_the_peer_sends(tmp_path, frames_out, caplog):
    """The gap the test above closes, measured with py-libp2p 0.8.1's own handling (the cap taken back): all
    four windows are buffered for a stream no one reads, the stream is not reset and the connection stays up;
    py-libp2p only logs the excess."""
    caplog.set_level(logging.WARNING)
    yamuxwin.uninstall_cap()
    try:
        async with trio.open_nursery() as n:
            a, b, muxed_a, mine, buf = await overrun(n, tmp_path, frames_out)
            await wait_for(lambda: len(buf) == SENT, what="a buffers all the peer sent")
            assert buf.most == SENT - FRAME  # (held before the last frame came in)
            assert not mine.reset_received and not muxed_a.is_closed and mine.stream_id in muxed_a.streams
            assert not [f for f in frames_out if f[0] is muxed_a and f[1] == ym.TYPE_GO_AWAY]
            assert [r for r in caplog.records if "peer exceeded receive window" in r.getMessage()]
            a.stop()
            b.stop()
    finally:
        yamuxwin.install()


async def test_a_new_stream_whose_first_frame_is_beyond_the_window_cuts_the_peer_off(tmp_path, frames_out, caplog):
    """The same rule for data that opens a stream (SYN with DATA, one frame of a window and 64 kB): found from
    the frame's header, as go-yamux does, before its body is read (py-libp2p's SYN path would count it after)."""
    caplog.set_level(logging.WARNING)
    async with trio.open_nursery() as n:
        a = await n.start(run_host, cfg(tmp_path, "a"), [Probe()])
        b = await n.start(run_host, cfg(tmp_path, "b"), [Probe()])
        await a.connect(b.listen_addrs[0])
        muxed_a = next(c.muxed_conn for c in a.host.get_network().get_connections(b.host.get_id()))
        muxed_b = next(c.muxed_conn for c in b.host.get_network().get_connections(a.host.get_id()))
        sid = muxed_b.next_stream_id
        muxed_b.next_stream_id += 2
        size = WINDOW + FRAME
        try:  # (a cuts b off after the header, so b's write of the body may fail)
            await muxed_b._write_frame(struct.pack(ym.YAMUX_HEADER_FORMAT, 0, ym.TYPE_DATA, ym.FLAG_SYN, sid, size)
                                       + b"x" * size)
        except Exception:
            pass
        await wait_for(lambda: muxed_a.is_closed, what="a closes its connection to the peer that overran")
        assert (muxed_a, ym.TYPE_GO_AWAY, 0, 0, ym.GO_AWAY_PROTOCOL_ERROR) in frames_out
        lines = [r.getMessage() for r in caplog.records if r.name == "keyswitch.runtime.yamux"]
        assert lines == [f"Yamux peer {b.peer_id} announced a {size}-byte frame, beyond every receive window it "
                         f"was granted ({WINDOW} bytes): protocol error, closing the connection"]
        a.stop()
        b.stop()


async def test_a_frame_announced_beyond_the_window_cuts_the_peer_off_before_its_body_is_read(
        tmp_path, frames_out, caplog):
    """go-yamux checks a DATA frame's length against the window from its header; py-libp2p 0.8.1 read the body
    first (up to its 16 MB frame cap, waiting for it as long as its data-read timeout), so a peer could make a
    node hold up to 16 MB per connection by announcing one large frame and sending it slowly. The peer here
    announces a 16 MB frame on our idle pooled stream (256 kB window) and sends 64 kB of it: the connection is
    closed at once, the body never read, one line names the peer."""
    caplog.set_level(logging.WARNING)
    async with trio.open_nursery() as n:
        a = await n.start(run_host, cfg(tmp_path, "a"), [Probe()])
        b = await n.start(run_host, cfg(tmp_path, "b"), [Probe()])
        await a.connect(b.listen_addrs[0])
        assert await a.request(b.peer_id, ECHO, b"warm") == b"WARM"
        (netstream, _), = a.streams._idle[(b.peer_id, ECHO)]
        mine = netstream.muxed_stream
        muxed_a, sid = mine.conn, mine.stream_id
        buf = Held(muxed_a.stream_buffers[sid])
        muxed_a.stream_buffers[sid] = buf
        muxed_b = next(c.muxed_conn for c in b.host.get_network().get_connections(a.host.get_id()))
        announced = ym.MAX_WINDOW_SIZE  # py-libp2p's own cap: accepted by it
        try:
            await muxed_b._write_frame(struct.pack(ym.YAMUX_HEADER_FORMAT, 0, ym.TYPE_DATA, 0, sid, announced)
                                       + b"y" * FRAME)  # ... and the rest never comes
        except Exception:
            pass  # (a cut b off already)
        await wait_for(lambda: muxed_a.is_closed, timeout=5,
                       what="a closes its connection to the peer that announced a frame beyond the window")
        assert buf.most == 0 and len(buf) == 0
        assert (muxed_a, ym.TYPE_GO_AWAY, 0, 0, ym.GO_AWAY_PROTOCOL_ERROR) in frames_out
        lines = [r.getMessage() for r in caplog.records if r.name == "keyswitch.runtime.yamux"]
        assert lines == [f"Yamux peer {b.peer_id} announced a {announced}-byte frame, beyond every receive "
                         f"window it was granted ({WINDOW} bytes): protocol error, closing the connection"], lines
        a.stop()
        b.stop()
