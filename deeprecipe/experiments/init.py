"""`init`: activation statistics through a deep stack of equal-width layers under different inits.

The lectures' demonstration (after Glorot & Bengio 2010, He et al. 2015): 7 layers of 4096 units, inputs
N(0, 1). Small Gaussian weights make tanh activations vanish layer by layer; larger ones saturate tanh and
make ReLU explode; Xavier keeps tanh stable and Kaiming keeps ReLU stable.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..plots import pyplot, save_png
from ..progress import track
from .registry import ExperimentResult, checks_line, register_experiment

SCHEMES = {
    "N(0,0.01²)": lambda fan_in, fan_out: 0.01,
    "N(0,0.05²)": lambda fan_in, fan_out: 0.05,
    "xavier": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "kaiming": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
}
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def layer_stds(width: int, depth: int, batch: int, scheme: str, activation: str, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-layer activation std and (tanh) saturated fraction for one forward pass."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=g)
    stds, saturated = [], []
    act = ACTIVATIONS[activation]
    with torch.no_grad():
        for _ in range(depth):
            w = torch.randn(width, width, generator=g) * SCHEMES[scheme](width, width)
            x = act(x @ w)
            stds.append(float(x.std()))
            saturated.append(float((x.abs() > 0.99).float().mean()) if activation == "tanh" else 0.0)
    return stds, saturated


def verdict(stds: list[float], saturated: list[float], activation: str) -> str:
    first, last = stds[0], stds[-1]
    if not math.isfinite(last) or last > 10 * max(first, 1.0):
        return "exploding"
    if activation == "tanh" and saturated[-1] > 0.2:  # a fifth of units at ±1 pass (almost) no gradient
        return "saturated"
    if last < 0.25 * first or last < 1e-3:
        return "vanishing"
    return "stable"


@register_experiment("init", "Weight init decides whether activations vanish, explode or stay stable in a deep stack")
def run(quick: bool, out: Path) -> ExperimentResult:
    width, depth = 4096, 7          # as in the lectures; --quick only uses fewer input rows
    batch = 128 if quick else 1000
    rows, curves = [], {}
    settings = [(a, s) for a in ACTIVATIONS for s in SCHEMES]
    for activation, scheme in track(settings, description="init: forward passes"):
        stds, sat = layer_stds(width, depth, batch, scheme, activation)
        curves[(activation, scheme)] = stds
        rows.append({"activation": activation, "init": scheme, **{f"std_l{i + 1}": s for i, s in enumerate(stds)},
                     "saturated_last": sat[-1], "verdict": verdict(stds, sat, activation)})
    plot = out / "init_layer_std.png"
    _plot(curves, depth, plot)
    by = {(r["activation"], r["init"]): r["verdict"] for r in rows}
    checks = {
        "tanh N(0,0.01²) vanishes": by[("tanh", "N(0,0.01²)")] == "vanishing",
        "tanh xavier stable": by[("tanh", "xavier")] == "stable",
        "relu kaiming stable": by[("relu", "kaiming")] == "stable",
        "relu N(0,0.05²) explodes": by[("relu", "N(0,0.05²)")] == "exploding",
        "tanh N(0,0.05²) saturates": by[("tanh", "N(0,0.05²)")] == "saturated",
        "relu xavier slowly vanishes": by[("relu", "xavier")] == "vanishing",
    }
    lines = [f"{a} with {s}: {by[(a, s)]} (layer-{depth} std {curves[(a, s)][-1]:.3g})" for a, s in settings]
    lines.append(checks_line(checks, "textbook claims"))
    return ExperimentResult(rows, "\n".join(lines), [plot], checks)


def _plot(curves: dict, depth: int, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, activation in zip(axes, ACTIVATIONS):
        for (a, s), stds in curves.items():
            if a == activation:
                ax.semilogy(range(1, depth + 1), [max(v, 1e-12) for v in stds], marker="o", label=s)
        ax.set(title=f"{activation}: activation std per layer", xlabel="layer", ylabel="std (log)")
        ax.legend()
    save_png(fig, path, dpi=110)
