"""Exponential moving average of the weights (Polyak averaging), via torch.optim.swa_utils.

The average also covers buffers (BatchNorm running statistics), so the EMA model can be evaluated
as it is, without re-estimating statistics.
"""
from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
