"""Exponential moving average of the weights (Polyak averaging), via torch.optim.swa_utils.

The decay warms up with the number of updates, min(decay, (1 + n) / (10 + n)), as TensorFlow's
ExponentialMovingAverage(num_updates=…) and timm's warm-up do: a fixed decay of 0.99 over a 30-step run
would leave the average mostly at the first weights it saw. With the warm-up the average follows the
weights closely early on and only later averages over the last ~1 / (1 - decay) steps.

BatchNorm buffers: floating-point buffers (running mean and variance) are averaged with the same decay,
as timm's ModelEmaV2/V3 do by default; integer ones (num_batches_tracked) are copied, as ModelEmaV3 does.
Averaging rather than copying keeps the statistics paired with the averaged weights they normalise: the
running statistics of the latest raw weights describe a different network than the average of many.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, updates: int) -> float:
    """The decay used to fold in the model when the average already holds `updates` of them (AveragedModel
    copies the first model outright, so the first decay used is that for updates=1: 2/11)."""
    return min(decay, (1 + updates) / (10 + updates))


def warmed_up_ema(decay: float):
    """A `multi_avg_fn` for AveragedModel: EMA whose decay warms up with AveragedModel's update count."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        d = ema_decay(decay, int(n_averaged))
        if averaged[0].is_floating_point():  # tensors come grouped by dtype, so one check covers the group
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # counters such as num_batches_tracked: an average of counts means nothing
            torch._foreach_copy_(averaged, current)
    return update


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=warmed_up_ema(decay), use_buffers=True)
