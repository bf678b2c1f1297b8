from node.metrics import NodeMetrics


def test_registries_are_per_node_and_render_prometheus_text():
    a, b = NodeMetrics(), NodeMetrics()
    a.peers.set(3)
    a.gossip_in("/keyswitch/dev/offers/1", "reject", "bad signature")
    b.peers.set(7)
    ta, tb = a.render().decode(), b.render().decode()
    assert "keyswitch_peers 3.0" in ta and "keyswitch_peers 7.0" in tb
    assert 'reason="bad signature"' in ta and 'reason="bad signature"' not in tb
