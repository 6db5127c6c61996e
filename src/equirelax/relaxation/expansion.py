"""A layer's dense equivariant weight as one gather of its coefficients, inside the fused node.

A relaxed training step needs the dense W_eq of an :class:`~equirelax.nn.EquivariantLinear`
(it is summed with θ W). The hom space builds it with its own machinery: one gather for orbit
bases, but for the Schur blocks of SO(3)/O(3) irreps (:class:`BlockHomSpace`) one einsum and
one scatter per block, for the weight and for the bias, and the backward of each. The exact
layer never builds it (it applies the blocks); the relaxed one paid about as much for building
it as for its products.

In the bases equirelax uses, every entry of W_eq is a multiple of at most one coefficient:
W.flat[e] = s_e · c[j_e] (orbit bases: s = 1 everywhere; blocks between copies of one irrep:
s · I). :class:`CoefficientGather` finds (e, j, s) once, by evaluating the space's own
``weight`` at three coefficient vectors and checking the last one against the gather it read
from the first two, so the gather is exactly the space's map or is not used. The fused node
(:mod:`relaxation.fused`) then forms W_eq + θ W with one gather and one in-place add, and the
coefficients' gradient with one scatter-add.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: Above this many entries per coefficient on average, the scatter-add of the backward would
#: add long runs into the same slot (a serial chain); the hom space's own gather spreads them
#: (see ``homspace.space._OrbitGather``) and is used instead.
MAX_MEAN_ENTRIES = 128


class CoefficientGather:
    """W.flat[e] = s_e · c[j_e] on the entries e that depend on a coefficient (0 elsewhere).

    ``entries``: the positions e (None: every entry), ``index``: j per position, ``scale``: s
    per position (None: all 1); ``size``: the number of entries of W, ``dim``: of c. Only
    numpy arrays are kept (pickles stay small); their tensors are cached per device and dtype.
    """

    def __init__(self, entries: np.ndarray | None, index: np.ndarray, scale: np.ndarray | None,
                 size: int, dim: int) -> None:
        self.entries, self.index, self.scale = entries, index, scale
        self.size, self.dim = size, dim
        self._tensors: dict[tuple, tuple[torch.Tensor | None, ...]] = {}

    @classmethod
    def of(cls, weight: Callable[[torch.Tensor], torch.Tensor], dim: int
           ) -> CoefficientGather | None:
        """The gather of the linear map ``weight`` (coefficients (dim,) -> any shape), or None
        when some entry depends on more than one coefficient, or when
        coefficients have too many entries each for a plain scatter-add (see
        :data:`MAX_MEAN_ENTRIES`).

        Reads the scale s from c = 1 and the coefficient j from c = (1, 2, ..., dim), then
        checks a random c against the gather; an entry that mixes coefficients fails the check
        (almost surely), so a returned gather is the map itself.
        """
        if dim == 0:  # the zero map (e.g. the bias of outputs with no fixed vectors)
            size = weight(torch.zeros(0, dtype=torch.float64)).numel()
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, None, size, 0)
        with torch.no_grad():
            ones = weight(torch.ones(dim, dtype=torch.float64)).reshape(-1).numpy()
            ramp = weight(torch.arange(1, dim + 1, dtype=torch.float64)).reshape(-1).numpy()
            probe = torch.rand(dim, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0)) + 1.0
            target = weight(probe).reshape(-1).numpy()
        nonzero = np.flatnonzero(ones != 0)
        if nonzero.size > MAX_MEAN_ENTRIES * dim:
            return None
        index = np.rint(ramp[nonzero] / ones[nonzero]).astype(np.int64) - 1
        if index.size and (index.min() < 0 or index.max() >= dim):
            return None
        scale = ones[nonzero]
        guess = np.zeros_like(target)
        guess[nonzero] = scale * probe.numpy()[index]
        if not np.allclose(guess, target, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(target).max())):
            return None
        return cls(None if nonzero.size == ones.size else nonzero, index,
                   None if np.all(scale == 1.0) else scale, ones.size, dim)

    def tensors(self, device: torch.device, dtype: torch.dtype
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(entries, index, scale) as tensors on ``device`` (scale in ``dtype``), cached."""
        key = (device, dtype)
        found = self._tensors.get(key)
        if found is None:
            found = self._tensors[key] = (
                None if self.entries is None else torch.from_numpy(self.entries).to(device),
                torch.from_numpy(self.index).to(device),
                None if self.scale is None else torch.from_numpy(self.scale).to(device, dtype))
        return found  # type: ignore[return-value]

    def expand_add(self, coefficients: torch.Tensor, other: torch.Tensor | None = None,
                   alpha: float = 1.0) -> torch.Tensor:
        """The flat W(c) + alpha · ``other`` (flat, or None for W(c) alone), as a new tensor:
        no autograd (the fused node's forward)."""
        entries, index, scale = self.tensors(coefficients.device, coefficients.dtype)
        values = coefficients.index_select(0, index)
        if scale is not None:
            values.mul_(scale)
        if entries is None:
            return values if other is None else values.add_(other.reshape(-1), alpha=alpha)
        out = (coefficients.new_zeros(self.size) if other is None
               else torch.mul(other.reshape(-1), alpha))
        return out.index_add_(0, entries, values)

    def adjoint(self, grad: torch.Tensor) -> torch.Tensor:
        """The coefficients' gradient (dim,) for the gradient ``grad`` of W (any shape, as
        many entries as W): Σ_e s_e grad.flat[e] over the entries of each coefficient."""
        entries, index, scale = self.tensors(grad.device, grad.dtype)
        flat = grad.reshape(-1)
        if entries is not None:
            flat = flat.index_select(0, entries)
        if scale is not None:
            flat = flat * scale
        # scatter_add_ rather than index_add_: about twice as fast on the CPU for a 1-D target
        # (what the hom space's own gather uses in its backward)
        return flat.new_zeros(self.dim).scatter_add_(0, index, flat)

    def expand(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The flat W(c) in differentiable operations (the plain path of the fused node, when
        a second derivative is asked for)."""
        entries, index, scale = self.tensors(coefficients.device, coefficients.dtype)
        values = coefficients.index_select(0, index)
        if scale is not None:
            values = values * scale
        if entries is None:
            return values
        return coefficients.new_zeros(self.size).index_put((entries,), values)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tensors": {}}
