"""The configured settings as the search's baseline, and the guard that keeps them unless beaten beyond noise.

On a small validation set the best of a dozen trials is partly luck: with 19 validation images one image is
5 points, and the maximum of twelve noisy estimates sits well above the truth. So the recipe trains the
configured settings as a trial of each stage (never pruned) and adopts the search's winner only when it beats
them beyond chance. Both trials answer the same validation images, so the test is paired (McNemar's, exact):
only the images on which the two disagree carry evidence, and the winner must be right on significantly more of
them (one-sided binomial test at 5 %). Pairing is what lets a 2-point gain on 200 images count: the unpaired
comparison — the winner above the configured trial's Wilson 95 % interval, used when a trial has no per-image
record (a study shared with workers of an older version) — needs about 5 points there.
"""
from __future__ import annotations

from typing import Any

import optuna
from scipy.stats import binomtest

from ..config import Config
from ..train.diagnose import wilson

BASELINE = "baseline"  # the user attribute that marks the configured trial in a study
CORRECT = "val_correct"  # the user attribute: "1"/"0" per validation image at the trial's best epoch
ALPHA = 0.05


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


def discordant(winner: str, baseline: str) -> tuple[int, int]:
    """(images only the winner got right, images only the baseline got right) from two 0/1 strings."""
    only_winner = sum(w == "1" and b == "0" for w, b in zip(winner, baseline))
    only_baseline = sum(w == "0" and b == "1" for w, b in zip(winner, baseline))
    return only_winner, only_baseline


def paired_p(only_winner: int, only_baseline: int) -> float:
    """One-sided exact McNemar p-value: the chance of the winner winning this many of the disagreements if
    neither were better."""
    n = only_winner + only_baseline
    return 1.0 if n == 0 else float(binomtest(only_winner, n, 0.5, alternative="greater").pvalue)


def guard_line(winner: float, baseline: float, val_images: int, beaten: bool, pair: tuple[int, int] | None) -> str:
    """What the guard decided (`beaten`: the winner's settings are used), with the evidence it judged by."""
    if pair is not None:
        b, c = pair
        evidence = (f"on the same {val_images} validation images the best trial ({winner:.4f}) alone was right on "
                    f"{b} and the configured one ({baseline:.4f}) alone on {c} (paired test p = {paired_p(b, c):.3g})")
    else:
        low, high = wilson(baseline, val_images)
        evidence = (f"the best trial's val_acc {winner:.4f} against the configured trial's 95% interval "
                    f"{low:.3f}–{high:.3f} ({baseline:.4f} on {val_images} images)")
    if beaten:
        return f"{evidence}: the best trial's settings are used"
    return (f"kept the configured settings: {evidence}, so the search could not tell them apart "
            "(a larger validation split would)")


def baseline_trial(study):
    """The study's completed configured trial, if any."""
    return next((t for t in study.trials if t.user_attrs.get(BASELINE) and t.value is not None
                 and t.state == optuna.trial.TrialState.COMPLETE), None)


def _pair(best, base, val_images: int) -> tuple[int, int] | None:
    a, b = best.user_attrs.get(CORRECT, ""), base.user_attrs.get(CORRECT, "")
    return discordant(a, b) if len(a) == len(b) == val_images > 0 else None


def choose(study, best, val_images: int):
    """(trial to use, note, kept): the best trial, or the configured one when the best does not beat it
    beyond noise; note is None when the study has no configured trial."""
    base = baseline_trial(study)
    if base is None:
        return best, None, False
    if best.number == base.number:  # Optuna hands out copies of its trials: compare numbers
        return base, "the configured settings were the best trial", False
    pair = _pair(best, base, val_images)
    if pair is not None:
        beaten = best.value > base.value and paired_p(*pair) < ALPHA
    else:
        beaten = beats_baseline(best.value, base.value, val_images)
    note = guard_line(best.value, base.value, val_images, beaten, pair)
    return (best, note, False) if beaten else (base, note, True)
