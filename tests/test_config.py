import os
import stat
import subprocess
import sys
import tomllib

import pytest

from node import config


def test_defaults_and_precedence(tmp_path):
    (tmp_path / "config.toml").write_text('[network]\nnet = "filenet"\ntarget_peers = 3\n')
    env = {"KEYSWITCH_NETWORK_TARGET_PEERS": "5"}
    cfg = config.load(tmp_path, env=env, overrides={"network.net": "flagnet"})
    assert cfg["network.net"] == "flagnet" and cfg.sources["network.net"] == "command line"
    assert cfg["network.target_peers"] == 5 and cfg.sources["network.target_peers"] == "KEYSWITCH_NETWORK_TARGET_PEERS"
    assert cfg["deposits.chunk_usd"] == 50.0 and cfg.sources["deposits.chunk_usd"] == "default"
    cfg2 = config.load(tmp_path, env={})
    assert cfg2["network.net"] == "filenet" and cfg2["network.target_peers"] == 3


@pytest.mark.parametrize(
    "toml, key, why",
    [
        ('[network]\ntarget_peers = "many"\n', "network.target_peers", "expected int"),
        ("[network]\ntarget_peers = 0\n", "network.target_peers", "must be > 0"),
        ('[network]\nlisten = ["127.0.0.1:4001"]\n', "network.listen", "starts with '/'"),
        ('[network]\nbootnodes = ["/ip4/127.0.0.1/tcp/4001"]\n', "network.bootnodes", "/p2p/"),
        ('[tee]\nbackend = "magic"\n', "tee.backend", "must be one of"),
        ('[tee]\nbroken = "a-little"\n', "tee.broken", "must be one of"),
        ('[nope]\nx = 1\n', "nope.x", "unknown setting"),
    ],
)
def test_bad_values_name_key_value_and_reason(tmp_path, toml, key, why):
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(config.ConfigError) as ei:
        config.load(tmp_path, env={})
    assert ei.value.key == key
    assert why in str(ei.value)


def test_the_broken_tee_is_off_unless_chosen_explicitly(tmp_path):
    assert config.load(tmp_path, env={})["tee.broken"] == ""
    cfg = config.load(tmp_path, env={"KEYSWITCH_TEE_BROKEN": "double-release"})
    assert cfg["tee.broken"] == "double-release" and cfg.sources["tee.broken"] == "KEYSWITCH_TEE_BROKEN"


def test_bad_env_value_is_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="KEYSWITCH_API_PORT"):
        config.load(tmp_path, env={"KEYSWITCH_API_PORT": "99999"})


def test_rendered_default_parses_to_the_defaults():
    data = tomllib.loads(config.render_default())
    for s in config.SETTINGS:
        sec, name = s.key.split(".", 1)
        assert data[sec][name] == s.default


def test_bootnodes_file(tmp_path):
    addr = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWEkXgGFd2YMPSuxZG6kHJaagQJuGge57LNsqwZNnmPzko"
    (tmp_path / "boot.txt").write_text(f"# bootnodes\n{addr}\n\n")
    cfg = config.load(tmp_path, env={}, overrides={"network.bootnodes_file": "boot.txt"})
    assert cfg.bootnodes == [addr]


def test_cli_init_writes_config_and_private_identity(tmp_path):
    d = tmp_path / "node"
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "node", "--datadir", str(d), *a], capture_output=True, text=True, timeout=120
    )
    out = run("init")
    assert out.returncode == 0, out.stderr
    assert (d / "config.toml").exists()
    mode = stat.S_IMODE(os.stat(d / "identity.key").st_mode)
    assert mode == 0o600
    pid = [l for l in out.stdout.splitlines() if l.startswith("peer id ")][0].split()[-1]
    again = run("init")
    assert pid in again.stdout  # the identity persists
    shown = run("config", "show", "--json")
    assert shown.returncode == 0 and '"network.net": "dev"' in shown.stdout
    (d / "config.toml").write_text('[log]\nlevel = "loud"\n')
    bad = run("config", "show")
    assert bad.returncode == 2 and "log.level" in bad.stderr and "loud" in bad.stderr


@pytest.mark.parametrize("where", ["file", "env", "flag"])
@pytest.mark.parametrize("value", ["release", "contract-run"])
def test_the_retired_swap_protocol_setting_stops_the_node_with_one_line_saying_why(tmp_path, where, value):
    """``contracts.swap_protocol`` chose release/1 or contract-run/1 for swaps; release/1 is gone (issue #19). A
    config still naming it, with either value, is refused with one line naming the key, the value, where it came
    from and what to do, rather than silently run otherwise than the operator wrote."""
    env, overrides = {}, {}
    if where == "file":
        (tmp_path / "config.toml").write_text(f'[contracts]\nswap_protocol = "{value}"\n')
    elif where == "env":
        env["KEYSWITCH_CONTRACTS_SWAP_PROTOCOL"] = value
    else:
        overrides["contracts.swap_protocol"] = value
    with pytest.raises(config.ConfigError) as exc:
        config.load(tmp_path, env=env, overrides=overrides)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"config contracts.swap_protocol={value!r}")
    assert "retired" in msg and "/keyswitch/contract-run/1" in msg and "delete this setting" in msg
    assert {"file": "config.toml", "env": "KEYSWITCH_CONTRACTS_SWAP_PROTOCOL", "flag": "command line"}[where] in msg
    assert "contracts.swap_protocol" not in config.render_default()
