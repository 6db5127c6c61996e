"""e3nn's layers in ``relax``: ``o3.Linear`` relaxed as it is, tensor products on request.

Registered by :func:`register_e3nn_layers`, which the registry calls once e3nn is loaded (e3nn
stays an optional dependency: this module is imported only then).

``o3.Linear`` acts on features laid out as its ``irreps_in``/``irreps_out``, which are the O(3)
representations ``er.reps.irreps(O(3), ...)`` (e3nn's basis: ``D_from_matrix`` of ``1o`` is the
rotation matrix itself). Its weight is one flat parameter holding, instruction after instruction,
a (mul_in, mul_out) matrix ``w`` per pair of equal irreps; the block of the dense map between
those irreps is ``α · (wᵀ ⊗ I_{2l+1})``, with e3nn's path normalisation ``α`` (the instruction's
``path_weight``), and its biases sit on ``0e`` outputs. Hence the hooks:

* ``dense``: that (d_out, d_in) matrix and bias, differentiable in the layer's parameters, so the
  relaxed layer runs as one matmul with ``W_eq + θ W``;
* ``fold``: the inverse, for ``harden(mode="project")``: the equivariant part of the free term,
  block by block a multiple of the identity, goes back into the flat weight (divided by α).

The hardened layer is the same ``o3.Linear`` object, with its class and state_dict keys.

A tensor product ``tp(x, attr)`` is bilinear, so no dense map exists; it is relaxed as a map of
its first input with the second held fixed, ``tp(x, attr) + θ W x`` (the relaxed SEGNN of
Pertigkiozoglou et al. does this to its steerable layers): ``relax`` takes it only when ``layers=``
selects it, because which input is the feature is the model's choice.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from equirelax.relaxation.registry import register
from equirelax.reps.base import Rep
from equirelax.reps.spec import as_reps


def _irreps_reps(layer: nn.Module, irreps_in: o3.Irreps, irreps_out: o3.Irreps) -> tuple[Rep, Rep]:
    rep_in, rep_out = as_reps(
        irreps_in,
        irreps_out,
        names=("irreps_in", "irreps_out"),
        where=f"relax({type(layer).__name__})",
    )
    return rep_in, rep_out


def _linear_reps(layer: o3.Linear) -> tuple[Rep, Rep]:
    """O(3) on ``irreps_in`` and ``irreps_out``; refuses the layouts of ``f_in``/``f_out``."""
    if layer.weight.dim() > 1 and layer.internal_weights:
        raise ValueError(
            f"relax() handles o3.Linear on features (..., irreps.dim); {layer!r} was built with "
            f"f_in/f_out (weight of shape {tuple(layer.weight.shape)}): leave it out with "
            "relax(model, layers=...)"
        )
    return _irreps_reps(layer, layer.irreps_in, layer.irreps_out)


def _weight_instructions(layer: o3.Linear):
    """(instruction, offset in the flat weight) of each weight path, in e3nn's order."""
    offset = 0
    for ins in layer.instructions:
        if ins.i_in == -1:
            continue
        yield ins, offset
        offset += ins.path_shape[0] * ins.path_shape[1]


def _bias_instructions(layer: o3.Linear):
    """(instruction, offset in the flat bias) of each bias path, in e3nn's order."""
    offset = 0
    for ins in layer.instructions:
        if ins.i_in != -1:
            continue
        yield ins, offset
        offset += ins.path_shape[0]


def _own_weights(layer: o3.Linear) -> torch.Tensor:
    """The layer's flat weight; refuses layers that take their weights as forward inputs."""
    if not layer.internal_weights:
        raise ValueError(
            f"{layer!r} takes its weights as an input (internal_weights=False): it has no weight "
            "of its own to run fused with the free term, to fold into, or to put a prior on; "
            "relax it by the free term alone (harden(mode='drop'))"
        )
    return layer.weight


def _linear_dense(layer: o3.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The dense (d_out, d_in) weight and (d_out,) bias of the layer (None without biases)."""
    flat = _own_weights(layer)
    slices_in, slices_out = layer.irreps_in.slices(), layer.irreps_out.slices()
    w = flat.new_zeros(layer.irreps_out.dim, layer.irreps_in.dim)
    for ins, offset in _weight_instructions(layer):
        mul_in, mul_out = ins.path_shape
        if mul_in * mul_out == 0:
            continue
        path = flat[offset : offset + mul_in * mul_out].reshape(mul_in, mul_out)
        eye = torch.eye(layer.irreps_in[ins.i_in].ir.dim, dtype=flat.dtype, device=flat.device)
        rows, cols = slices_out[ins.i_out], slices_in[ins.i_in]
        block = path.T[:, None, :, None] * eye[None, :, None, :]  # wᵀ ⊗ I: (out, i, in, j)
        w[rows, cols] = w[rows, cols] + ins.path_weight * block.reshape(
            rows.stop - rows.start, cols.stop - cols.start
        )
    b = None
    biases = list(_bias_instructions(layer))
    if biases:
        b = flat.new_zeros(layer.irreps_out.dim)
        for ins, offset in biases:
            span = slices_out[ins.i_out]
            b[span] = b[span] + ins.path_weight * layer.bias[offset : offset + ins.path_shape[0]]
    return w, b


def _linear_fold(layer: o3.Linear, w: torch.Tensor, b: torch.Tensor | None) -> None:
    """Add an equivariant (W, b) into the layer's weight and bias (exactly its own function
    changes by x -> W x + b), refusing parts the layer cannot hold: blocks between irreps that
    no instruction connects, or a bias where the layer has none."""
    flat = _own_weights(layer)
    w = w.detach().to(torch.float64, copy=True)
    slices_in, slices_out = layer.irreps_in.slices(), layer.irreps_out.slices()
    delta = torch.zeros(flat.shape, dtype=torch.float64)
    held = torch.zeros_like(w)
    for ins, offset in _weight_instructions(layer):
        mul_in, mul_out = ins.path_shape
        rows, cols = slices_out[ins.i_out], slices_in[ins.i_in]
        if mul_in * mul_out == 0 or held[rows, cols].any():  # a repeated pair: one path holds it
            continue
        d = layer.irreps_in[ins.i_in].ir.dim
        block = w[rows, cols].reshape(mul_out, d, mul_in, d)
        c = torch.einsum("aibi->ab", block) / d  # the multiple of I_d in each (out, in) copy
        delta[offset : offset + mul_in * mul_out] = (c.T / ins.path_weight).reshape(-1)
        held[rows, cols] = torch.kron(c, torch.eye(d, dtype=torch.float64))
    _refuse_unheld("weight", w, held, layer)
    bias_delta = None
    if b is not None:
        b = b.detach().to(torch.float64, copy=True)
        bias_delta = torch.zeros(layer.bias.shape, dtype=torch.float64)
        held_b = torch.zeros_like(b)
        for ins, offset in _bias_instructions(layer):
            span = slices_out[ins.i_out]
            bias_delta[offset : offset + ins.path_shape[0]] = b[span] / ins.path_weight
            held_b[span] = b[span]
        _refuse_unheld("bias", b, held_b, layer)
    with torch.no_grad():
        flat.add_(delta.to(device=flat.device, dtype=flat.dtype))
        if bias_delta is not None and bias_delta.numel():
            layer.bias.add_(bias_delta.to(device=layer.bias.device, dtype=layer.bias.dtype))


def _refuse_unheld(what: str, value: torch.Tensor, held: torch.Tensor, layer: o3.Linear) -> None:
    missed = float((value - held).norm())
    if missed > 1e-9 * max(1.0, float(value.norm())):
        hint = (
            "build it with biases=True, or relax with free_bias=False"
            if what == "bias"
            else "its instructions leave out pairs of equal irreps; use harden(mode='drop')"
        )
        raise ValueError(
            f"cannot fold the equivariant {what} into {layer!r}: a part of norm {missed:.2e} "
            f"has no place among its parameters ({hint})"
        )


def _tensor_product_reps(layer: o3.TensorProduct) -> tuple[Rep, Rep]:
    """O(3) on the first input (``irreps_in1``, the features) and on ``irreps_out``."""
    return _irreps_reps(layer, layer.irreps_in1, layer.irreps_out)


def register_e3nn_layers() -> None:
    """Register ``o3.Linear`` (relaxed by ``relax(model)`` by itself) and ``o3.TensorProduct``
    and its subclasses (relaxed when ``layers=`` selects them), keeping registrations a user
    made before."""
    register(o3.Linear, reps=_linear_reps, dense=_linear_dense, fold=_linear_fold, replace=False)
    register(o3.TensorProduct, reps=_tensor_product_reps, by_default=False, replace=False)
