"""A bootstrap node: helps peers find each other, holds no offers.

``python -m bootstrap --listen /ip4/0.0.0.0/tcp/4001 [--bootnodes <other bootstraps>]``
prints its full multiaddr (``LISTEN .../p2p/<id>``) on start. It runs the same
libp2p host as a node (Noise, Yamux, identify, ping) and the
``/keyswitch/pex/1.0.0`` peer exchange; it speaks gossipsub but joins no
topic (so it never stores or relays a message) and runs no protocols: it
keeps a table of peers seen recently (peers that asked it, peers connected)
and hands a random sample of them to whoever asks. Bootstrap nodes given each
other as ``--bootnodes`` stay connected and exchange their tables, so a node
that knows any one of them finds the peers that used the others. It dials
only its own bootnodes, never the peers it learns of.

Its identity (``identity.key``) lives in ``--datadir`` (default
``~/.keyswitch-bootstrap``), so its multiaddr is stable across restarts.
"""
