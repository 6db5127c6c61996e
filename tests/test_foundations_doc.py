"""docs/foundations.md runs as written: its python blocks are executed in order, in one namespace.

An example that shows an error (``print(err)   # expected text``) must print that text (the parts
between '...'), so the page cannot drift from the messages the library really gives.
"""

from __future__ import annotations

from tests.helpers.doc_examples import DOCS, python_blocks, run_python_blocks

DOC = DOCS / "foundations.md"


def blocks() -> list[str]:
    return python_blocks(DOC)


def test_the_page_has_examples():
    assert len(blocks()) >= 10


def test_examples_run_and_print_the_documented_errors():
    run_python_blocks(DOC)
