"""The stdlib contracts are known to a host's policy by the pinned SHA-256 of their source and their parameter
schema (``node.contracts.stdlib.SOURCE_HASHES`` / ``SCHEMAS``): the pins match the shipped sources and the
parameters each one declares, so changing a stdlib contract is a reviewed change of its hash."""

from __future__ import annotations

import hashlib
import importlib

import pytest

from node.contracts import compile_terms, stdlib
from node.contracts.model import Terms


def test_every_stdlib_contract_is_pinned_by_the_hash_of_its_source():
    assert sorted(stdlib.SOURCE_HASHES) == stdlib.names() == sorted(stdlib.SCHEMAS)
    for name in stdlib.names():
        raw = importlib.import_module(f"node.contracts.stdlib.{name}").SOURCE.encode("utf-8")
        assert stdlib.SOURCE_HASHES[name] == hashlib.sha256(raw).hexdigest() == stdlib.source_hash(
            stdlib.source(name)), name


@pytest.mark.parametrize("name", ["escrow", "option", "ring", "swap", "turns"])
def test_each_schema_is_what_the_contract_declares_and_identify_names_it(name):
    sample = {"int": 7, "str": "BTC-REG"}
    params = {k: sample[t] for k, t in stdlib.SCHEMAS[name].items()}
    parties = ("p0", "p1", "p2") if name in ("ring", "escrow") else ("p0", "p1")
    compile_terms(Terms(stdlib.source(name), params, parties))  # the schema's parameters compile
    assert stdlib.identify(stdlib.source(name), params) == (name, "")
    assert stdlib.identify(stdlib.source(name) + "\n", params)[0] is None  # one byte more: another contract
