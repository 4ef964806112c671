"""Optuna's samplers and pruners by the names `search.sampler` and `search.pruner` take.

Random sampling is the default (Bergstra & Bengio: with few trials, random points cover each important axis
better than a grid); TPE learns from the trials so far; a grid spreads the trial budget evenly over every
axis. ASHA (successive halving) and Hyperband stop the worst trials after one epoch, so a budget counted in
epochs buys more trials than it would with every trial run to the end.
"""
from __future__ import annotations

import math

import numpy as np
import optuna

SAMPLERS = ("random", "tpe", "grid")
PRUNERS = ("asha", "hyperband", "median", "none")


def grid_points(param, per_axis: int) -> list:
    """The values a grid tries along one parameter (log ranges geometrically, a zero-able range adds 0)."""
    if param.kind == "choice":
        return list(param.choices)
    if param.kind == "int":
        values = np.geomspace(param.low, param.high, per_axis) if param.log else np.linspace(param.low, param.high, per_axis)
        return sorted({int(round(v)) for v in values})
    if param.kind == "log":
        points = [float(v) for v in np.geomspace(param.low, param.high, per_axis)]
        # A zero-able range is sampled on [low / 10, high] with everything below low meaning 0.
        return ([param.low / 10] if param.zero else []) + points
    return [float(v) for v in np.linspace(param.low, param.high, per_axis)]


def grid_space(params: list, trials: int) -> dict[str, list]:
    """A grid of about `trials` points: the same number of values on every non-choice axis."""
    axes = [p for p in params if p.kind != "choice"]
    fixed = math.prod(len(p.choices) for p in params if p.kind == "choice")
    per_axis = max(2, round((trials / fixed) ** (1 / len(axes)))) if axes else 1
    return {p.key: grid_points(p, per_axis) for p in params}


def make_sampler(name: str, params: list, trials: int, seed: int | None):
    if name == "grid":
        return optuna.samplers.GridSampler(grid_space(params, trials), seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(name: str, epochs: int):
    """`epochs` is the most a trial runs (the largest resource)."""
    if name == "asha":
        # Rungs at 1, 3, 9 … epochs: a trial goes on only while it is in the top third of those seen there.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2), reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()
