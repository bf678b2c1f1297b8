"""``keyswitch vault new|show`` and ``keyswitch attest quote`` end to end (real enclave process)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from node.cli.vault import binding_from_json
from node.attest import simquote
from node.attest.policy import AttestationPolicy


from tests.cli_fixtures import cli, datadir, run  # noqa: F401 (fixtures)


def test_vault_new_show_and_quote(cli, datadir):
    for cmd in (("vault", "new", "--keys", "3"), ("attest", "quote")):  # a data directory never initialised
        r = run(cli, datadir, *cmd)
        assert r.exit_code == 2 and f"keyswitch --datadir {datadir} init" in r.output, r.output
    assert run(cli, datadir, "init").exit_code == 0
    r = run(cli, datadir, "vault", "new", "--keys", "3")
    assert r.exit_code == 0, r.output
    assert "generated 3 deposit keys" in r.output
    r = run(cli, datadir, "vault", "show", "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output[r.output.index("{"):])
    assert shown["counts"]["held"] == 3 and len(shown["keys"]) == 3
    # never a private key: the sealed state's plaintext is not reachable, and no 32-byte secrets are printed
    assert all(set(k) == {"pubkey", "state", "origin", "recipient"} for k in shown["keys"])

    out = datadir / "q.bin"
    r = run(cli, datadir, "attest", "quote", "--out", str(out), "--nonce", "abcd")
    assert r.exit_code == 0, r.output
    blob = out.read_bytes()
    binding = binding_from_json(json.loads((datadir / "q.bin.binding.json").read_text()))
    v = simquote.verify_sim_quote(blob, policy=AttestationPolicy.dev(), at=datetime.now(timezone.utc))
    assert v.ok, v
    assert v.report_data == binding.report_data().hex()
    assert binding.sign_pub.hex() == shown["sign_pub"] and binding.keys_root.hex() == shown["keys_root"]
    from node import identity

    assert binding.peer_id == identity.peer_id(datadir)
    assert binding.net == "dev"


def test_vault_new_refuses_a_bad_count(cli, datadir):
    assert run(cli, datadir, "init").exit_code == 0
    r = run(cli, datadir, "vault", "new", "--keys", "0")
    assert r.exit_code != 0
