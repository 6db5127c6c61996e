"""Shared builders for the landscape tests: groups, hidden reps by name, planted networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import equirelax as er


def planted_network(group: str, spec: str, activation: str = "tanh", seed: int = 0,
                    rep_out=None):
    """A generic EquivariantMLP natural(G) -> spec -> rep_out (default trivial) with random
    weights and biases (so that its neurons are irreducible), float64."""
    G = er.groups.from_name(group)
    rep_in = er.reps.natural(G)
    rep_out = er.reps.trivial(G) if rep_out is None else rep_out
    torch.manual_seed(seed)
    model = er.nn.EquivariantMLP(rep_in, [er.reps.parse(G, spec)], rep_out,
                                 activation=activation).double()
    with torch.no_grad():
        for layer in model.linears:
            layer.coefficients.normal_()
            layer.bias_coefficients.normal_()
    return G, rep_in, rep_out, model


@pytest.fixture
def planted():
    return planted_network


@pytest.fixture
def rng():
    return np.random.default_rng(0)
