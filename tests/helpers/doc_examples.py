"""Running a docs page's python blocks as a test (imported by the docs tests).

The blocks run in order, in one namespace. An example that shows an error
(``print(err)   # expected text``) must print that text (the parts between '...'), so a page
cannot drift from the messages the library really gives.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
EXPECTED = re.compile(r"print\(err\)\s*#\s*(.+)$", re.MULTILINE)


def python_blocks(doc: Path) -> list[str]:
    """The ```python blocks of ``doc``, in order."""
    return BLOCK.findall(doc.read_text())


def run_python_blocks(doc: Path) -> None:
    """Execute every python block of ``doc``; fail naming the block that raised or that did
    not print its documented error text."""
    namespace: dict = {}
    for i, code in enumerate(python_blocks(doc)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f"{doc.name}[block {i}]", "exec"), namespace)
            except Exception as err:  # pragma: no cover - reported with the block
                pytest.fail(f"block {i} of {doc.name} raised {err!r}:\n{code}")
        printed = out.getvalue()
        for expected in EXPECTED.findall(code):
            for fragment in (f.strip() for f in expected.split("...")):
                assert fragment in printed, (i, fragment, printed)
