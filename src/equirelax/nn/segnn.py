"""SEGNN layers (Brandstetter, Hesselink, van der Pol, Bekkers & Welling, ICLR 2022).

The whole model for charged N-body is :class:`equirelax.models.SEGNN`; this module holds its
steerable layers and message-passing layer, and describes the model they make up.

Steerable E(3)-equivariant graph network built on e3nn. Node features are steerable vectors
(direct sums of O(3) irreps, e.g. ``32x0e+32x1o``); every map is a *steerable linear layer*:
a learnable tensor product of the feature with an attribute (spherical harmonics of a
geometric quantity), linear in the feature, followed in most places by a gated nonlinearity.

N-body setting (as in the paper):

* node input ``2x1o+1x0e``: position relative to the graph's centroid, velocity, speed;
* edge attribute: spherical harmonics (``lmax_attr``, "integral" normalisation) of
  ``x_i - x_j``; node attribute: mean of the incoming edge attributes plus the spherical
  harmonics of the velocity; extra message scalars ``2x0e``: distance and ``q_i q_j``;
* embedding, ``num_layers`` message-passing layers (two gated message maps, sum aggregation,
  a gated and a plain node-update map, residual), a two-map head to ``1x1o`` that is added to
  the input position.

Centring is per graph (subtract each graph's centroid). The upstream implementation averages
over the three coordinates of each node instead, which breaks rotation equivariance; this one
is E(3)-equivariant: rotating/reflecting and translating the input positions (and rotating
the velocities) moves the predicted positions the same way.

The node-update maps of every layer (``SEGNNLayer.update_gated`` and ``SEGNNLayer.update``)
are separate submodules with ``irreps_in``/``irreps_out``/``irreps_attr`` (e3nn ``Irreps``)
and the call ``module(x, node_attr)``; they are linear in ``x`` before the gate. Those are the
layers the constraint-relaxation paper relaxes; :meth:`SEGNN.node_update_layers` lists them.

Every steerable map declares the O(3) actions on its feature input and output as equirelax
representations (``rep_in``/``rep_out``, built from its irreps), so it can be checked and relaxed
like any equivariant layer. The maps that the paper does not relax (embedding, message maps,
head, and the linear part inside a gated map) are built with ``relaxable=False``, so
``equirelax.relax(SEGNN())`` relaxes exactly the node-update maps; a user can still pick any
other map by name (``relax(model, layers=[...])``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn

from equirelax.groups import lie as lie_groups
from equirelax.nn.module import EquivariantModule, check_features
from equirelax.reps import Rep, irreps

__all__ = [
    "SEGNNLayer",
    "SteerableGatedLinear",
    "SteerableLinear",
    "balanced_hidden_irreps",
]


def balanced_hidden_irreps(channels_per_degree: int, lmax: int) -> o3.Irreps:
    """``c x 0e + c x 1o + ... + c x lmax``: the same multiplicity for every degree, with the
    parity of spherical harmonics (e.g. ``32x0e+32x1o`` for ``c = 32, lmax = 1``)."""
    if channels_per_degree < 1 or lmax < 0:
        raise ValueError(
            "channels_per_degree must be >= 1 and lmax >= 0, got "
            f"channels_per_degree={channels_per_degree}, lmax={lmax}"
        )
    return o3.Irreps([(channels_per_degree, (l, (-1) ** l)) for l in range(lmax + 1)])


@lru_cache(maxsize=32)
def _o3_rep(spec: str) -> Rep:
    """The O(3) representation on features laid out as the e3nn irreps ``spec``."""
    return irreps(lie_groups.O(3), spec)


class _Steerable(EquivariantModule):
    """A steerable map ``f(x, attr)``: ``reps_in`` are O(3) on ``irreps_in`` and
    ``irreps_attr``, ``rep_in`` (what relaxation acts on, the feature ``x``) the first of them,
    ``rep_out`` O(3) on ``irreps_out``; set by :meth:`_declare` once the irreps are known."""

    irreps_in: o3.Irreps
    irreps_attr: o3.Irreps
    irreps_out: o3.Irreps

    def _declare(self) -> None:
        self.reps_in = (_o3_rep(str(self.irreps_in)), _o3_rep(str(self.irreps_attr)))
        self.rep_in = self.reps_in[0]
        self.rep_out = _o3_rep(str(self.irreps_out))


class SteerableLinear(_Steerable):
    """Steerable linear layer ``x -> TP(x, attr) + b``: linear in x, conditioned on attr.

    The tensor product is e3nn's fully connected one, ``irreps_in x irreps_attr ->
    irreps_out``, with one learnable weight per path; a bias is added to the even scalar
    (``0e``) outputs only, which keeps the map equivariant. Input ``x`` (..., irreps_in.dim),
    ``attr`` (..., irreps_attr.dim).

    ``rep_in``/``rep_out``: the O(3) representations of ``irreps_in``/``irreps_out`` (the map is
    equivariant when ``attr`` transforms by its own irreps too); ``relaxable=False`` keeps
    ``equirelax.relax`` from picking the layer by itself.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        *,
        relaxable: bool = True,
    ) -> None:
        super().__init__()
        self.relaxable = relaxable
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_attr = o3.Irreps(irreps_attr)
        self._declare()
        self.tp = o3.FullyConnectedTensorProduct(
            self.irreps_in, self.irreps_attr, self.irreps_out
        )
        if self.tp.weight_numel == 0:
            raise ValueError(
                f"no tensor-product path from {self.irreps_in} x {self.irreps_attr} to "
                f"{self.irreps_out}"
            )
        # Parameterised like nn.Linear (as the reference SEGNN does): each output irrep's paths
        # have fan_in = Σ mul_in1 · mul_in2 over the paths into it; weights are drawn from
        # U(±1/√fan_in) and the output is multiplied by √fan_in, undoing e3nn's own 1/√fan_in
        # path normalisation. The forward scale is unchanged, but Adam's steps, which do not
        # depend on the weight scale, now move the weights by the same relative amount as an
        # nn.Linear of the same fan-in (with e3nn's N(0, 1) weights they moved √(3 fan_in) times
        # less, and SEGNN trained far more slowly than the reference).
        fan_in = [0] * len(self.irreps_out)
        for ins in self.tp.instructions:
            fan_in[ins.i_out] += self.irreps_in[ins.i_in1].mul * self.irreps_attr[ins.i_in2].mul
        scale = torch.ones(self.irreps_out.dim)
        mask = torch.zeros(self.irreps_out.dim, dtype=torch.bool)
        bound: list[float] = []
        for k, ((mul, ir), span) in enumerate(zip(self.irreps_out, self.irreps_out.slices())):
            if fan_in[k]:
                scale[span] = fan_in[k] ** 0.5
            if ir.l == 0 and ir.p == 1:
                mask[span] = True
                bound += [fan_in[k] ** -0.5 if fan_in[k] else 0.0] * mul
        with torch.no_grad():
            for _, ins, weight in self.tp.weight_views(yield_instruction=True):
                limit = fan_in[ins.i_out] ** -0.5
                weight.uniform_(-limit, limit)
        self.register_buffer("output_scale", scale, persistent=False)
        self.register_buffer("bias_mask", mask, persistent=False)
        bound_t = torch.tensor(bound, dtype=torch.get_default_dtype())
        self.bias = nn.Parameter((2 * torch.rand(len(bound)) - 1) * bound_t)

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, f"{type(self).__name__} x ({self.irreps_in})")
        check_features(attr, self.reps_in[1],
                       f"{type(self).__name__} attr ({self.irreps_attr})")
        out = self.tp(x, attr) * self.output_scale.to(x.dtype)
        if self.bias.numel():
            full = torch.zeros(self.irreps_out.dim, dtype=out.dtype, device=out.device)
            out = out + full.masked_scatter(self.bias_mask, self.bias.to(out.dtype))
        return out


class SteerableGatedLinear(_Steerable):
    """Steerable linear layer followed by a gated nonlinearity.

    The linear part (``self.linear``) maps ``irreps_in`` to scalars, one gate scalar per
    non-scalar output irrep, and the non-scalar outputs; the gate applies SiLU to even scalars
    (tanh to odd ones) and multiplies each non-scalar irrep by the sigmoid of its gate. The
    result has ``irreps_out`` (same order as given, after ``simplify``).

    The gated map is one unit: it declares ``rep_in``/``rep_out`` (O(3) on ``irreps_in`` and
    ``irreps_out``), and its inner linear part does not offer itself for relaxation, so a relaxed
    term is added after the gate, as in the constraint-relaxation paper's SEGNN.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
        *,
        relaxable: bool = True,
    ) -> None:
        super().__init__()
        self.relaxable = relaxable
        irreps_out = o3.Irreps(irreps_out).simplify()
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
        non_scalar = [ir.l > 0 for _, ir in irreps_out]
        if non_scalar != sorted(non_scalar):
            raise ValueError(f"irreps_out must list scalars before non-scalars, got {irreps_out}")
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(
            scalars,
            [nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        self.linear = SteerableLinear(
            irreps_in, self.gate.irreps_in, irreps_attr, relaxable=False
        )
        self.irreps_in = self.linear.irreps_in
        self.irreps_attr = self.linear.irreps_attr
        self.irreps_out = self.gate.irreps_out
        self._declare()

    def forward(self, x: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
        return self.gate(self.linear(x, attr))


class SEGNNLayer(nn.Module):
    """One SEGNN message-passing layer on a fixed set of directed edges.

    message: ``m_ij = message(message_gated([x_i, x_j, s_ij], a_ij), a_ij)`` with edge
    attribute ``a_ij`` and extra scalars ``s_ij``; aggregation by the sum over j;
    update: ``x_i + update(update_gated([x_i, sum_j m_ij], b_i), b_i)`` with node attribute b_i.

    Only the node-update maps (``update_gated``, ``update``) are relaxable; the message maps
    are built with ``relaxable=False``.
    """

    def __init__(
        self,
        hidden_irreps: o3.Irreps | str,
        edge_attr_irreps: o3.Irreps | str,
        node_attr_irreps: o3.Irreps | str,
        message_scalars: int = 2,
    ) -> None:
        super().__init__()
        hidden = o3.Irreps(hidden_irreps)
        extra = o3.Irreps(f"{message_scalars}x0e") if message_scalars else o3.Irreps("")
        self.hidden_irreps = hidden
        self.message_gated = SteerableGatedLinear(
            hidden + hidden + extra, hidden, edge_attr_irreps, relaxable=False
        )
        self.message = SteerableGatedLinear(hidden, hidden, edge_attr_irreps, relaxable=False)
        self.update_gated = SteerableGatedLinear(hidden + hidden, hidden, node_attr_irreps)
        self.update = SteerableLinear(hidden, hidden, node_attr_irreps)

    def forward(
        self,
        x: torch.Tensor,
        node_attr: torch.Tensor,
        edge_attr: torch.Tensor,
        message_scalars: torch.Tensor,
        receivers: torch.Tensor,
        senders: torch.Tensor,
    ) -> torch.Tensor:
        """Features (M, hidden) -> (M, hidden); edges from ``senders`` to ``receivers``."""
        inputs = torch.cat([x[receivers], x[senders], message_scalars], dim=-1)
        m = self.message(self.message_gated(inputs, edge_attr), edge_attr)
        aggregated = torch.zeros_like(x).index_add_(0, receivers, m)
        update = self.update_gated(torch.cat([x, aggregated], dim=-1), node_attr)
        return x + self.update(update, node_attr)
