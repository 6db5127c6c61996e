"""The C4/D4 group CNN and its plain-CNN baseline: invariance for every element, relaxation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from equirelax.models import CNN, GCNN
from equirelax.nn.gconv import FreeFieldConv2d, grid_act, grid_transform, project_kernel
from equirelax.relaxation import harden, relax
from equirelax.reps.grid import grid, grid_group
from tests.helpers.group_convs import (
    DTYPES,
    GENERATORS,
    GROUPS,
    TOL,
    randn,
    randomise_free,
    relative_error,
)

#: Small convolutions: torch on one thread (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", GROUPS)
def test_gcnn_logits_are_invariant_for_every_element(
    name: str, dtype: torch.dtype, train: bool
) -> None:
    torch.manual_seed(0)
    model = GCNN(name, in_channels=1, num_classes=5, channels=(4, 6, 8), image_size=16).to(dtype)
    x = randn(3, 1, 16, 16, dtype=dtype)
    if not train:
        with torch.no_grad():
            model(randn(3, 1, 16, 16, dtype=dtype, seed=4) + 0.5)  # running statistics
        model.eval()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (3, 5)
        for g in range(model.group.order):
            err = relative_error(model(grid_transform(x, model.group, g)), logits)
            assert err < 10 * TOL[dtype], f"element {g}: {err}"


@pytest.mark.parametrize("name", GROUPS)
def test_plain_cnn_is_not_invariant(name: str) -> None:
    torch.manual_seed(0)
    model = CNN(1, 5, channels=(4, 6, 8)).double().eval()
    G = grid_group(name)
    x = randn(3, 1, 16, 16)
    with torch.no_grad():
        logits = model(x)
        errors = [relative_error(model(grid_transform(x, G, g)), logits)
                  for g in range(1, G.order)]
    assert logits.shape == (3, 5) and min(errors) > 1e-3


@pytest.mark.parametrize("name", GROUPS)
def test_relaxed_gcnn_penalty_and_hardening(name: str) -> None:
    """relax(GCNN) relaxes every convolution with a free conv2d; the generator penalty is
    Σ_s ||W(s·x) − s·(W x)||², zero exactly for an equivariant free kernel; the hardened model
    is the original architecture and invariant for every element."""
    torch.manual_seed(0)
    model = GCNN(name, in_channels=1, num_classes=3, channels=(2, 3), pool_after=(0,),
                 image_size=8).double()
    relaxed = relax(model, total_steps=6, lie_weight=1.0, norm_weight=1.0)
    layers = relaxed.relaxed_layers()
    assert list(layers) == ["convs.0", "convs.1"]
    assert all(isinstance(r.free, FreeFieldConv2d) for r in layers.values())
    G = grid_group(name)
    x = randn(4, 1, 8, 8)
    randomise_free(relaxed)
    relaxed.train()
    relaxed.step()
    relaxed(x)
    lie_sq = [float(r.take_squares()[0].detach()) for r in layers.values()]
    # The definition, for the lifting layer (its input is the image itself).
    w = layers["convs.0"].free
    expected = sum(float((w(grid_transform(x, G, s)) - grid_act(w(x), G, s, True)).pow(2).sum())
                   for s in GENERATORS[name])
    assert lie_sq[0] == pytest.approx(expected, rel=1e-12)
    assert all(v > 1e-2 for v in lie_sq)
    # Equivariant free kernels give a zero generator penalty.
    with torch.no_grad():
        for r in layers.values():
            k = r.free.conv.weight
            k.copy_(project_kernel(k, G, r.free.in_regular, True))
    relaxed(x)
    assert all(float(r.take_squares()[0]) < 1e-20 for r in layers.values())
    # Mid-training (θ > 0, random free terms) the model is not invariant; hardened, it is.
    randomise_free(relaxed)
    relaxed.train()
    with torch.no_grad():
        logits = relaxed(x)
        assert max(relative_error(relaxed(grid_transform(x, G, g)), logits)
                   for g in range(G.order)) > 1e-3
    hard = harden(relaxed).eval()
    assert type(hard) is GCNN and list(hard.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        logits = hard(x)
        for g in range(G.order):
            assert relative_error(hard(grid_transform(x, G, g)), logits) < 1e-12


@pytest.mark.parametrize("name", GROUPS)
def test_relax_finds_the_convolutions_of_a_default_gcnn(name: str) -> None:
    """GCNN("C4") (default image side 28) declares its representations, and so does every
    convolution: relax() finds and relaxes all of them, and the hardened model is exact."""
    torch.manual_seed(0)
    model = GCNN(name, channels=(2, 3))
    assert model.rep_in == grid(name, 28, 1) and model.rep_out.dim == 10
    relaxed = relax(model, total_steps=4)
    assert list(relaxed.relaxed_layers()) == ["convs.0", "convs.1"]
    relaxed.train()
    relaxed.step()
    x = randn(2, 1, 28, 28, dtype=torch.float32)
    relaxed(x)
    assert float(relaxed.penalty()) > 0
    hard = harden(relaxed).eval()
    with torch.no_grad():
        logits = hard(x)
        for g in range(grid_group(name).order):
            assert relative_error(hard(grid_transform(x, name, g)), logits) < 1e-5


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: GCNN("C4", channels=()), ValueError, "channels"),
        (lambda: GCNN("C4", channels=(2, 2), pool_after=(2,)), ValueError, "pool_after"),
        (lambda: GCNN("C8"), ValueError, "'C4' or 'D4'"),
        (lambda: CNN(1, 3)(torch.zeros(2, 3, 8, 8)), ValueError, r"\(B, 1, H, H\)"),
        (lambda: GCNN("C4", channels=(2, 2), image_size=14), ValueError, "side 7 at block 1"),
        (lambda: GCNN("C4", image_size=28)(torch.zeros(1, 1, 32, 32)), ValueError,
         r"\(B, 1, 28, 28\)"),
    ],
)
def test_bad_input_fails_early(call: Callable[[], object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
