"""The code blocks of docs/relaxation.md run as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "relaxation.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_block_runs(index):
    exec(compile(BLOCKS[index], f"{DOC.name}[{index}]", "exec"), {})


def test_doc_has_the_plain_loop_and_the_lightning_example():
    assert len(BLOCKS) >= 3
    assert any("LightningCallback" in b for b in BLOCKS)
    assert any("relaxed.step()" in b for b in BLOCKS)
