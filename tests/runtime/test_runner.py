"""Process settings: flags > env > config.toml > defaults, bootnodes from all three."""

from __future__ import annotations

import pytest

from node.runtime.runner import build_config, parser

A = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSkoZAksd1Nqwx4dq6UpoVujGZg2a4GRSRkRPhs7GwCmR"
B = "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWAehU1dBvCABTYaS5vp8duD5W3AYo9mW473SVCZgrX2gH"
C = "/ip4/127.0.0.1/tcp/4003/p2p/12D3KooWFDgnApxek5hH8rfrJpqpn46xX7zi9TkmYhb96xDj1t6V"


def test_bootnodes_from_flags_file_and_config(tmp_path, monkeypatch):
    monkeypatch.delenv("KEYSWITCH_NETWORK_BOOTNODES", raising=False)
    (tmp_path / "config.toml").write_text(f'[network]\nbootnodes = ["{A}"]\ntarget_peers = 5\n')
    (tmp_path / "boot.txt").write_text(f"# comment\n{C}\n\n")
    args = parser("x").parse_args(["--datadir", str(tmp_path), "--bootnodes-file", "boot.txt",
                                   "--announce", "/ip4/1.2.3.4/tcp/4001"])
    _, ncfg = build_config(args)
    assert ncfg.bootnodes == [A, C] and ncfg.target_peers == 5 and ncfg.announce == ["/ip4/1.2.3.4/tcp/4001"]
    args = parser("x").parse_args(["--datadir", str(tmp_path), "--bootnodes", f"{B},{A}", "--target-peers", "3"])
    _, ncfg = build_config(args)
    assert ncfg.bootnodes == [B, A] and ncfg.target_peers == 3  # flags replace the file's list
    assert ncfg.gossip and ncfg.dial_learned


def test_bootstrap_defaults_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("KEYSWITCH_DATADIR", str(tmp_path / "node"))  # must not be used by a bootstrap
    monkeypatch.setenv("KEYSWITCH_BOOTSTRAP_DATADIR", str(tmp_path / "boot"))
    _, ncfg = build_config(parser("b", bootstrap=True).parse_args([]), bootstrap=True)
    assert ncfg.datadir == tmp_path / "boot" and not ncfg.dial_learned
    from node.config import ConfigError

    with pytest.raises(ConfigError, match="/p2p/"):
        build_config(parser("x").parse_args(["--datadir", str(tmp_path), "--bootnodes", "/ip4/1.2.3.4/tcp/1"]))
