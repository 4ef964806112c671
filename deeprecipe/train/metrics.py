"""Metrics from logits and labels: top-k accuracy, confusion matrix, per-class precision/recall/F1."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return int((top == labels.view(-1, 1)).any(dim=1).sum())


def classification_summary(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Confusion matrix and per-class precision/recall/F1/support (scikit-learn)."""
    pred = probs.argmax(1)
    idx = list(range(len(classes)))
    cm = confusion_matrix(labels, pred, labels=idx)
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, c in enumerate(classes)}
    return {"confusion": cm.tolist(), "per_class": per_class}
