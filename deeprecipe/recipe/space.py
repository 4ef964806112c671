"""The space `recipe` searches when `search.space` is not given, as the lectures lay it out.

Coarse stage: the learning rate around the range test's suggestion × weight decay (log-uniform, with 0 as
one more choice), a few epochs each. Refine stage: a narrower box around the coarse winner, trained longer —
and when the winner's curves read overfitting, the regularisation knobs too: label smoothing, dropout and
augmentation strength.
"""
from __future__ import annotations

import json
from typing import Any

from ..config import Config
from ..models import model_knobs

# Decoupled weight decay (AdamW) shrinks weights by lr × wd per step, so the same effect takes values about
# ten times larger than the L2 penalty the other optimizers add to the gradient.
DECAY_RANGE = {"coupled": (1e-5, 1e-2), "decoupled": (1e-4, 1e-1)}
OVERFITTING = "overfitting"


def decay_range(cfg: Config) -> tuple[float, float]:
    """The coarse weight-decay range: recipe.weight_decay, else by optimizer, widened to hold the configured value."""
    low, high = cfg.recipe.weight_decay or DECAY_RANGE["decoupled" if cfg.optim.name == "adamw" else "coupled"]
    wd = cfg.optim.weight_decay
    return (min(low, wd), max(high, wd)) if wd > 0 else (low, high)


def coarse_space(cfg: Config, suggestion: float) -> dict[str, Any]:
    """optim.lr in [suggestion ÷ span, suggestion × span] (widened to hold the configured lr) × weight decay."""
    span = cfg.recipe.lr_span
    low = min(suggestion / span, cfg.optim.lr) if cfg.optim.lr > 0 else suggestion / span
    high = max(suggestion * span, cfg.optim.lr)
    wd_low, wd_high = decay_range(cfg)
    return {"optim.lr": {"log": [low, high]},
            "optim.weight_decay": {"log": [wd_low, wd_high], "zero": True}}


def augment_levels(augment: list) -> list[str]:
    """Augmentation strength as three choices: the configured list, then RandAugment added mild and strong.
    Each choice is the list as a YAML string (Optuna's categorical values are plain scalars)."""
    base = [a for a in augment if not (isinstance(a, str) and a.startswith("randaugment"))]
    return [json.dumps(augment), json.dumps(base + ["randaugment:n=1,m=5"]), json.dumps(base + ["randaugment:n=2,m=9"])]


def regularisation_space(cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """The knobs against overfitting, and the configured value of each (the refine stage's first trial)."""
    space: dict[str, Any] = {"regularize.label_smoothing": {"uniform": [0.0, 0.2]}}
    start: dict[str, Any] = {"regularize.label_smoothing": min(cfg.regularize.label_smoothing, 0.2)}
    if "dropout" in model_knobs(cfg.model.name):
        space["model.dropout"] = {"uniform": [0.0, 0.5]}
        start["model.dropout"] = min(cfg.model.dropout or 0.0, 0.5)
    levels = augment_levels(list(cfg.data.augment))
    space["data.augment"] = {"choice": levels}
    start["data.augment"] = levels[0]
    return space, start


def refine_additions(verdict: str | None, cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the refine stage adds, given the diagnosis of the coarse winner's curves: the regularisation
    knobs when it reads overfitting, nothing otherwise (more regularisation would only slow a fit)."""
    return regularisation_space(cfg) if verdict == OVERFITTING else ({}, {})
