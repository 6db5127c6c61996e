"""docs/e3nn.md runs as written: its python blocks are executed in order, in one namespace.

An example that shows an error (``print(err)   # expected text``) must print that text (the parts
between '...'), so the page cannot drift from the messages the library really gives.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("e3nn")

DOC = Path(__file__).resolve().parents[1] / "docs" / "e3nn.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXPECTED = re.compile(r"print\(err\)\s*#\s*(.+)$", re.MULTILINE)


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def test_the_page_relaxes_trains_and_hardens_an_e3nn_model():
    code = "\n".join(blocks())
    for needed in (
        "er.relax(",
        "o3.FullyConnectedTensorProduct",
        "relaxed.step()",
        "er.harden(",
        "assert_equivariant(exact",
        'mode="project"',
    ):
        assert needed in code, needed


def test_examples_run_and_print_the_documented_errors():
    namespace: dict = {}
    for i, code in enumerate(blocks()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f"{DOC.name}[block {i}]", "exec"), namespace)
            except Exception as err:  # pragma: no cover - reported with the block
                pytest.fail(f"block {i} of {DOC.name} raised {err!r}:\n{code}")
        printed = out.getvalue()
        for expected in EXPECTED.findall(code):
            for fragment in (f.strip() for f in expected.split("...")):
                assert fragment in printed, (i, fragment, printed)
