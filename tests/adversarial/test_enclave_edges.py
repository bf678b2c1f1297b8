"""Attacks on the enclave's edges: a hostile host edits the code the enclave loads.

The enclave process is started the way ``SubprocessEnclave`` starts it, but from a copy of the checkout the
attacker has edited. Either the edit is outside what the enclave loads (then it changes nothing the enclave
does), or it is measured (then the quote's measurement changes and a peer's attestation policy refuses it).
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from node.assets import address_for
from node.contracts.spec import Commit, PartySpec, make_spec
from node.contracts import stdlib
from node.attest.binding import verify_attestation
from node.tee.client import EnclaveRefused, InProcessEnclave, SubprocessEnclave
from node.enclave.measure import project_root
from node.attest.policy import AttestationPolicy

NET = "dev"
_RUN = ("import runpy, sys\nsys.path.insert(0, sys.argv[1])\n"
        "sys.argv = ['node.enclave', '--datadir', sys.argv[2]]\n"
        "runpy.run_module('node.enclave', run_name='__main__', alter_sys=True)\n")


def tampered_checkout(tmp_path: Path, rel: str, edit) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(project_root() / "node", root / "node", ignore=shutil.ignore_patterns("__pycache__"))
    f = root / rel
    f.write_text(edit(f.read_text()))
    return root


def enclave_from(root: Path, datadir: Path) -> SubprocessEnclave:
    return SubprocessEnclave(datadir, command=[sys.executable, "-c", _RUN, str(root), str(datadir)])


def _release_everything(src: str) -> str:  # the interpreter obeys "release everything now", whatever the terms
    return src + "\n\n_real_evaluate_program = evaluate_program\n" \
                 "def evaluate_program(*a, **k):\n    return _real_evaluate_program(*a, **k)  # backdoor\n"


@pytest.mark.parametrize("rel, edit", [
    ("node/contracts/interp.py", _release_everything),
    ("node/contracts/grammar.py", lambda s: s.replace("%ignore WS", "%ignore WS\n// backdoor")),
    ("node/contracts/stdlib/swap.py", lambda s: s.replace("contract swap", "# backdoor\ncontract swap")),
    ("node/contracts/spec.py", lambda s: s + "\n# backdoor\n"),
])
def test_a_host_that_edits_the_contract_interpreter_gets_a_quote_no_peer_accepts(tmp_path, rel, edit):
    """The contract interpreter, its grammar and the stdlib contracts decide releases inside the enclave:
    an edited copy must produce a measurement the dev policy (this checkout's build) does not allow."""
    root = tampered_checkout(tmp_path, rel, edit)
    with enclave_from(root, tmp_path / "enc") as enc:
        enc.generate_keys(1)
        b = enc.binding_for(NET, "12D3KooWattacker")
        blob = enc.quote(b, now=1_800_000_000)
    v = verify_attestation(blob, b, policy=AttestationPolicy.dev(), at=datetime.fromtimestamp(1_800_000_010,
                                                                                                timezone.utc))
    assert not v.ok and v.code == "measurement-not-allowed", \
        f"an enclave running an edited {rel} was accepted: {v.code} {v.reason}"


def test_an_untampered_copy_is_accepted(tmp_path):
    """The control: the same procedure with no edit is accepted, so the refusals above are the edits'."""
    root = tampered_checkout(tmp_path, "node/contracts/grammar.py", lambda s: s)
    with enclave_from(root, tmp_path / "enc") as enc:
        enc.generate_keys(1)
        b = enc.binding_for(NET, "12D3KooWhonest")
        blob = enc.quote(b, now=1_800_000_000)
    v = verify_attestation(blob, b, policy=AttestationPolicy.dev(), at=datetime.fromtimestamp(1_800_000_010,
                                                                                                timezone.utc))
    assert v.ok, v


def test_a_host_that_edits_its_signature_check_cannot_make_the_enclave_accept_a_forged_party(tmp_path):
    """The host edits its own (unmeasured) client code so that every signature "verifies". The enclave must not
    use host code: a contract opened with a forged signature for the other party is still refused."""
    root = tampered_checkout(
        tmp_path, "node/tee/client.py",
        lambda s: s.replace("def verify_domain_sig(", "def _honest_verify_domain_sig(")
        + "\n\ndef verify_domain_sig(*_a, **_k):\n    return True  # backdoor: every signature verifies\n")
    other = InProcessEnclave(None)
    with enclave_from(root, tmp_path / "enc") as enc:
        parties = []
        for e, name, asset in ((enc, "A", "BTC-REG"), (other, "B", "LTC")):
            pub = e.generate_keys(1)[0]
            parties.append(PartySpec(e.binding_for(NET, name), [Commit(pub, asset, address_for(asset, pub), 1000,
                                                                       5_000)], True))
        spec = make_spec(NET, stdlib.source("swap"), {"asset_a": "BTC-REG", "asset_b": "LTC", "usd": 5_000,
                                                      "deadline": 300}, parties)
        forged = bytes(64)  # not B's signature over the contract id
        with pytest.raises(EnclaveRefused) as exc:
            opened = enc.contract_open(spec.encode(), [(1, forged)])
            pytest.fail(f"the enclave took a forged signature for party B (missing={opened.missing})")
        assert exc.value.code == "bad-signature"


# -- claim addresses: their own seed, not the libp2p identity key ---------------------------------------------


def _desk_as_the_daemon_builds_it(datadir: Path):
    """The node's stack and contract desk, assembled as ``node.app.daemon.run_daemon`` assembles them (in-process
    enclave, a dev ledger; no network)."""
    from node import identity
    from node.clock import SystemClock
    from node.app.stack import add_switchboard, make_offer_stack
    from node.ledger.devnet import DevLedger
    from node.contracts.desk.swaps import SwapDesk

    stack = make_offer_stack(datadir, NET, identity.peer_id(datadir), in_process=True)
    stack.ledger, stack.datadir = DevLedger(None, automine=True), datadir
    add_switchboard(stack, datadir)
    return stack, SwapDesk(stack, clock=SystemClock())


def test_a_stolen_network_identity_key_does_not_give_the_owners_claim_keys(tmp_path):
    """The attacker holds the node's libp2p identity key (``identity.key``: the key the network stack signs
    with all day; operators copy it to move a peer id) and sees the claim addresses the node names to its peers
    (key escrow agreements carry them). Deriving the claim key from the identity seed must not give the key of
    any claim address."""
    import coincurve

    from node.crypto import tagged_hash
    from node.contracts.protocol.schedule import Chunk
    from node.contracts.desk.swaps import claim_key

    datadir = tmp_path / "node"
    stack, desk = _desk_as_the_daemon_builds_it(datadir)
    try:
        stolen = (datadir / "identity.key").read_bytes()
        for i in range(3):
            pub = coincurve.PrivateKey(tagged_hash("test/deposit", bytes([i]))).public_key.format()
            chunk = Chunk("BTC-REG", address_for("BTC-REG", pub), pub, 1000)
            published = desk.claim_address(chunk)
            guessed = address_for("BTC-REG", coincurve.PrivateKey(claim_key(stolen, pub)).public_key.format())
            assert guessed != published, "the claim key of a published claim address derives from identity.key"
            # the owner can always re-derive it, from the claim seed
            own = (datadir / "claim.seed").read_bytes()
            assert address_for("BTC-REG", coincurve.PrivateKey(claim_key(own, pub)).public_key.format()) == published
    finally:
        stack.close()


def test_an_existing_datadir_gets_a_claim_seed_once_0600_and_keeps_its_identity(tmp_path):
    """Migration: a data directory from before the claim seed (identity.key only) gets ``claim.seed`` on the
    first start: random, 0600, written once (later starts read the same bytes; no temporary file is left),
    and identity.key is untouched (claims made before still re-derive from it)."""
    import os
    import stat

    from node import identity

    d = tmp_path / "old"
    ident = identity.load_or_create_seed(d)
    assert not (d / identity.CLAIM_SEED_FILE).exists()
    seed = identity.load_or_create_claim_seed(d)
    assert len(seed) == 32 and seed != ident
    assert stat.S_IMODE((d / identity.CLAIM_SEED_FILE).stat().st_mode) == 0o600
    assert identity.load_or_create_claim_seed(d) == seed and (d / identity.IDENTITY_FILE).read_bytes() == ident
    assert sorted(os.listdir(d)) == [identity.CLAIM_SEED_FILE, identity.IDENTITY_FILE]


def test_a_claim_seed_that_is_the_identity_seed_is_refused(tmp_path):
    """An operator "restores" claim.seed from identity.key: the node refuses to derive claim keys from it."""
    from node import identity

    d = tmp_path / "n"
    (d / identity.CLAIM_SEED_FILE).parent.mkdir(parents=True)
    (d / identity.CLAIM_SEED_FILE).write_bytes(identity.load_or_create_seed(d))
    with pytest.raises(identity.IdentityError, match="claim seed is the network identity seed"):
        identity.load_or_create_claim_seed(d)
