"""An equivariant MLP as a linear slice of a plain MLP's parameter space.

A permutation-representation network rep_in -> ρ_1 -> ... -> rep_out with pointwise activations
is an ordinary MLP whose weights satisfy W_l ρ_{l-1}(g) = ρ_l(g) W_l and b_l = ρ_l(g) b_l for
every g. Those solutions form a linear subspace E_ρ of the MLP's parameters θ = (W_1, b_1, ...,
W_L, b_L); which subspace depends on the choice of hidden reps ρ (Xie & Smidt, 2025). This module
moves weights between the two pictures (``plain_mlp``, ``equivariant_mlp``), lays out θ as one
flat vector (``MLPLayout``), and gives E_ρ as an orthonormal basis together with the action of
the group on θ (``EquivariantSubspace``), which the Hessian split and the projections use.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from equirelax.homspace.space import fixed_space, hom
from equirelax.nn.activation import PointwiseActivation, activation_function
from equirelax.nn.mlp import EquivariantMLP
from equirelax.reps.base import Rep

#: torch modules used for each activation name in a plain MLP (and recognised when reading one).
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


def activation_module(name: str) -> nn.Module:
    """The torch module for an activation name (``"tanh"``, ``"relu"``, ...)."""
    if name not in ACTIVATION_MODULES:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATION_MODULES)}"
        )
    return ACTIVATION_MODULES[name]()


def _activation_name(module: nn.Module) -> str | None:
    if isinstance(module, PointwiseActivation):
        return module.name
    for name, cls in ACTIVATION_MODULES.items():
        if type(module) is cls:
            return name
    return None


@dataclass(frozen=True)
class MLPLayout:
    """Widths (n_0, ..., n_L) and activation of a plain MLP; θ is laid out as
    [W_1 (row-major), b_1, W_2, b_2, ..., W_L, b_L], the order of ``nn.Sequential.parameters()``."""

    widths: tuple[int, ...]
    activation: str

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"an MLP needs at least two positive widths, got {self.widths}")
        activation_function(self.activation)  # fails early on an unknown name

    @property
    def n_layers(self) -> int:
        """Number of linear layers L."""
        return len(self.widths) - 1

    @property
    def n_params(self) -> int:
        """D, the length of θ."""
        return sum(o * i + o for i, o in itertools.pairwise(self.widths))

    def offsets(self) -> list[tuple[slice, slice]]:
        """For each layer the slices of θ holding W_l and b_l."""
        out, start = [], 0
        for i, o in itertools.pairwise(self.widths):
            w = slice(start, start + o * i)
            b = slice(w.stop, w.stop + o)
            out.append((w, b))
            start = b.stop
        return out

    def split(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """θ -> [(W_1, b_1), ..., (W_L, b_L)] (views, differentiable)."""
        self.check(theta)
        out = []
        for (ws, bs), (i, o) in zip(self.offsets(), itertools.pairwise(self.widths)):
            out.append((theta[ws].reshape(o, i), theta[bs]))
        return out

    def join(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """[(W_1, b_1), ...] -> θ."""
        if len(weights) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} (W, b) pairs, got {len(weights)}")
        return torch.cat([torch.cat([w.reshape(-1), b.reshape(-1)]) for w, b in weights])

    def check(self, theta: torch.Tensor) -> None:
        """Fail early when θ does not fit the layout."""
        if not isinstance(theta, torch.Tensor) or theta.shape != (self.n_params,):
            got = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise ValueError(f"expected θ of shape ({self.n_params},) for widths {self.widths}, "
                             f"got {got}")

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The MLP with parameters θ applied to x (..., n_0): a pure function of θ."""
        if x.shape[-1] != self.widths[0]:
            raise ValueError(f"expected inputs of shape (..., {self.widths[0]}), "
                             f"got {tuple(x.shape)}")
        fn = activation_function(self.activation)
        layers = self.split(theta)
        h = x
        for k, (w, b) in enumerate(layers):
            h = nn.functional.linear(h, w, b)
            if k < len(layers) - 1:
                h = fn(h)
        return h

    def module(self, theta: torch.Tensor) -> nn.Sequential:
        """A plain ``nn.Sequential`` MLP holding θ (float64 copies of the values)."""
        mods: list[nn.Module] = []
        for k, (w, b) in enumerate(self.split(theta.detach())):
            lin = nn.Linear(w.shape[1], w.shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            mods.append(lin)
            if k < self.n_layers - 1:
                mods.append(activation_module(self.activation))
        return nn.Sequential(*mods)


def read_mlp(mlp: nn.Module) -> tuple[MLPLayout, torch.Tensor]:
    """The layout and the flat float64 parameters θ of a plain MLP or an EquivariantMLP.

    A plain MLP is any module whose ``nn.Linear`` layers (in order, each with a bias) alternate
    with one kind of activation module (``nn.Tanh``, ``nn.ReLU``, ... or PointwiseActivation).
    """
    if isinstance(mlp, EquivariantMLP):
        mlp = plain_mlp(mlp)
    if not isinstance(mlp, nn.Module):
        raise TypeError(f"expected an MLP (nn.Module), got {type(mlp).__name__}")
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(mlp).__name__} contains no nn.Linear layer")
    names = {
        n for n in (_activation_name(m) for m in mlp.modules() if not list(m.children()))
        if n is not None
    }
    if len(linears) > 1 and len(names) != 1:
        raise ValueError(
            f"expected one kind of activation between the linear layers, found {sorted(names)}"
        )
    widths = [linears[0].in_features]
    weights = []
    for lin in linears:
        if lin.in_features != widths[-1]:
            raise ValueError(f"layer widths do not chain: {widths[-1]} -> {lin.in_features}")
        if lin.bias is None:
            raise ValueError("every linear layer needs a bias (nn.Linear(..., bias=True))")
        widths.append(lin.out_features)
        weights.append((lin.weight.detach().double(), lin.bias.detach().double()))
    layout = MLPLayout(tuple(widths), names.pop() if names else "identity")
    return layout, layout.join(weights).clone()


def plain_mlp(model: EquivariantMLP) -> nn.Sequential:
    """The plain MLP (nn.Linear + activation modules, float64) computing the same function."""
    if not isinstance(model, EquivariantMLP):
        raise TypeError(f"plain_mlp needs an EquivariantMLP, got {type(model).__name__}")
    acts = [m for m in model.layers if isinstance(m, PointwiseActivation)]
    if len(acts) != len(model.linears) - 1:
        raise ValueError("plain_mlp needs pointwise activations between all layers "
                         "(permutation hidden reps)")
    names = {a.name for a in acts}
    if len(names) > 1:
        raise ValueError(f"expected one activation, found {sorted(names)}")
    activation = names.pop() if names else "identity"
    weights = []
    for layer in model.linears:
        w, b = layer.weight_and_bias()
        if b is None:
            b = torch.zeros(w.shape[0], dtype=w.dtype)
        weights.append((w.detach().double(), b.detach().double()))
    widths = (model.rep_in.dim, *(r.dim for r in model.hidden_reps), model.rep_out.dim)
    layout = MLPLayout(widths, activation)
    return layout.module(layout.join(weights))


def equivariant_mlp(
    mlp: nn.Module,
    rep_in: Rep,
    hidden_reps: Sequence[Rep],
    rep_out: Rep,
) -> EquivariantMLP:
    """The EquivariantMLP with hidden reps ``hidden_reps`` closest to a plain MLP.

    Each layer's weight and bias are projected orthogonally onto their equivariant spaces, which
    is the orthogonal projection of θ onto E_ρ; weights already in E_ρ are carried over exactly.
    """
    layout, theta = read_mlp(mlp)
    space = EquivariantSubspace(rep_in, hidden_reps, rep_out)
    if layout.widths != space.layout(layout.activation).widths:
        raise ValueError(f"the MLP has widths {layout.widths} but the reps give "
                         f"{space.layout(layout.activation).widths}")
    model = EquivariantMLP(rep_in, list(hidden_reps), rep_out, activation=layout.activation)
    model = model.double()
    with torch.no_grad():
        for layer, (w, b) in zip(model.linears, layout.split(theta)):
            layer.coefficients.copy_(layer.hom.coefficients(w))
            layer.bias_coefficients.copy_(layer.bias_space.coefficients(b.reshape(-1, 1)))
    return model


def _orthonormal_columns(columns: torch.Tensor) -> torch.Tensor:
    if columns.shape[1] == 0:
        return columns
    q, r = torch.linalg.qr(columns)
    rank = int((r.diagonal().abs() > 1e-10 * r.diagonal().abs().max()).sum())
    if rank < columns.shape[1]:  # not expected for hom bases; keep an orthonormal spanning set
        u, s, _ = torch.linalg.svd(columns, full_matrices=False)
        return u[:, s > 1e-10 * s.max()]
    return q


class EquivariantSubspace:
    """E_ρ: the parameters θ of the MLP rep_in -> hidden_reps -> rep_out that are equivariant.

    ``basis`` is an orthonormal (D, dim) float64 matrix whose columns span E_ρ, so θ = B z is the
    orthogonal parameterisation and B Bᵀ the orthogonal projector (equal to the Reynolds
    average (1/|G|) Σ_g T_g of the parameter action ``action(g)`` for orthogonal reps).
    """

    def __init__(self, rep_in: Rep, hidden_reps: Sequence[Rep], rep_out: Rep) -> None:
        if isinstance(hidden_reps, Rep):
            hidden_reps = [hidden_reps]
        self.reps = [rep_in, *hidden_reps, rep_out]
        for r in self.reps:
            if not isinstance(r, Rep):
                raise TypeError(f"expected Rep objects, got {type(r).__name__}")
            if r.group != rep_in.group:
                raise ValueError(f"all reps must be of one group: {rep_in.group!r} and "
                                 f"{r.group!r}")
        self.group = rep_in.group
        self.widths = tuple(r.dim for r in self.reps)
        blocks = []
        for a, b in itertools.pairwise(self.reps):
            w_basis = hom(a, b).basis.reshape(-1, b.dim * a.dim).T  # (o*i, k)
            b_basis = fixed_space(b).basis.reshape(-1, b.dim).T  # (o, k_b)
            blocks += [w_basis, b_basis]
        self.basis = _orthonormal_columns(torch.block_diag(*blocks).double())

    @property
    def hidden_reps(self) -> list[Rep]:
        return self.reps[1:-1]

    @property
    def dim(self) -> int:
        """dim E_ρ."""
        return int(self.basis.shape[1])

    @property
    def n_params(self) -> int:
        """D, the number of MLP parameters."""
        return int(self.basis.shape[0])

    def layout(self, activation: str = "tanh") -> MLPLayout:
        """The plain MLP layout of this architecture."""
        return MLPLayout(self.widths, activation)

    def _check(self, theta: torch.Tensor) -> torch.Tensor:
        if not isinstance(theta, torch.Tensor) or theta.shape[-1] != self.n_params:
            got = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__
            raise ValueError(f"expected θ of shape (..., {self.n_params}) for widths "
                             f"{self.widths}, got {got}")
        return theta.to(torch.float64)

    def coordinates(self, theta: torch.Tensor) -> torch.Tensor:
        """z = Bᵀ θ: coordinates of the projection of θ in the orthonormal basis."""
        return self._check(theta) @ self.basis

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """θ = B z."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"expected coordinates of shape (..., {self.dim}), "
                             f"got {tuple(z.shape)}")
        return z.to(torch.float64) @ self.basis.T

    def project(self, theta: torch.Tensor) -> torch.Tensor:
        """The orthogonal projection of θ onto E_ρ."""
        return self.embed(self.coordinates(theta))

    def distance(self, theta: torch.Tensor) -> float:
        """||θ − Π θ|| / ||θ||: how far θ is from E_ρ, relative to its size."""
        theta = self._check(theta)
        norm = float(theta.norm())
        return float((theta - self.project(theta)).norm()) / norm if norm > 0 else 0.0

    def complement(self) -> torch.Tensor:
        """An orthonormal (D, D − dim) basis of the non-equivariant directions E_ρ^⊥."""
        q, _ = torch.linalg.qr(self.basis, mode="complete")
        return q[:, self.dim :]

    def action(self, g: np.ndarray) -> torch.Tensor:
        """T_g (D, D): W_l -> ρ_l(g) W_l ρ_{l-1}(g)ᵀ, b_l -> ρ_l(g) b_l (θ is fixed by every
        T_g exactly when θ ∈ E_ρ)."""
        mats = [torch.from_numpy(r.matrix(g)) for r in self.reps]
        blocks = []
        for m_in, m_out in itertools.pairwise(mats):
            blocks += [torch.kron(m_out, m_in), m_out]
        return torch.block_diag(*blocks).double()

    def reynolds(self, elements: np.ndarray | None = None) -> torch.Tensor:
        """(1/|G|) Σ_g T_g over ``elements`` (default: every element of the finite group)."""
        els = self.group.elements() if elements is None else elements
        return torch.stack([self.action(g) for g in els]).mean(dim=0)

    def __repr__(self) -> str:
        names = " -> ".join(repr(r) for r in self.reps)
        return f"EquivariantSubspace({names}, dim={self.dim} of {self.n_params})"
