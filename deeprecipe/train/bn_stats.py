"""Batch-norm re-estimation: recompute the running statistics of a trained network on clean training data.

During training, BatchNorm keeps an exponential average (momentum 0.1) of per-batch statistics of weights that
were still moving, measured on augmented batches; at small batch sizes each of those batch estimates is noisy.
Re-estimating after training (as `torch.optim.swa_utils.update_bn` does for averaged weights) replaces them by
an equal-weight average over the training set seen through the final weights, without augmentation.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running mean/var and average them over `batches` (equal weight per batch);
    returns the number of images seen. Only the BatchNorm layers run in training mode, so dropout stays off
    and nothing but the running statistics changes."""
    norms = batch_norms(model)
    if not norms:
        return 0
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average instead of an exponential one
        m.train()
    seen = 0
    try:
        for x in batches:
            model(x)
            seen += x.shape[0]
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return seen
