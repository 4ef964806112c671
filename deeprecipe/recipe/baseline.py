"""The configured settings as the search's baseline, and the guard that keeps them unless beaten beyond noise.

On a small validation set the best of a dozen trials is partly luck: with 19 validation images one image is
5 points, and the maximum of twelve noisy estimates sits well above the truth. So the recipe trains the
configured settings as a trial of each stage (never pruned) and adopts the search's winner only when its
validation accuracy lies above the configured trial's Wilson 95 % interval — the interval the diagnosis judges
validation accuracy by. Otherwise the configured settings stand, and the recipe says why.
"""
from __future__ import annotations

from typing import Any

import optuna

from ..config import Config
from ..train.diagnose import wilson

BASELINE = "baseline"  # the user attribute that marks the configured trial in a study


def configured_values(cfg: Config, keys: list[str]) -> dict[str, Any]:
    """The configured value of each dotted key (`optim.lr` → cfg.optim.lr)."""
    values = {}
    for key in keys:
        section, name = key.split(".")
        values[key] = getattr(getattr(cfg, section), name)
    return values


def beats_baseline(winner: float, baseline: float, val_images: int) -> bool:
    """True when the winner's val accuracy lies above the baseline's Wilson 95 % interval on val_images images."""
    return winner > wilson(baseline, val_images)[1]


def guard_line(winner: float, baseline: float, val_images: int, beaten: bool) -> str:
    """What the guard decided (`beaten`: the winner's settings are used), with the interval it judged by."""
    low, high = wilson(baseline, val_images)
    interval = f"the configured trial's 95% interval {low:.3f}–{high:.3f} ({baseline:.4f} on {val_images} images)"
    if beaten:
        return f"the best trial's val_acc {winner:.4f} lies above {interval}: its settings are used"
    return (f"kept the configured settings: the best trial's val_acc {winner:.4f} lies inside {interval}, "
            "so the search could not tell them apart (a larger validation split would)")


def baseline_trial(study):
    """The study's completed configured trial, if any."""
    return next((t for t in study.trials if t.user_attrs.get(BASELINE) and t.value is not None
                 and t.state == optuna.trial.TrialState.COMPLETE), None)


def choose(study, best, val_images: int):
    """(trial to use, note, kept): the best trial, or the configured one when the best does not beat it
    beyond noise; note is None when the study has no configured trial."""
    base = baseline_trial(study)
    if base is None:
        return best, None, False
    if best.number == base.number:  # Optuna hands out copies of its trials: compare numbers
        return base, "the configured settings were the best trial", False
    beaten = beats_baseline(best.value, base.value, val_images)
    note = guard_line(best.value, base.value, val_images, beaten)
    return (best, note, False) if beaten else (base, note, True)
