"""Learning-rate range test (Smith 2017): raise the lr exponentially each step and watch the loss.

The loss is smoothed with a bias-corrected moving average; the test stops once the smoothed loss exceeds
`diverge` × its minimum. The suggestion is half the lr at the minimum of the smoothed loss (searched after a
short burn-in, so early spikes cannot win). Measured against one-cycle grids of short full runs (docs/recipe.md,
benchmarks/lr_calibration.py) that reading lands in the best band 11 times of the 18 it was chosen on and 5 of
12 held-out cases, where the classic readings read low: a tenth of the minimum ("one order of magnitude before
the blow-up") 4 of 18, fastai's valley 0. The short runs (lr_methods.py) do better and are the recipe's default;
this test stays the quick one. The steepest fall (in log lr, searched below the minimum) is still reported and
plotted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..plots import pyplot, save_png
from ..progress import track
from ..session import Session
from ..train.trainer import NonFiniteLoss

MIN_DIVISOR = 2  # the suggestion is the lr at the loss minimum divided by this


@dataclass
class LRFindResult:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)      # raw per-step losses
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    min_loss_lr: float | None = None
    steepest_lr: float | None = None
    diverged_at: float | None = None

    def to_dict(self) -> dict:
        return dict(vars(self))


def run_lr_find(session: Session, start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 100,
                beta: float = 0.9, diverge: float = 4.0) -> LRFindResult:
    """One pass of the range test on a fresh model: the run's own training step (optimizer, precision, memory
    format, clipping, penalties, augmentation as configured) with the lr raised each step instead of the schedule."""
    trainer = session.make_trainer(None, show_progress=False)
    trainer.model.train()
    ratio = (end_lr / start_lr) ** (1.0 / max(1, steps - 1))
    trainer.lr_at = lambda step: start_lr * ratio ** step
    result = LRFindResult()
    avg, best = 0.0, math.inf
    batches = _cycle(trainer.train_loader)
    for i in track(range(steps), "lr-find"):
        lr = start_lr * ratio ** i
        x, y = next(batches)
        try:
            trainer.train_step(x, y)
            value = trainer.read_losses()  # the loss before this step's update, read every step here
        except NonFiniteLoss:
            result.diverged_at = lr
            break
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        result.lrs.append(lr)
        result.losses.append(value)
        result.smoothed.append(smooth)
        best = min(best, smooth)
        if i > 5 and smooth > diverge * best:
            result.diverged_at = lr
            break
    result.suggestion, result.min_loss_lr, result.steepest_lr = suggest_lr(result.lrs, result.smoothed)
    return result


def _cycle(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def suggest_lr(lrs: list[float], smoothed: list[float], burn_in: float = 0.1) -> tuple[float | None, float | None, float | None]:
    """(suggestion, lr at the minimum, lr at the steepest descent) from a smoothed range-test curve."""
    if len(lrs) < 5:
        return None, None, None
    lr = np.asarray(lrs)
    loss = np.asarray(smoothed)
    lo = max(1, int(burn_in * len(lr)))
    i_min = lo + int(np.argmin(loss[lo:]))
    min_lr = float(lr[i_min])
    if i_min - lo < 3:
        return min_lr / MIN_DIVISOR, min_lr, None
    # Slope of a 5-point moving average of the smoothed loss against log lr, before the minimum.
    window = np.convolve(loss[:i_min + 1], np.ones(5) / 5, mode="same")
    slope = np.gradient(window, np.log(lr[:i_min + 1]))
    i_steep = lo + int(np.argmin(slope[lo:i_min - 1]))
    return min_lr / MIN_DIVISOR, min_lr, float(lr[i_steep])


def plot_lr_find(result: LRFindResult, path: str | Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, color="0.8", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed")
    if result.suggestion:
        ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggested lr {result.suggestion:.2g}")
    if result.min_loss_lr:
        ax.axvline(result.min_loss_lr, color="0.5", ls=":", label=f"minimum at {result.min_loss_lr:.2g}")
    ax.set_xscale("log")
    if result.smoothed:
        lo, hi = min(result.smoothed), result.smoothed[0]
        ax.set_ylim(lo - 0.1 * abs(hi - lo), max(hi, lo) + 0.5 * abs(hi - lo) + 1e-3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    return save_png(fig, path)
