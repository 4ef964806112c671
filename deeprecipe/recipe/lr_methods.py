"""The lectures' learning-rate method: a few candidate rates, each trained a short while from the same start.

`lr-find --method short-runs`, and step 3 of `recipe`: for each candidate (1 … 1e-4, three per decade by
default, highest first) a fresh model with the same initial weights and the same batches is trained through
`Trainer.train_step` (the step every training loop uses), with the configured optimizer and augmentation, and
with the configured schedule's shape squeezed into the short run at that peak rate: a one-cycle run warms up and
anneals within it, as the real run will, a constant one stays constant. A short run is as long as the configured
run (its epochs × batches per epoch, clamped to 20…300 steps): a fixed 100 steps read the best rate of LeNet's
3-epoch run (141 steps) 2-4x low, and ran 3x longer than a 32-step run on a small folder. Each candidate scores
its final loss (the mean of the last tenth of its steps; a run that turns NaN/inf scores +inf). The suggestion
is the vertex of a parabola through the best candidate and its two neighbours in log lr (clamped between them):
a continuous reading, so seeds that rank two neighbours differently still agree closely; three candidates a
decade (two until the tenth session) put its three points closer to the valley's bottom. Candidates stop once
two in a row lost to the one before (the loss climbs out of its valley; lower rates only climb further) — once
there is a valley: some candidate's final loss must have fallen 5 % below the loss of guessing uniformly
(ln C, or the runs' starting loss where that is lower), so that rates all left at chance never end the search.
A lowest loss at the top candidate (1) goes on upwards, a third of a decade at a time up to 10: batch-normalised
convnets under SGD can be best at 1-3, and a vertex clamped to the list's edge reads them low.
Measured in docs/recipe.md.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..session import Session
from ..plots import pyplot, save_png
from ..progress import track
from ..train.schedule import lr_factor
from ..train.trainer import NonFiniteLoss


@dataclass
class ShortRunsResult:
    lrs: list[float] = field(default_factory=list)
    finals: list[float] = field(default_factory=list)         # final loss per candidate (+inf: diverged)
    losses: list[list[float]] = field(default_factory=list)   # per-step losses per candidate
    steps: int = 0                                              # each candidate's length (a diverged one stops early)
    start_loss: float = math.inf                                # the first step's loss: same weights, same batch for all
    chance_loss: float = math.inf                               # ln C: what guessing uniformly scores
    batches_per_epoch: int = 0                                  # the configured run's, to express the cost in epochs
    suggestion: float | None = None

    def to_dict(self) -> dict:
        return {"method": "short-runs", "lrs": self.lrs, "finals": [f if math.isfinite(f) else None for f in self.finals],
                "losses": self.losses, "steps": self.steps, "batches_per_epoch": self.batches_per_epoch,
                "start_loss": self.start_loss if math.isfinite(self.start_loss) else None, "chance_loss": self.chance_loss,
                "suggestion": self.suggestion}


MIN_ITERATIONS, MAX_ITERATIONS = 20, 300  # short-run length when it follows the configured run
PER_DECADE = 3    # candidate rates per factor of ten
MOST_ABOVE = 3    # steps above the top candidate (1 → 10) while the lowest loss stays at the top
LEARNT = 0.95     # a final loss 5 % under chance's (ln C): that candidate learnt something (at chance: < 1 % off)


def candidate_lrs(high: float = 1.0, low: float = 1e-4, per_decade: int = PER_DECADE) -> list[float]:
    """Rates from `high` down to `low`, `per_decade` of them per factor of ten (1, 0.46, 0.22, 0.1, …)."""
    n = round(math.log10(high / low) * per_decade)
    return [float(high * 10 ** (-i / per_decade)) for i in range(n + 1)]


def final_loss(losses: list[float]) -> float:
    """Mean loss over the last tenth of the steps (+inf for a run that diverged or is too short to read)."""
    if len(losses) < 10 or not all(math.isfinite(v) for v in losses):
        return math.inf
    return float(np.mean(losses[-max(1, len(losses) // 10):]))


def vertex_lr(lrs: list[float], finals: list[float]) -> float | None:
    """The rate at the vertex of the parabola through the lowest final loss and its two neighbours in log lr,
    clamped between the neighbours; the best candidate itself at either end of the list or when the three
    points do not curve upwards. None when every candidate diverged."""
    if not lrs or min(finals) == math.inf:
        return None
    i = int(np.argmin(finals))
    if i == 0 or i == len(lrs) - 1 or not math.isfinite(finals[i - 1]) or not math.isfinite(finals[i + 1]):
        return lrs[i]
    x = np.log10(lrs[i - 1:i + 2])
    curve, slope, _ = np.polyfit(x, finals[i - 1:i + 2], 2)
    if curve <= 0:
        return lrs[i]
    return float(10 ** np.clip(-slope / (2 * curve), x.min(), x.max()))


def _batches(loader):
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def run_steps(trainer, epochs: int) -> int:
    """The configured run's length in optimizer steps (its loader's batches × epochs), clamped to
    [MIN_ITERATIONS, MAX_ITERATIONS]."""
    return min(MAX_ITERATIONS, max(MIN_ITERATIONS, len(trainer.train_loader) * epochs))


def past_the_minimum(finals: list[float], start: float = math.inf, rising: int = 2) -> bool:
    """True once the last `rising` candidates (tried from high rates to low) each lost to the one before and
    to the best so far: the loss is climbing out of the valley, lower rates only climb further. Only once the
    best so far learnt something (its final loss under LEARNT × `start`: ln C, what uniform guessing scores, or
    the loss before any step where that is lower): candidates all left at chance differ by noise, and the valley
    is still to come. (An initialisation often starts above ln C: a rate that only fell to chance learnt nothing.)"""
    if len(finals) <= rising:
        return False
    tail = finals[-rising - 1:]
    best = min(finals[:-rising])
    if math.isfinite(start) and not best < LEARNT * start:
        return False
    return all(b > a and b > best for a, b in zip(tail, tail[1:]))


def above_the_top(lrs: list[float], finals: list[float], most: int = MOST_ABOVE) -> float | None:
    """The next rate to try above the candidates (a third of a decade higher) while the lowest final loss is
    still at the highest rate tried, at most `most` steps above the default list's top (1): batch-normalised
    convnets under SGD are best at rates of 1-3, and a best rate at the list's edge does not say where the
    valley ends. None once the valley is bracketed (or every rate diverged)."""
    if not lrs or not math.isfinite(min(finals)):
        return None
    top = max(range(len(lrs)), key=lambda i: lrs[i])
    if int(np.argmin(finals)) != top or lrs[top] >= candidate_lrs()[0] * 10 ** (most / PER_DECADE) * 0.999:
        return None
    return float(lrs[top] * 10 ** (1 / PER_DECADE))


def _train_candidate(session: Session, lr: float, iterations: int | None) -> tuple[list[float], int, int]:
    """(per-step losses — the last +inf if the loss turned NaN/inf —, the run's length in steps, its loader's
    batches per epoch) of one candidate trained from the session's seeded start under the configured schedule's
    shape. `iterations` None: the configured run's own length (`run_steps`)."""
    cfg = session.cfg
    trainer = session.make_trainer(None, show_progress=False)  # seeded: same initial weights, same batches
    # The length comes from the first candidate's own loader (no extra trainer built just to count batches);
    # the schedule's epochs are squeezed into it (warm-up and step decay keep their proportions).
    iterations = iterations or run_steps(trainer, cfg.train.epochs)
    steps_per_epoch = max(1, iterations // max(1, cfg.train.epochs))
    trainer.lr_at = lambda step: lr * lr_factor(step, iterations, steps_per_epoch, cfg.schedule)
    trainer.model.train()
    batches, losses = _batches(trainer.train_loader), []
    try:
        for _ in range(iterations):
            x, y = next(batches)
            trainer.train_step(x, y)
            losses.append(trainer.read_losses())  # the loss before this step's update
    except NonFiniteLoss:
        losses.append(math.inf)
    return losses, iterations, len(trainer.train_loader)


def explore_rates(score: Callable[[float], float], start_loss: Callable[[], float], chance: float,
                  candidates: list[float] | None = None, stop: bool = True,
                  progress: bool = True) -> tuple[list[float], list[float]]:
    """(rates, final losses), highest rate first, of the short runs' search: `score(lr)` for each candidate from
    the highest down, until the losses climb past their minimum (`past_the_minimum`, against the lower of ln C =
    `chance` and `start_loss()`, the loss before any step) unless `stop` is False; then, with the default
    candidates, upwards while the lowest loss is at the top (`above_the_top`). One routine for `run_short_runs`
    and for benchmarks that replay stored losses."""
    lrs: list[float] = []
    finals: list[float] = []
    ordered = sorted(candidates or candidate_lrs(), reverse=True)
    for lr in track(ordered, "short runs") if progress else ordered:
        lrs.append(lr)
        finals.append(score(lr))
        if stop and past_the_minimum(finals, min(start_loss(), chance)):
            break
    while candidates is None and (higher := above_the_top(lrs, finals)) is not None:
        lrs.insert(0, higher)
        finals.insert(0, score(higher))
    return lrs, finals


def run_short_runs(session: Session, candidates: list[float] | None = None, iterations: int | None = None,
                   stop: bool = True) -> ShortRunsResult:
    """Train every candidate rate (highest first) `iterations` steps from the same start, under the configured
    schedule's shape; suggest the vertex around the lowest final loss. `iterations` None: the configured run's
    own length (clamped, `run_steps`). Which rates, in which order, and when to stop: `explore_rates`."""
    result = ShortRunsResult()
    result.chance_loss = math.log(max(2, len(session.data.classes)))
    curves: dict[float, list[float | None]] = {}

    def score(lr: float) -> float:
        losses, result.steps, result.batches_per_epoch = _train_candidate(session, lr, iterations or result.steps or None)
        if math.isfinite(losses[0]):
            result.start_loss = min(result.start_loss, losses[0])  # the same for every candidate, bar a NaN
        curves[lr] = [v if math.isfinite(v) else None for v in losses]
        return final_loss(losses)

    result.lrs, result.finals = explore_rates(score, lambda: result.start_loss, result.chance_loss, candidates, stop)
    result.losses = [curves[lr] for lr in result.lrs]
    result.suggestion = vertex_lr(result.lrs, result.finals)
    return result


def plot_short_runs(result: ShortRunsResult, path: str | Path) -> Path:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for lr, curve in zip(result.lrs, result.losses):
        a.plot([v if v is not None else np.nan for v in curve], lw=1, label=f"lr {lr:.2g}")
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.legend(fontsize=7)
    finals = [f if math.isfinite(f) else np.nan for f in result.finals]
    b.plot(result.lrs, finals, "o-")
    if result.suggestion:
        b.axvline(result.suggestion, color="C3", ls="--", label=f"suggested lr {result.suggestion:.2g}")
        b.legend()
    b.set_xscale("log")
    # The candidates themselves as ticks: a log axis spanning under a decade labels its minor ticks on top of
    # each other (2×10⁻¹ 3×10⁻¹ …).
    b.set_xticks(result.lrs, [f"{lr:.2g}" for lr in result.lrs], rotation=45, fontsize=7)
    b.minorticks_off()
    b.set_xlabel("learning rate")
    b.set_ylabel("final training loss (last tenth of the steps)")
    fig.suptitle("short runs from the same start")
    fig.tight_layout()
    return save_png(fig, path)
