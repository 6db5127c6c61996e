"""Helpers of the torch.compile tests: a backend that counts graphs, and a fixture that
starts every test from a clean Dynamo state (compiled graphs and guards of earlier tests would
otherwise be reused or counted)."""

from __future__ import annotations

import pytest
import torch


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given (one per compile)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return gm.forward


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
