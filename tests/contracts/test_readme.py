"""The examples in node/contracts/README.md run and hold."""

import re
from pathlib import Path

import pytest

import node.contracts

README = Path(node.contracts.__file__).parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_an_example_per_stdlib_contract():
    text = README.read_text(encoding="utf-8")
    for name in node.contracts.stdlib.names():
        assert f"### {name}" in text and f'stdlib.source("{name}")' in text


@pytest.mark.parametrize("block", BLOCKS[1:], ids=[f"example{i}" for i in range(1, len(BLOCKS))])
def test_readme_example_runs(block):
    exec(compile(block, str(README), "exec"), {})
