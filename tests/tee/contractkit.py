"""Contracts between real in-memory enclaves: the parties' specs (each enclave attesting the others) and the
contract opened by every runner (tests/tee/test_contract_enclave.py, test_sealed_journal.py)."""

from __future__ import annotations

from node.assets import address_for
from node.contracts.spec import Commit, PartySpec, spec_id
from tests.tee.testbuild import attest


NET = "dev"


def parties(enclaves, names, assets, n, usd=5_000, runners=None):
    attest(*enclaves)  # each enclave verified the others' quotes itself (I3)
    out = []
    for k, (e, name) in enumerate(zip(enclaves, names)):
        commits = []
        if assets[k]:
            for pub in e.generate_keys(n[k]):
                commits.append(Commit(pub, assets[k], address_for(assets[k], pub), 1000, usd))
        out.append(PartySpec(e.binding_for(NET, name), commits, True if runners is None else runners[k]))
    return out


def opened(enclaves, spec, runners):
    """Every runner opens the contract and gets every other runner's signature over its id."""
    sigs = {k: enclaves[k].contract_open(spec.encode()).sig for k in runners}
    for k in runners:
        assert enclaves[k].contract_open(spec.encode(), [(j, s) for j, s in sigs.items() if j != k]).missing == []
    return spec_id(spec)
