"""docs/e3nn.md runs as written: its python blocks are executed in order, in one namespace.

An example that shows an error (``print(err)   # expected text``) must print that text (the parts
between '...'), so the page cannot drift from the messages the library really gives.
"""

from __future__ import annotations

import pytest

from tests.helpers.doc_examples import DOCS, python_blocks, run_python_blocks

pytest.importorskip("e3nn")

DOC = DOCS / "e3nn.md"


def blocks() -> list[str]:
    return python_blocks(DOC)


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
    run_python_blocks(DOC)
