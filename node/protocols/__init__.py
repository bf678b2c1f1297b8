"""Sans-IO protocol logic: state machines ``handle(event, now) -> commands``.

Nothing in this package imports trio or libp2p, opens a socket, a file or a
database, or reads the clock: the runtime (``node.runtime``) and the simulator
feed events in and carry commands out, and a protocol keeps what must survive a
restart in the store object it is given (``node.stores``).
"""
