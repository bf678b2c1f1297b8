"""One pubsub registration of a peer at a time (issue #22: the trio tasks that grew in the soak).

py-libp2p 0.8.1's ``Pubsub._handle_new_peer`` checks ``peer_id in self.peers``, then awaits a new stream to
the peer, then stores the stream and a new outbound queue under ``peers[peer_id]`` and ``peer_queues[peer_id]``
and starts ``handle_sending_messages`` on that queue. It runs once per ``connected`` notification (once per
*connection*) and again from its retries, so two connections to one peer opened at once (both sides dialling
each other, a peer that dials twice) race: both pass the check, both open a stream, the second overwrites the
first's entries. The first queue is then never closed (``_handle_dead_peer`` closes the one it finds), so its
sending task waits in ``pop`` for ever, with its parent task and its stream; on the peer's side the handler
reading that stream waits for ever too. Seen in ``benchmarks.soak`` (6 daemons, 6 minutes): up to 12 sending
tasks in a daemon with 6 peers, growing, and the readers with them on the other side.

``OnePeerRegistration`` (mixed in before ``Pubsub``) runs a peer's registrations one after the other, so the
second finds the peer registered and returns. The fix belongs in py-libp2p; this holds it on our side.
"""

from __future__ import annotations

import trio


class OnePeerRegistration:
    """Serialises ``Pubsub._handle_new_peer`` per peer (see the module docstring)."""

    async def _handle_new_peer(self, peer_id) -> None:
        locks: dict = self.__dict__.setdefault("_registering", {})
        lock = locks.setdefault(peer_id, trio.Lock())
        try:
            async with lock:
                await super()._handle_new_peer(peer_id)  # type: ignore[misc]
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting and locks.get(peer_id) is lock:
                del locks[peer_id]
