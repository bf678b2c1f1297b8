"""Sans-IO protocol logic: state machines ``handle(event, now) -> commands``.

Nothing in this package imports trio or libp2p, opens a socket or a file, or
reads the clock: the runtime (``node.runtime``) and the simulator feed events
in and carry commands out.
"""
