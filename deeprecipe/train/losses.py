"""Losses: cross-entropy with label smoothing, soft targets (MixUp/CutMix), distillation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def smoothed_loss_floor(smoothing: float, num_classes: int | None) -> float:
    """The least cross-entropy a perfect model reaches against label-smoothed targets: their entropy
    (≈ 0.50 for smoothing 0.1 and 10 classes; 10 classes when the count is unknown)."""
    c = num_classes if num_classes and num_classes > 1 else 10
    if smoothing <= 0:
        return 0.0
    off = smoothing / c
    on = 1.0 - smoothing + off
    return -(on * math.log(on) + (c - 1) * off * math.log(off))


def classification_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for integer labels (B,) or soft targets (B, C) that sum to 1."""
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      temperature: float, alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """(1-α)·CE(student, labels) + α·T²·KL(softmax(t/T) ‖ softmax(s/T)) (Hinton et al. 2015)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    hard = classification_loss(student_logits, target, label_smoothing)
    return (1.0 - alpha) * hard + alpha * soft
