"""Gossip health on real daemons (issue #23): a dev ledger, a bootstrap node and two ``keyswitch run`` daemons.

* The bootstrap node speaks neither the sheets pull nor any topic: the daemons do not ask it (identify says
  so), and neither they nor it log a "Failed to open stream" / "protocol not supported" line.
* Peer scores, their components and the publish/graylist drops are in ``GET /v1/peers``, ``keyswitch peers``
  and ``/metrics``; the router's heartbeats count at the configured 1 s period.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.functional.framework import FACTOR, until

pytestmark = pytest.mark.network

NOISE = re.compile(r"Failed to open stream|protocol not supported|protocols not supported")


def test_scores_are_exposed_and_nobody_is_asked_for_a_protocol_it_does_not_speak(network):
    network.net = "gsptest"
    tmp_path = network.tmpdir
    lurl, boot = network.ledger_and_boot()
    a, b = network.start_daemons(["A", "B"], bootnodes=[boot], env={"KEYSWITCH_LEDGER_URL": lurl})
    dirs = [a.datadir, b.datadir]
    boot_id = boot.rsplit("/", 1)[-1]
    until(lambda: any(r["peer"] == b.peer and r["in_offer_mesh"] for r in a.get("/v1/peers")["peers"]), 60,
          "A and B are connected and in each other's offers mesh")
    time.sleep(16)  # more than one peer-exchange round (10-15 s) and several heartbeats

    rows = {r["peer"]: r for r in a.get("/v1/peers")["peers"]}
    assert boot_id in rows and b.peer in rows, rows.keys()
    rb = rows[b.peer]
    assert rb["score"] == 0.0 and rb["below"] == [] and rb["publish_dropped"] == 0 == rb["graylist_dropped"]
    assert set(rb["score_components"]) >= {"p4_invalid", "p5_behaviour", "p6_app", "p7_ip_colocation"}

    cookie = (dirs[0] / ".cookie").read_text().strip()
    text = httpx.get(a.url + "/metrics", headers={"Authorization": "Bearer " + cookie}, timeout=30).text
    assert f'keyswitch_gossip_peer_score{{peer="{b.peer}"}} 0.0' in text
    assert f'keyswitch_gossip_peer_score_component{{component="p4_invalid",peer="{b.peer}"}}' in text
    assert 'keyswitch_gossip_dropped{reason="publish_threshold"} 0.0' in text
    beats = float(re.search(r'keyswitch_gossip_router_events\{event="heartbeats"\} (\S+)', text).group(1))
    print(f"[gossip] heartbeats so far: {beats:.0f}")
    assert beats >= 16, beats  # 1 s period: at least one a second of the wait above

    table = subprocess.run([sys.executable, "-m", "node", "--datadir", str(dirs[0]), "peers"],
                           capture_output=True, text=True, timeout=60 * FACTOR, env={"COLUMNS": "250",
                                                                                      **_env()})
    assert table.returncode == 0, table.stderr
    for col in ("score", "dropped"):  # the score with its non-zero components; publish/graylist drops
        assert col in table.stdout, (col, table.stdout)
    assert "0/0" in table.stdout, table.stdout  # nothing dropped (components: --json, checked above)

    # the bootstrap node was never asked for the sheets pull nor anything else it lacks: no noise anywhere
    for log in (dirs[0] / "out.log", dirs[1] / "out.log", tmp_path / "boot/out.log"):
        noisy = [ln for ln in log.read_text().splitlines() if NOISE.search(ln)]
        assert noisy == [], (log.name, noisy[:2])


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "COLUMNS"}
