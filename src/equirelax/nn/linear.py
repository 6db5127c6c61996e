"""EquivariantLinear: a linear layer whose weight lives in hom(rep_in, rep_out)."""

from __future__ import annotations

import torch
from torch import nn

from equirelax.homspace.space import HomSpace, fixed_space, hom
from equirelax.reps.base import Rep


def check_features(x: torch.Tensor, rep: Rep, where: str) -> None:
    """Fail early, naming both sizes, when the last axis of ``x`` does not match ``rep``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != rep.dim:
        got = tuple(x.shape)
        raise ValueError(
            f"{where} expects inputs of shape (..., {rep.dim}) for {rep!r}, got shape {got}"
        )


class EquivariantLinear(nn.Module):
    """y = W x + b with W equivariant (W ∈ hom(rep_in, rep_out)) and b fixed by rep_out.

    The trainable parameters are the coefficients of W and b in their bases. The dense ``weight``
    is materialised per forward in training (a gather for orbit bases) and cached in eval mode;
    the cache is not part of the state_dict, which stays the same in train and eval.
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, bias: bool = True, gain: float = 1.0) -> None:
        super().__init__()
        self.rep_in, self.rep_out = rep_in, rep_out
        self.hom: HomSpace = hom(rep_in, rep_out)
        self.coefficients = nn.Parameter(torch.empty(self.hom.dim))
        self.bias_space: HomSpace | None = fixed_space(rep_out) if bias else None
        if self.bias_space is not None:
            self.bias_coefficients = nn.Parameter(torch.empty(self.bias_space.dim))
        else:
            self.register_parameter("bias_coefficients", None)
        self.gain = gain
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None
        self.reset_parameters()

    @property
    def in_features(self) -> int:
        return self.rep_in.dim

    @property
    def out_features(self) -> int:
        return self.rep_out.dim

    def reset_parameters(self) -> None:
        """Variance-preserving init: E||W x||^2 ≈ gain^2 · d_out for unit-variance inputs."""
        with torch.no_grad():
            self.coefficients.normal_(0.0, self.gain * self.hom.init_std())
            if self.bias_coefficients is not None:
                self.bias_coefficients.zero_()
        self._cache = None

    def _materialise(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.hom.weight(self.coefficients)
        b = None
        if self.bias_space is not None:
            b = self.bias_space.weight(self.bias_coefficients).reshape(-1)
        return w, b

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dense (d_out, d_in) weight and (d_out,) bias.

        Cached in eval mode when no gradient to the coefficients is needed (under
        ``torch.no_grad()`` or with frozen parameters): inference then costs one matmul.
        """
        if self.training or (torch.is_grad_enabled() and self.coefficients.requires_grad):
            self._cache = None
            return self._materialise()
        params = [self.coefficients] + (
            [self.bias_coefficients] if self.bias_coefficients is not None else []
        )
        stamp = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if self._cache is None or self._cache[0] != stamp:
            with torch.no_grad():
                w, b = self._materialise()
            self._cache = (stamp, w, b)
        return self._cache[1], self._cache[2]

    @property
    def weight(self) -> torch.Tensor:
        """The dense equivariant weight matrix (d_out, d_in)."""
        return self.weight_and_bias()[0]

    @property
    def bias(self) -> torch.Tensor | None:
        """The dense equivariant bias (d_out,), or None."""
        return self.weight_and_bias()[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.rep_in, type(self).__name__)
        w, b = self.weight_and_bias()
        return nn.functional.linear(x, w, b)

    def export(self) -> nn.Linear:
        """A plain ``torch.nn.Linear`` computing the same map (for deployment)."""
        w, b = self.weight_and_bias()
        lin = nn.Linear(self.in_features, self.out_features, bias=b is not None)
        lin = lin.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b)
        return lin

    def extra_repr(self) -> str:
        return (
            f"{self.rep_in!r} -> {self.rep_out!r}, hom dim={self.hom.dim}, "
            f"bias={self.bias_space is not None}"
        )
