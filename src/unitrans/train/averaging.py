"""Weight averaging: of a run's last steps (tail averaging), and of a run with its init (WiSE-FT).

Tail averaging of the trainable weights (checkpoint averaging, Schmidt et al. ACL 2023, "Free Lunch").

Zero-shot cross-lingual scores move by a point or more between seeds, and no target dev set may pick a
checkpoint. Averaging the weights over the last part of a run is a model-selection-free way to land in a
flatter region, which Schmidt et al. found to help zero-shot NER transfer consistently. Here the average is
the uniform mean of the weights after each of the last `share` of optimizer steps: one fp32 add per
trainable parameter and step, no extra forward pass. Written by hand because torch's `AveragedModel`
deep-copies the whole model, frozen embeddings included (about seven times the trainable weights for
me5-small). On Θsrc with the paper's linear decay it lost on English dev (benchmarks/README.md, "Tail
averaging"), so it is off by default.

Blending with the init (WiSE-FT, Wortsman et al. CVPR 2022; "model soups"): a model fine-tuned from a
checkpoint stays in that checkpoint's basin, and the mean of the two weight sets keeps what each knows.
UniTrans's quick student starts from Θteach and one epoch of self-distillation moves it ~2 points below Θteach
on an English stand-in with no language gap; the blend (`TrainConfig.merge_init`) is the remedy tried there.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["TailAverage", "blend_into", "trainable_copy"]


class TailAverage:
    """Uniform mean of the trainable weights after each of the last `share` of `total` steps."""

    def __init__(self, model: nn.Module, total: int, share: float) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.steps = max(1, math.ceil(share * total))
        self.first = total - self.steps + 1  # the first step (counted from 1) whose weights are averaged
        self.count = 0
        self.sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in self.params.items()}

    @torch.no_grad()
    def update(self, done: int) -> None:
        """Call after optimizer step number `done` (1-based); adds the weights if the step is in the tail."""
        if done < self.first:
            return
        for name, p in self.params.items():
            self.sums[name].add_(p.detach().float())
        self.count += 1

    @torch.no_grad()
    def averaged(self) -> dict[str, torch.Tensor]:
        if self.count == 0:
            raise RuntimeError("no step of the averaging tail has been seen")
        return {n: s / self.count for n, s in self.sums.items()}

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite `model`'s trainable weights with the average (names must match)."""
        params = dict(model.named_parameters())
        for name, value in self.averaged().items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first, "count": self.count, "sums": {n: s.cpu() for n, s in self.sums.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; checked whole before anything changes, so a misfit leaves no half state."""
        if state["first"] != self.first:
            raise ValueError("the saved average belongs to another schedule")
        sums = state["sums"]
        if set(sums) != set(self.sums):
            raise ValueError("the saved average covers other weights")
        for name, value in sums.items():
            if not isinstance(value, torch.Tensor) or value.shape != self.sums[name].shape:
                raise ValueError(f"the saved average of {name} has the wrong shape")
        self.count = int(state["count"])
        for name, value in sums.items():
            self.sums[name].copy_(value)


@torch.no_grad()
def trainable_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """An fp32 copy of the trainable weights (taken before training: the init's side of a blend)."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def blend_into(model: nn.Module, init: dict[str, torch.Tensor], share: float) -> None:
    """θ := (1 − share)·θ + share·θ_init for every weight in `init` (names must match `model`'s)."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    params = dict(model.named_parameters())
    if set(init) - set(params):
        raise ValueError(f"init weights the model lacks: {sorted(set(init) - set(params))[:3]}")
    for name, value in init.items():
        p = params[name]
        mixed = p.detach().float() * (1 - share) + value.to(p.device) * share
        p.copy_(mixed.to(p.dtype))
