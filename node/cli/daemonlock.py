"""The running daemon's hold on its data directory: ``<datadir>/.lock`` (an exclusive ``flock`` for the
process's lifetime) and ``<datadir>/keyswitch.pid`` (its process id, for ``keyswitch stop``); and the
checks ``keyswitch run`` / ``keyswitch bootstrap`` make before starting, so an operator's mistake (a port
in use, a second daemon, a bootnode the node cannot dial) is refused with one line instead of a traceback."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

LOCK_FILE = ".lock"
PID_FILE = "keyswitch.pid"

_held: list = []  # the open lock file(s): the lock lasts as long as this process


class Refused(Exception):
    """An operator mistake found before start; ``str()`` is the one line to print."""


def lock_message(datadir: Path) -> str:
    return (f"Cannot obtain a lock on data directory {datadir}. Keyswitch is probably already running "
            f"(stop it with `keyswitch --datadir {datadir} stop`).")


def try_lock(datadir: Path):
    """The open, exclusively locked ``.lock`` file, or None when another process holds it."""
    f = open(datadir / LOCK_FILE, "a+b")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        f.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return f


def acquire(datadir: Path) -> None:
    """Lock the data directory for this process and record its pid; Refused if a daemon already holds it."""
    f = try_lock(datadir)
    if f is None:
        raise Refused(lock_message(datadir))
    _held.append(f)
    (datadir / PID_FILE).write_text(f"{os.getpid()}\n")


def release(datadir: Path) -> None:
    try:
        if (datadir / PID_FILE).read_text().strip() == str(os.getpid()):
            (datadir / PID_FILE).unlink()
    except OSError:
        pass
    while _held:
        _held.pop().close()


def running_pid(datadir: Path) -> int | None:
    """The pid of the daemon holding ``datadir``'s lock, or None if no daemon holds it (a stale pid file is
    not trusted: the pid may since belong to an unrelated process)."""
    f = try_lock(datadir) if (datadir / LOCK_FILE).exists() else None
    if f is not None or not (datadir / LOCK_FILE).exists():
        if f is not None:
            f.close()
        return None
    try:
        pid = int((datadir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not 0 < pid < 2**22:
        return None
    try:  # Linux: the pid must still be a `run` (a pid file outliving its daemon may name another program)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid
    return pid if b"run" in argv else None


def port_in_use(host: str, port: int) -> bool:
    """Whether a TCP listener already holds host:port. Binds with SO_REUSEADDR (a TIME_WAIT leftover is no
    obstacle) and without SO_REUSEPORT, so a listener that set SO_REUSEPORT (py-libp2p's TCP transport does,
    for hole punching: two nodes would silently share the port) still makes the bind fail."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise Refused(f"cannot bind {host}:{port}: {exc.strerror}") from None
    return False


def check_ports(cfg) -> None:
    """Refused, naming the port and its setting, when a port the node will listen on is taken."""
    from node.runtime.node import tcp_listen_ports

    for host, port in tcp_listen_ports(cfg["network.listen"]):
        if port_in_use(host, port):
            raise Refused(f"swarm port {host}:{port} is already in use (network.listen / --listen); "
                          f"is another node running? choose another port or /tcp/0")
    for key, flag in (("api.port", "--api-port"), ("api.metrics_port", "--metrics-port")):
        port = cfg.get(key)
        if port and port_in_use("127.0.0.1", int(port)):
            raise Refused(f"port {port} on 127.0.0.1 is already in use ({key} / {flag}); choose another "
                          f"(0 = any free port)")

