"""All gradients of the trainable parameters in one flat buffer.

On a CPU every tensor op is a parallel region, and with ~150 trainable tensors, zeroing, norming and
clipping gradients tensor by tensor costs hundreds of thread hand-offs per step (very visible when the
cores are shared). With every `.grad` a view into one buffer these become three ops. Autograd accumulates
into an existing `.grad` in place, so the views stay views; `FlatGrads.check` verifies that after the
first backward and the trainer falls back to per-tensor clipping if not.
"""

from __future__ import annotations

import torch


def views(buffer: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of the flat `buffer` shaped like each of `params`, in order."""
    out, offset = [], 0
    for p in params:
        out.append(buffer[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


class FlatGrads:
    """Owns the gradient buffer of `params`; call `zero()` instead of `optimizer.zero_grad()`."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        total = sum(p.numel() for p in params)
        first = params[0]
        self.buffer = torch.zeros(total, dtype=first.dtype, device=first.device)
        for p, view in zip(params, views(self.buffer, params), strict=True):
            p.grad = view

    def check(self) -> bool:
        """True if every `.grad` still lives in the buffer."""
        start = self.buffer.untyped_storage().data_ptr()
        return all(p.grad is not None and p.grad.untyped_storage().data_ptr() == start for p in self.params)

    def zero(self) -> None:
        self.buffer.zero_()

    def clip_(self, max_norm: float) -> torch.Tensor:
        """Scale gradients so their global L2 norm is at most `max_norm` (as `clip_grad_norm_`)."""
        norm = torch.linalg.vector_norm(self.buffer)
        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        self.buffer.mul_(coef)
        return norm
