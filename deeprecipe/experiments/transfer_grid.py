"""The lectures' transfer table: a similar or a different target, with little or much data.

The lectures' advice (CS231n's 2×2): with a *similar* target and *little* data, train a linear classifier on
the pretrained features; with *much* similar data, fine-tune; with little *different* data you are in
trouble; with much different data, fine-tune or train from scratch.

Source: the ConvNet of `experiment transfer` trained on all ten digits of builtin:mnist5k with the ordinary
`train` path, cached in OUT/pretrain. Targets (`transfer_targets`): scikit-learn's 8×8 digits framed as MNIST
(similar), and patches of bundled photos (different). In each of the four cells the three methods — from
scratch, a linear probe on the frozen body, fine-tuning everything — get the same step budget and are
tested on the same fixed held-out set, over several seeds. Pretrained runs normalise their inputs with the
source's statistics, as `model.pretrained` does in `deeprecipe train`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.sources import load_source
from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset
from .registry import ExperimentResult, checks_line, register_experiment
from .transfer import StudySettings, pretrain, train_target
from .transfer_targets import photo_patches, similar_digits

METHODS = ["scratch", "linear_probe", "finetune"]
TARGETS = {"similar": "8×8 digits, upsampled", "different": "photo patches"}
LECTURE = {  # what the lectures advise in each cell
    ("similar", "little"): "linear probe",
    ("similar", "much"): "fine-tune",
    ("different", "little"): "in trouble: the hardest cell",
    ("different", "much"): "fine-tune or scratch",
}


@dataclass
class GridSettings(StudySettings):
    sizes: dict[str, int] = field(default_factory=lambda: {"little": 20, "much": 100})  # labels per class
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    test_per_class: int = 60       # scikit-learn's digits have 174–183 per class: 60 test leave ≥ 114 to train on
    steps: int = 100               # optimizer steps per run, every cell and method alike
    source_per_class: int | None = None  # source images per class (None: all of mnist5k)
    pretrained_stats: bool = True


def run_grid(out: Path, s: GridSettings) -> list[dict]:
    """Every (target, size, method): mean and std of test accuracy over the seeds."""
    source = digits_subset(s.source_per_class) if s.source_per_class else load_source("builtin:mnist5k")
    run = pretrain(source, out, s)
    targets = {"similar": similar_digits(s.test_per_class),
               "different": photo_patches(s.test_per_class, max(s.sizes.values()))}
    jobs = [(t, size, m, seed) for t in targets for size in s.sizes for m in s.methods for seed in s.seeds]
    accs: dict[tuple[str, str, str], list[float]] = {}
    for t, size, m, seed in track(jobs, "transfer grid runs"):
        accs.setdefault((t, size, m), []).append(train_target(targets[t], m, s.sizes[size], seed, run, s))
    return [{"target": t, "data": size, "labels_per_class": s.sizes[size], "method": m,
             "mean_acc": float(np.mean(a)), "std_acc": float(np.std(a)), "seeds": len(a), "accs": [round(x, 4) for x in a]}
            for (t, size, m), a in accs.items()]


def cell_means(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """(target, data) → {method: mean accuracy}."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        cells.setdefault((r["target"], r["data"]), {})[r["method"]] = r["mean_acc"]
    return cells


def winners(rows: list[dict]) -> dict[tuple[str, str], str]:
    return {cell: max(accs, key=accs.get) for cell, accs in cell_means(rows).items()}


def probe_shortfall(rows: list[dict]) -> dict[str, float]:
    """target → how far the linear probe trails that target's best method, averaged over the data sizes."""
    gaps: dict[str, list[float]] = {}
    for (t, _), accs in cell_means(rows).items():
        if "linear_probe" in accs:
            gaps.setdefault(t, []).append(max(accs.values()) - accs["linear_probe"])
    return {t: float(np.mean(g)) for t, g in gaps.items()}


def grid_checks(rows: list[dict]) -> dict[str, bool]:
    """The lectures' four cells as claims, and the 10-point fine-tuning claim on the different target."""
    cells, win = cell_means(rows), winners(rows)
    checks = {}
    if ("similar", "little") in win:
        checks["little similar data: the linear probe wins"] = win[("similar", "little")] == "linear_probe"
    if ("similar", "much") in win:
        checks["much similar data: fine-tuning wins"] = win[("similar", "much")] == "finetune"
    if len(cells) == 4:
        best = {cell: max(accs.values()) for cell, accs in cells.items()}
        checks["little different data is the hardest cell"] = min(best, key=best.get) == ("different", "little")
    if ("different", "much") in win:
        checks["much different data: fine-tuning or scratch wins"] = win[("different", "much")] in ("finetune", "scratch")
    little = cells.get(("different", "little"), {})
    if {"finetune", "scratch"} <= set(little):
        checks["fine-tuning beats scratch by ≥ 10 points with little different data"] = \
            little["finetune"] - little["scratch"] >= 0.10
    return checks


def conclusion(rows: list[dict], s: GridSettings) -> str:
    """Per cell: the winner, its margin over the runner-up, the lectures' advice; then the checks."""
    lines = []
    std = {(r["target"], r["data"], r["method"]): r.get("std_acc", 0.0) for r in rows}
    for (t, size), accs in cell_means(rows).items():
        first, second = sorted(accs, key=accs.get, reverse=True)[:2]
        margin = accs[first] - accs[second]
        # A lead smaller than the spread over seeds is a tie, whatever the means say.
        tie = " — within the spread over seeds, a tie" if margin < max(std[(t, size, first)], std[(t, size, second)]) else ""
        lines.append(f"{size} {t} data ({s.sizes[size]}/class): {first.replace('_', ' ')} wins "
                     f"({100 * accs[first]:.1f}%, +{100 * margin:.1f} points over {second.replace('_', ' ')}{tie}); "
                     f"the lectures: {LECTURE[(t, size)]}.")
    for target in TARGETS:
        for size in s.sizes:
            accs = cell_means(rows).get((target, size), {})
            if {"finetune", "scratch"} <= set(accs):
                lines.append(f"Fine-tuning − scratch, {size} {target} data: "
                             f"{100 * (accs['finetune'] - accs['scratch']):+.1f} points.")
    behind = probe_shortfall(rows)
    if len(behind) == 2:
        lines.append(f"The linear probe trails the best method by {100 * behind['similar']:.1f} points on the similar "
                     f"target and {100 * behind['different']:.1f} on the different one: frozen digit features "
                     f"{'fit digits far better than photos' if behind['different'] > 2 * behind['similar'] else 'serve both targets alike'}.")
    lines.append(checks_line(grid_checks(rows), "of the lectures' claims"))
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> Path:
    """One panel per target: accuracy per method, grouped by data size, ± std over seeds."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sizes = list(dict.fromkeys(r["data"] for r in rows))
    per_class = {r["data"]: r["labels_per_class"] for r in rows}
    width = 0.8 / len(methods)
    for ax, target in zip(axes, TARGETS):
        for i, m in enumerate(methods):
            rs = [next(r for r in rows if r["target"] == target and r["data"] == d and r["method"] == m) for d in sizes]
            ax.bar(np.arange(len(sizes)) + (i - (len(methods) - 1) / 2) * width, [100 * r["mean_acc"] for r in rs],
                   width, yerr=[100 * r["std_acc"] for r in rs], capsize=3, label=m.replace("_", " "))
        ax.set_xticks(range(len(sizes)), [f"{d} ({per_class[d]}/class)" for d in sizes])
        ax.set_title(f"{target} target: {TARGETS[target]}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(methods), frameon=False)
    fig.subplots_adjust(bottom=0.2)  # room for the legend under the panels, clear of the bars
    path = out / "transfer_grid.png"
    save_png(fig, path, dpi=120)
    return path


@register_experiment("transfer-grid", "Similar target: linear probe with little data, fine-tune with much; "
                     "different target: little data is hard, with much fine-tune or train from scratch")
def transfer_grid_experiment(quick: bool, out: Path) -> ExperimentResult:
    s = GridSettings()
    if quick:  # a weak source and a short budget: seconds, one seed
        s = GridSettings(model={"name": "convnet", "widths": [8, 16, 32], "convs": 1}, source_per_class=200,
                         pretrain_epochs=4, pretrain_batch=32, seeds=[0], steps=40, test_per_class=40, sizes={"little": 10, "much": 50})
    rows = run_grid(out, s)
    return ExperimentResult(rows, conclusion(rows, s), [plot(rows, out)], grid_checks(rows))
