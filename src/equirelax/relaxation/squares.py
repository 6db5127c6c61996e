"""The squared penalty terms of a dense free weight on a few rows, as one autograd node.

For a free term W x (no bias) and generators A_k acting on inputs and B_k on outputs, the
penalties need Σ_k ||W A_k x − B_k W x||² and ||W x||² summed over rows x. On the few rows of a
sketch (p = 16 rows of SᵀX) their arithmetic is small, and what a training step pays for is the
number of tensor operations recorded and differentiated. Here the forward is one matmul of W
with the rows and their images, one gather and two dot products; the backward is the gradient
for W in closed form (one scatter-add and one matmul), instead of the dozen nodes autograd
would record for the same expression.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from equirelax.relaxation.actions import StackedMatrixMap


class _LinearSquares(torch.autograd.Function):
    """(lie², norm²) of the rows for weight W; only W receives a gradient."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: torch.Tensor, stack_in: StackedMatrixMap,
                stack_out: StackedMatrixMap) -> tuple[torch.Tensor, torch.Tensor]:
        m, d_out = rows.shape[0], weight.shape[0]
        images = stack_in(rows)  # (m, K + 1, d_in): each row, then its images
        y = torch.mm(images.reshape(-1, images.shape[-1]), weight.T).reshape(m, -1, d_out)
        wx = y[:, 0]
        residual = y[:, 1:] - stack_out(wx)
        flat_r, flat_w = residual.reshape(-1), wx.reshape(-1)
        ctx.stack_out = stack_out
        ctx.save_for_backward(images, residual, wx)
        return torch.dot(flat_r, flat_r), torch.dot(flat_w, flat_w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lie: torch.Tensor, grad_norm: torch.Tensor):
        images, residual, wx = ctx.saved_tensors
        # d/dy of the two sums: 2 g r on the image rows; on the rows themselves 2 g' Wx minus
        # the residuals carried back through the output action (its transpose)
        e = torch.empty(wx.shape[0], images.shape[1], wx.shape[1], dtype=wx.dtype,
                        device=wx.device)
        torch.mul(residual, 2.0 * grad_lie, out=e[:, 1:])
        e[:, 0] = wx * (2.0 * grad_norm) - ctx.stack_out.adjoint(e[:, 1:])
        grad_w = torch.mm(e.reshape(-1, e.shape[-1]).T, images.reshape(-1, images.shape[-1]))
        return grad_w, None, None, None


def linear_squares(weight: torch.Tensor, rows: torch.Tensor, stack_in: StackedMatrixMap,
                   stack_out: StackedMatrixMap) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_k ||W A_k x − B_k W x||² and ||W x||² over the rows x of ``rows`` (m, d_in).

    ``stack_in`` maps rows to (m, K + 1, d_in), the rows and their K images (identity first);
    ``stack_out`` maps outputs to their K images (m, K, d_out). The rows are data (no gradient);
    the weight gets its gradient in closed form. Differentiable once: for higher derivatives,
    compiled code or ``torch.func`` transforms, callers evaluate the same expression with
    ordinary operations.
    """
    if rows.requires_grad:
        raise ValueError("linear_squares takes rows without gradient (detach them)")
    return _LinearSquares.apply(weight, rows, stack_in, stack_out)
