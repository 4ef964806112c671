"""The lectures' learning-rate method: a few candidate rates, each trained a short while from the same start.

`lr-find --method short-runs`: for each candidate (1e-1 … 1e-5, two per decade by default) a fresh model with
the same initial weights and the same batches is trained `iterations` steps at that constant rate, with the
configured optimizer and augmentation, through `Trainer.train_step` (the step every training loop uses). The
suggestion is the rate whose loss fell most: the mean of the last tenth of the steps against the mean of the
first tenth. A run whose loss turns NaN/inf scores -inf. Costs candidates × iterations steps (900 by default,
against the range test's 100), and reads no curve: nothing to smooth, no steepest point to pick.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..session import Session
from ..plots import pyplot, save_png
from ..progress import track
from ..train.trainer import NonFiniteLoss


@dataclass
class ShortRunsResult:
    lrs: list[float] = field(default_factory=list)
    falls: list[float] = field(default_factory=list)          # relative loss fall per candidate (-inf: diverged)
    losses: list[list[float]] = field(default_factory=list)   # per-step losses per candidate
    suggestion: float | None = None

    def to_dict(self) -> dict:
        return {"method": "short-runs", "lrs": self.lrs, "falls": [f if math.isfinite(f) else None for f in self.falls],
                "losses": self.losses, "suggestion": self.suggestion}


def candidate_lrs(high: float = 1e-1, low: float = 1e-5, per_decade: int = 2) -> list[float]:
    """Rates from `high` down to `low`, `per_decade` of them per factor of ten (1e-1, 3.2e-2, 1e-2, …)."""
    n = round(math.log10(high / low) * per_decade)
    return [float(high * 10 ** (-i / per_decade)) for i in range(n + 1)]


def loss_fall(losses: list[float]) -> float:
    """Relative fall from the first tenth of the steps to the last tenth (-inf for a run that diverged)."""
    if len(losses) < 10 or not all(math.isfinite(v) for v in losses):
        return -math.inf
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    return (first - last) / max(first, 1e-12)


def _batches(loader):
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def run_short_runs(session: Session, candidates: list[float] | None = None, iterations: int = 100) -> ShortRunsResult:
    """Train every candidate rate `iterations` steps from the same start; suggest the one whose loss fell most."""
    result = ShortRunsResult()
    for lr in track(candidates or candidate_lrs(), "short runs"):
        trainer = session.make_trainer(None, show_progress=False)  # seeded: same initial weights, same batches
        trainer.lr_at = lambda step, lr=lr: lr  # this candidate's rate throughout, instead of the schedule
        trainer.model.train()
        batches, losses = _batches(trainer.train_loader), []
        try:
            for _ in range(iterations):
                x, y = next(batches)
                trainer.train_step(x, y)
                losses.append(trainer.read_losses())  # the loss before this step's update
        except NonFiniteLoss:
            losses.append(math.inf)
        result.lrs.append(lr)
        result.losses.append([v if math.isfinite(v) else None for v in losses])
        result.falls.append(loss_fall(losses))
    if result.falls and max(result.falls) > -math.inf:
        result.suggestion = result.lrs[int(np.argmax(result.falls))]
    return result


def plot_short_runs(result: ShortRunsResult, path: str | Path) -> Path:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for lr, curve in zip(result.lrs, result.losses):
        a.plot([v if v is not None else np.nan for v in curve], lw=1, label=f"lr {lr:.2g}")
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.legend(fontsize=7)
    falls = [f if math.isfinite(f) else np.nan for f in result.falls]
    b.plot(result.lrs, falls, "o-")
    if result.suggestion:
        b.axvline(result.suggestion, color="C3", ls="--", label=f"suggested lr {result.suggestion:.2g}")
        b.legend()
    b.set_xscale("log")
    b.set_xlabel("learning rate")
    b.set_ylabel("relative loss fall")
    fig.suptitle("short runs from the same start")
    fig.tight_layout()
    return save_png(fig, path)
