"""A torch.compile backend that counts graphs, for the compile tests (which also ask for the
``fresh_dynamo`` fixture of ``tests/conftest.py``, so that graphs and guards of earlier tests are
neither reused nor counted)."""

from __future__ import annotations

import torch


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given (one per compile)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return gm.forward
