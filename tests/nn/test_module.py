"""The equivariant-module protocol: every equivariant module exported by ``equirelax.nn`` and
``equirelax.models`` declares its representations one way (plain attributes set once: ``rep_in``
/ ``rep_out``, or ``reps_in`` / ``rep_out`` for several inputs) and passes
``er.testing.assert_equivariant`` in float64 and float32 (every element of finite groups; sampled
elements and the Lie algebra of Lie groups); the one input validator names what it expected."""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

import equirelax as er
import equirelax.models as models
from equirelax.nn.module import Equivariant, EquivariantModule, check_features, input_reps

HAS_E3NN = importlib.util.find_spec("e3nn") is not None
S4 = er.groups.symmetric(4)
SO3, O3 = er.groups.SO(3), er.groups.O(3)
V = er.reps.natural(S4)


class Joined(nn.Module):
    """A module as a function of one tensor, for ``er.testing.assert_equivariant``: its
    arguments' features concatenated on the last axis, each transforming by its own rep, so the
    joined input by their direct sum.

    Flat inputs ``(..., D)``: argument i is the next ``prod(shapes[i])`` entries, shaped
    ``(-1, *shapes[i])``; the output is flattened after the batch axis. Per-point inputs
    (``per_point``) ``(..., N, F)``: argument i is the next ``shapes[i][-1]`` features of every
    point, ``(-1, N, f_i)``; the output keeps its axes (its rep acts on the last one).
    """

    def __init__(self, module: nn.Module, shapes: list[tuple[int, ...]], per_point: bool
                 ) -> None:
        super().__init__()
        self.module = module
        self.shapes = shapes
        self.per_point = per_point
        reps = input_reps(module)
        self.rep_in = reps[0] if len(reps) == 1 else er.reps.direct_sum(list(reps))
        self.rep_out = module.rep_out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.per_point:
            lead = z.shape[:-2]
            flat = z.reshape(-1, *z.shape[-2:])
            args = flat.split([s[-1] for s in self.shapes], dim=-1)
            out = self.module(*args)
            return out.reshape(*lead, *out.shape[1:])
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        parts = flat.split([math.prod(s) for s in self.shapes], dim=-1)
        out = self.module(*(p.reshape(-1, *s) for p, s in zip(parts, self.shapes)))
        return out.reshape(*lead, -1)


def _eval(module: nn.Module) -> nn.Module:
    return module.eval()


def _gcnn() -> nn.Module:
    return models.GCNN("D4", 1, 3, channels=(2, 3), pool_after=(0,), image_size=4).eval()


SMALL_VN = {"channels": (4, 6, 8), "k": 4, "head_hidden": (8,), "dropout": 0.0,
            "feature_transform": False, "negative_slope": 0.2, "point_pooling": "mean"}

#: every equivariant module exported: a factory, the trailing shape of each argument (for
#: per-point inputs (points, features)), and the float32 tolerance where the default (1e-5) is
#: too tight for a deep float32 network
CASES: dict[str, tuple[Callable[[], nn.Module], list[tuple[int, ...]], float | None]] = {
    "EquivariantLinear": (lambda: er.nn.EquivariantLinear(V, 2 * V), [(4,)], None),
    "EquivariantMLP": (lambda: er.nn.EquivariantMLP(V, [er.reps.regular(S4)],
                                                    er.reps.trivial(S4)), [(4,)], None),
    "PointwiseActivation": (lambda: er.nn.PointwiseActivation(V * V, "tanh"), [(16,)], None),
    "NormActivation": (lambda: er.nn.NormActivation(2 * er.reps.vector(SO3), "relu"), [(6,)],
                       None),
    "InvariantPool": (lambda: er.nn.InvariantPool(V * V), [(16,)], None),
    "EntryBatchNorm": (lambda: _eval(er.nn.EntryBatchNorm(2 * (V * V), 2)), [(32,)], None),
    "LiftingConv2d": (lambda: er.nn.LiftingConv2d(1, 2, "D4", image_size=5), [(1, 5, 5)],
                      None),
    "GroupConv2d": (lambda: er.nn.GroupConv2d(2, 1, "C4", image_size=4), [(2, 4, 4, 4)],
                    None),
    "VNLinear": (lambda: er.nn.VNLinear(3, 4), [(3, 3)], None),
    "VNLeakyReLU": (lambda: er.nn.VNLeakyReLU(3), [(3, 3)], None),
    "VNBatchNorm": (lambda: _eval(er.nn.VNBatchNorm(3)), [(3, 3)], None),
    "VNLinearLeakyReLU": (lambda: _eval(er.nn.VNLinearLeakyReLU(3, 4)), [(3, 3)], None),
    "EGNNNodeUpdate": (lambda: er.nn.EGNNNodeUpdate(4), [(14,)], None),
    "SteerableLinear": (lambda: er.nn.SteerableLinear("2x0e+1x1o", "1x0e+2x1o", "1x0e+1x1o"),
                        [(5,), (4,)], None),
    "SteerableGatedLinear": (lambda: er.nn.SteerableGatedLinear("2x0e+1x1o", "2x0e+1x1o",
                                                                "1x0e+1x1o"),
                             [(5,), (4,)], None),
    "GCNN": (_gcnn, [(1, 4, 4)], None),
    "VNPointNet": (lambda: models.VNPointNet(3, **SMALL_VN).eval(), [(6, 3)], 1e-3),
    "InvariantGraphNetwork": (lambda: models.InvariantGraphNetwork(4, channels=(2,),
                                                                   invariant_channels=3,
                                                                   head_hidden=(4,)).eval(),
                              [(16,)], None),
    "EGNN": (lambda: models.EGNN(hidden_features=8, num_layers=2), [(5, 3), (5, 3), (5, 1)],
             1e-4),
    "SEGNN": (lambda: models.SEGNN("4x0e+4x1o", num_layers=1).eval(),
              [(5, 3), (5, 3), (5, 1)], 1e-4),
}
NEEDS_E3NN = {"SteerableLinear", "SteerableGatedLinear", "SEGNN"}
#: models of point sets: reps act on each point's features (the last axis)
PER_POINT = {"EGNN", "SEGNN", "VNPointNet"}
#: the k-NN lift's distances (torch.cdist) have no forward-mode derivative, so the Lie
#: derivative cannot be taken: sampled rotations only
NO_LIE_DERIVATIVE = {"VNPointNet"}


def _exported_equivariant_modules() -> set[str]:
    names = set()
    for package in (er.nn, models):
        for name in package.__all__:
            if name in NEEDS_E3NN and not HAS_E3NN:
                continue
            obj = getattr(package, name)
            if (inspect.isclass(obj) and issubclass(obj, EquivariantModule)
                    and obj is not EquivariantModule):
                names.add(name)
    return names


def test_every_exported_equivariant_module_is_checked_here() -> None:
    assert _exported_equivariant_modules() <= set(CASES)
    assert {"EquivariantLinear", "GCNN", "VNPointNet", "EGNN"} <= _exported_equivariant_modules()


def _build(name: str) -> nn.Module:
    if name in NEEDS_E3NN and not HAS_E3NN:
        pytest.skip("needs e3nn")
    torch.manual_seed(0)
    return CASES[name][0]().double()


@pytest.mark.parametrize("name", sorted(CASES))
def test_declares_its_representations_one_way(name: str) -> None:
    module = _build(name)
    assert isinstance(module, EquivariantModule)
    own = vars(module)  # plain attributes, set once in __init__ (no properties, no caches)
    assert isinstance(own.get("rep_out"), er.reps.Rep)
    if "reps_in" in own:
        reps = own["reps_in"]
        assert isinstance(reps, tuple) and len(reps) > 1
        assert all(isinstance(r, er.reps.Rep) for r in reps)
        assert own.get("rep_in", reps[0]) is reps[0]  # a multi-input layer relaxes its feature
    else:
        assert isinstance(own.get("rep_in"), er.reps.Rep)
        assert isinstance(module, Equivariant)
    reps = input_reps(module)
    assert all(r.group == module.rep_out.group for r in reps)
    shapes = CASES[name][1]
    assert len(shapes) == len(reps)
    sizes = [s[-1] if name in PER_POINT else math.prod(s) for s in shapes]
    assert sizes == [r.dim for r in reps]


@pytest.mark.parametrize("name", sorted(CASES))
def test_is_exactly_equivariant_in_float64_and_float32(name: str) -> None:
    module = _build(name)
    _, shapes, tol32 = CASES[name]
    per_point = name in PER_POINT
    joined = Joined(module, shapes, per_point)
    features = sum(s[-1] for s in shapes) if per_point else sum(math.prod(s) for s in shapes)
    points = (shapes[0][0],) if per_point else ()
    x = torch.randn(3, *points, features, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    if name == "EGNN" or name == "SEGNN":
        x[..., -1] = x[..., -1].sign()  # charges ±1, as in the data
    tolerance = {torch.float64: 1e-10, torch.float32: tol32 or 1e-5}
    if name in NO_LIE_DERIVATIVE:
        for dtype, tol in tolerance.items():
            assert er.equivariance_error(joined, x, dtype=dtype) < tol
        return
    errors = er.testing.assert_equivariant(joined, x, tolerance=tolerance)
    assert set(errors) == {torch.float64, torch.float32}


def test_relax_finds_the_layers_of_every_model() -> None:
    for name in ("GCNN", "VNPointNet", "InvariantGraphNetwork", "EGNN"):
        relaxed = er.relax(_build(name), total_steps=2)
        assert relaxed.relaxed_layers(), name


@pytest.mark.parametrize(
    ("x", "expected", "kwargs", "error", "match"),
    [
        ("not a tensor", V, {}, TypeError, "expects a torch.Tensor, got str"),
        (torch.zeros(2, 3), V, {}, ValueError, r"shape \(\.\.\., 4\) for natural, got shape"),
        (torch.zeros(()), V, {}, ValueError, r"\(\.\.\., 4\)"),
        (torch.zeros(2, 5, 3), (4, 3), {}, ValueError, r"\(\.\.\., 4, 3\), got shape \(2, 5, 3\)"),
        (torch.zeros(2, 4, 3), (4, 3), {"leading": 2}, ValueError, r"\(B, B, 4, 3\)"),
        (torch.zeros(2, 1, 5, 6), (1, "H", "H"), {"leading": 1, "square": True}, ValueError,
         r"\(B, 1, H, H\)"),
        (torch.zeros(2, 4, dtype=torch.int64), V, {"floating": True}, TypeError, "floating"),
    ],
)
def test_check_features_names_what_it_expected(x, expected, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        check_features(x, expected, "the layer", **kwargs)


def test_check_features_accepts_any_size_where_the_shape_names_an_axis() -> None:
    check_features(torch.zeros(2, 7, 4, 3), ("N", 4, 3), "x")
    check_features(torch.zeros(2, 1, 5, 5), (1, None, None), "x", leading=1, square=True)
    check_features(torch.zeros(4), V, "x")


def test_input_reps_refuses_a_module_without_reps() -> None:
    with pytest.raises(TypeError, match="Linear declares no input representations"):
        input_reps(nn.Linear(2, 2))


def test_the_registry_holds_only_layers_we_did_not_write() -> None:
    """Our layers reach relaxation through their own hooks (dense_map, fold_equivariant), read
    by registration(); the registry itself names only foreign layer types."""
    from equirelax.relaxation import registry

    layer = er.nn.EquivariantLinear(V, V)
    registry.registration(layer)  # registers the layers of optional libraries already loaded
    assert all(not t.__module__.startswith("equirelax.") for t in registry._REGISTRY)
    reg = registry.registration(layer)
    assert reg.dense is type(layer).dense_map and reg.fold is type(layer).fold_equivariant
    assert registry.registration(er.nn.VNLinear(2, 2)) is None
    assert registry.registration(nn.Linear(2, 2)).dense is not None
