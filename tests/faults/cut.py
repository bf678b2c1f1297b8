"""Cutting the links between daemons for a while, on 127.0.0.1, without root (issue #22's "cut the connection").

Each daemon of a fault trial announces the address of a ``Relay`` (``--announce /ip4/127.0.0.1/tcp/<relay port>``)
instead of its own swarm port, so every connection another daemon opens to it passes the relay: a plain TCP
forwarder (the bytes are noise-encrypted libp2p; the relay only copies them). ``Relay.cut()`` closes every
connection it carries and refuses new ones (accepted, then closed at once) until ``Relay.mend()``. With every
daemon of a contract behind its own relay, cutting all of them cuts every link between them, while each daemon
keeps its own connection to the bootstrap node (dialled directly).

The daemon's real swarm port is read from ``/proc`` (``swarm_port``): its announced address is the relay's.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


class Relay:
    """A TCP forwarder on 127.0.0.1 (``port``) to a target port set once the daemon behind it listens."""

    def __init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._srv.getsockname()[1]
        self.target: int | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.refused = 0  # connections refused while cut
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            socks, self._open = list(self._open), set()
        for s in socks:
            _close(s)

    def mend(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._srv)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            with self._lock:
                refuse = self._cut or self.target is None
                if refuse:
                    self.refused += 1
            if refuse:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._cut:
                    _close(client)
                    _close(upstream)
                    continue
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            _close(src)
            _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def swarm_port(pid: int, api_url: str) -> int:
    """The TCP port process ``pid`` listens on that is not its API's: its libp2p swarm (Linux ``/proc``)."""
    api_port = int(api_url.rstrip("/").rsplit(":", 1)[1].split("/")[0])
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    ports.discard(api_port)
    if len(ports) != 1:
        raise RuntimeError(f"process {pid}: expected one swarm port besides the API's {api_port}, found {ports}")
    return ports.pop()
