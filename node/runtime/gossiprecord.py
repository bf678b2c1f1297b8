"""No signed peer record built for gossipsub's RPCs that ``KsPubsub.write_msg`` sends without it anyway.

py-libp2p 0.8.1's ``GossipSub`` calls ``env_to_send_in_RPC(host)`` for every message it publishes or forwards,
every control message (IHAVE, IWANT, IDONTWANT, GRAFT, PRUNE) and every IWANT answer: it rebuilds the host's
addresses (``BasicHost.get_addrs``, parsing each multiaddr) to compare them with its cached record, and attaches
the record. ``KsPubsub.write_msg`` then clears the field from every RPC (the hello of each stream, built by
``Pubsub.get_hello_packet``, carries the record; go- and js-libp2p send it in no gossip RPC), so that work was
thrown away: about 4 % of a provider's CPU in ``benchmarks.request``. ``install()`` makes ``GossipSub``'s own
reference answer "no record": py-libp2p still assigns the field, so it is present and empty, and
``KsPubsub.write_msg`` clears it (present at all, not only non-empty) or a receiver drops the RPC as an invalid
record; gossipsub's queued RPCs lose it in the queue's split anyway; ``Pubsub``'s (the hello, a subscription change) is
untouched. Installed once per process by ``node.runtime.gossip``.
"""

from __future__ import annotations

from libp2p.pubsub import gossipsub as _gossipsub


def _none_for_gossip(host) -> tuple[bytes, bool]:
    """What ``env_to_send_in_RPC`` returns for gossipsub's RPCs: no envelope (``senderRecord`` stays unset)."""
    return b"", False


def install() -> None:
    _gossipsub.env_to_send_in_RPC = _none_for_gossip  # type: ignore[attr-defined]
