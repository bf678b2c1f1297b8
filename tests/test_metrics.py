from node.metrics import NodeMetrics


def test_registries_are_per_node_and_render_prometheus_text():
    a, b = NodeMetrics(), NodeMetrics()
    a.peers.set(3)
    a.gossip_in("/keyswitch/dev/offers/1", "reject", "bad signature")
    b.peers.set(7)
    ta, tb = a.render().decode(), b.render().decode()
    assert "keyswitch_peers 3.0" in ta and "keyswitch_peers 7.0" in tb
    assert 'reason="bad signature"' in ta and 'reason="bad signature"' not in tb


def test_reputation_bands_are_a_snapshot():
    m = NodeMetrics()
    m.set_reputation([-50.0, -1.0, 0.0, 5.0, 49.9, 100.0], cheaters=2)
    t = m.render().decode()
    for band, n in [("cheater", 2), ("[-100,-20)", 1), ("[-20,0)", 1), ("[0,10)", 2), ("[10,50)", 1),
                    ("[50,100]", 1)]:
        assert f'keyswitch_reputation_devices{{band="{band}"}} {float(n)}' in t, (band, t)
    m.set_reputation([])  # a snapshot, not a running total
    assert 'keyswitch_reputation_devices{band="[0,10)"} 0.0' in m.render().decode()
