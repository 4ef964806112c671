"""Learning-rate schedules as pure functions of the step (after nanoGPT's get_lr).

`lr_factor(step, total, steps_per_epoch, cfg)` returns the multiplier of the base lr at `step`
(0-based). Warmup is linear and combines with every schedule. Reduce-on-plateau depends on
validation results, so it lives in a small state object, `Plateau`, multiplied on top.
"""
from __future__ import annotations

import math

from ..errors import DeepRecipeError
from ..plots import pyplot, save_png


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _cosine(progress: float, floor: float) -> float:
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg) -> float:
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    name = cfg.name
    if name == "onecycle":
        # Rise from 1/25 to 1 over pct_start, then cosine down to 1/(25·1e4), like PyTorch's OneCycleLR.
        start, end = 1.0 / 25.0, 1.0 / 25.0 / 1e4
        peak = max(1, int(cfg.pct_start * total_steps))
        if step < peak:
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * step / peak))
        prog = (step - peak) / max(1, total_steps - peak)
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(prog, 1.0)))
    w = _warmup(step, warm)
    after = step - warm
    span = max(1, total_steps - warm)
    epoch = step / max(1, steps_per_epoch)
    if name == "constant" or name == "plateau":
        f = 1.0
    elif name == "cosine":
        f = _cosine(after / span, cfg.min_lr_ratio)
    elif name == "step":
        f = cfg.gamma ** math.floor(epoch / cfg.step_size)
    elif name == "multistep":
        total_epochs = total_steps / max(1, steps_per_epoch)
        marks = [m * total_epochs if m < 1 else m for m in cfg.milestones]
        f = cfg.gamma ** sum(epoch >= m for m in marks)
    elif name == "exponential":
        f = cfg.gamma ** epoch
    else:
        raise DeepRecipeError(f"unknown schedule {name!r}", "use constant, cosine, step, multistep, exponential, onecycle or plateau")
    return w * f


class Plateau:
    """Multiply the lr by gamma when the monitored value has not improved for `patience` epochs."""

    def __init__(self, gamma: float, patience: int, mode: str = "min", min_delta: float = 0.0):
        self.gamma, self.patience, self.mode, self.min_delta = gamma, patience, mode, min_delta
        self.best: float | None = None
        self.bad_epochs = 0
        self.factor = 1.0

    def step(self, value: float) -> None:
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.factor *= self.gamma
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "factor": self.factor}

    def load_state_dict(self, s: dict) -> None:
        self.best, self.bad_epochs, self.factor = s["best"], s["bad_epochs"], s["factor"]


def schedule_curve(cfg, total_steps: int, steps_per_epoch: int, base_lr: float = 1.0) -> list[float]:
    """The lr at every step of a run (reduce-on-plateau excluded: it depends on validation results)."""
    return [base_lr * lr_factor(s, total_steps, steps_per_epoch, cfg) for s in range(total_steps)]


def plot_schedule(cfg, total_steps: int, steps_per_epoch: int, path, base_lr: float = 1.0) -> None:
    """A PNG of the schedule's learning rate against the step, with epoch boundaries marked."""
    plt = pyplot()

    lrs = schedule_curve(cfg, total_steps, steps_per_epoch, base_lr)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(total_steps), lrs, lw=1.5)
    for e in range(steps_per_epoch, total_steps, steps_per_epoch):
        ax.axvline(e, color="0.85", lw=0.5, zorder=0)
    warm = f", warmup {cfg.warmup_epochs:g} epochs" if cfg.warmup_epochs else ""
    ax.set(xlabel="step", ylabel="learning rate", title=f"schedule {cfg.name}{warm}")
    save_png(fig, path)
