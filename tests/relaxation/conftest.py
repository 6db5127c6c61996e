import pytest
import torch

import equirelax as er


@pytest.fixture
def s4_model():
    G = er.groups.symmetric(4)
    V, T = er.reps.natural(G), er.reps.trivial(G)
    torch.manual_seed(0)
    return er.nn.EquivariantMLP(V, [2 * V + T, V], T, activation="tanh").double()


@pytest.fixture
def so3_model():
    S = er.groups.SO(3)
    v, t = er.reps.vector(S), er.reps.trivial(S)
    torch.manual_seed(0)
    return er.nn.EquivariantMLP(v + t, [3 * v + 2 * t], v, activation="silu").double()


@pytest.fixture
def o3_model():
    G = er.groups.O(3)
    v, t = er.reps.vector(G), er.reps.trivial(G)
    torch.manual_seed(0)
    return er.nn.EquivariantMLP(v + t, [2 * v + 2 * t], v + t, activation="relu").double()
