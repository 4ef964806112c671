"""Losses: cross-entropy with label smoothing, soft targets (MixUp/CutMix), distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
