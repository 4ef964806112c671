"""Regularisers applied around the optimizer step: L1/L2 penalties in the loss, max-norm, gradient clipping.

Weight decay proper (decoupled, AdamW-style, or coupled for SGD/Adam) lives in the optimizer; the L2
here is the textbook penalty ½·λ·‖w‖² added to the loss, so the two can be compared side by side.
"""
from __future__ import annotations

import torch
from torch import nn


def weight_tensors(model: nn.Module):
    """Trainable weights with ≥ 2 dimensions: biases and norm parameters are left alone, as with weight decay."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim > 1]


def loss_penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | float:
    """λ₁·Σ|w| + ½·λ₂·Σw² over the weight tensors (0.0 when both are off)."""
    if not (l1 or l2):
        return 0.0
    total = 0.0
    for p in weight_tensors(model):
        if l1:
            total = total + l1 * p.abs().sum()
        if l2:
            total = total + 0.5 * l2 * p.pow(2).sum()
    return total


@torch.no_grad()
def apply_max_norm(model: nn.Module, c: float) -> None:
    """Rescale each unit's incoming weight vector to norm ≤ c (Srivastava et al. 2014), after every step."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            w = m.weight
            norms = w.reshape(w.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            scale = (c / norms).clamp(max=1.0)
            w.mul_(scale.view(-1, *([1] * (w.ndim - 1))))


def clip_gradients(params, clip_norm: float | None, clip_value: float | None) -> None:
    """Clip by global norm, then by value; either may be off."""
    params = [p for p in params if p.grad is not None]
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    if clip_value:
        torch.nn.utils.clip_grad_value_(params, clip_value)
