"""`depth-grid`: VGG-like nets over blocks × convolutions per block, repeated, mean ± std.

The lectures' grid: stacking more 3×3 convolutions does not simply help; without normalisation some
combinations do not even train (they stay at chance), and repeated runs show how much of a difference is noise.
Every net is `vgglike` without normalisation, trained with Adam at a constant rate.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset, downsampled, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

# Quick (about 9 s of CPU): 4 blocks of 1, 2 or 8 convs, 40 digits a class averaged down to 14×14, 2 runs of 4
# epochs — enough for 1 and 2 convs a block to learn while 8 (32 conv layers) stay at chance; at this budget
# shallower nets (2 blocks) stay near chance too, so the quick grid keeps to 4 blocks.
QUICK = dict(blocks=(4,), convs=(1, 2, 8), repeats=2, epochs=4, per_class=40, side=14)
FULL = dict(blocks=(1, 2, 3, 4), convs=(1, 2, 4, 8), repeats=3, epochs=4, per_class=None, side=None)
MODEL = ["model.name=vgglike", "model.width=16", "model.max_width=64", "model.norm=none", "model.activation=relu"]
TRAIN = ["optim.name=adam", "optim.lr=0.001", "optim.weight_decay=0", "schedule.name=constant", "data.augment=[]",
         "train.batch_size=32"]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def trains(train_acc: float, chance: float) -> bool:
    """A run 'trains' when its final training accuracy is clearly above chance (10 points)."""
    return train_acc > chance + 0.10


@register_experiment("depth-grid", "More conv layers do not simply help: without normalisation some depths do not even train")
def run(quick: bool, out: Path) -> ExperimentResult:
    grid = QUICK if quick else FULL
    ds = digits_subset(per_class=grid["per_class"])
    if grid["side"]:
        ds = downsampled(ds, grid["side"])
    chance = 1.0 / len(ds.classes)
    settings = [(b, c, r) for b in grid["blocks"] for c in grid["convs"] for r in range(grid["repeats"])]
    runs: dict[tuple[int, int], list[dict]] = {}
    for blocks, convs, rep in track(settings, description="depth-grid: training"):
        res = train_quietly(ds, MODEL + TRAIN + [f"model.blocks={blocks}", f"model.convs={convs}",
                                                 f"train.epochs={grid['epochs']}", f"train.seed={rep}"])
        last = res["history"][-1]
        runs.setdefault((blocks, convs), []).append({"train_acc": last["train_acc"], "val_acc": last["val_acc"],
                                                     "params": res["params"], "seconds": res["seconds"]})
    rows = [_row(b, c, rs, chance) for (b, c), rs in runs.items()]
    plot = out / "depth_grid_val_acc.png"
    _plot(rows, grid, plot)
    conclusion, checks = _conclude(rows, grid, chance)
    return ExperimentResult(rows, conclusion, [plot], checks)


def _row(blocks: int, convs: int, rs: list[dict], chance: float) -> dict:
    tr_mean, tr_std = mean_std([r["train_acc"] for r in rs])
    va_mean, va_std = mean_std([r["val_acc"] for r in rs])
    return {"blocks": blocks, "convs_per_block": convs, "conv_layers": blocks * convs, "params": rs[0]["params"],
            "train_acc_mean": tr_mean, "train_acc_std": tr_std, "val_acc_mean": va_mean, "val_acc_std": va_std,
            "runs_that_train": f"{sum(trains(r['train_acc'], chance) for r in rs)}/{len(rs)}",
            "seconds_per_run": statistics.fmean(r["seconds"] for r in rs)}


def _conclude(rows: list[dict], grid: dict, chance: float) -> tuple[str, dict[str, bool]]:
    best = max(rows, key=lambda r: r["val_acc_mean"])
    deepest = max(rows, key=lambda r: (r["conv_layers"], r["blocks"]))
    stuck = [r for r in rows if not trains(r["train_acc_mean"], chance)]
    name = lambda r: f"{r['blocks']}×{r['convs_per_block']}"  # noqa: E731 - a label, read in place
    checks = {"some combination does not train": bool(stuck),
              "the deepest net is not the best": deepest is not best}
    lines = [f"{len(rows)} combinations (blocks×convs) × {grid['repeats']} runs, {grid['epochs']} epochs each, Adam, no norm.",
             f"best: {name(best)} at {best['val_acc_mean']:.3f} ± {best['val_acc_std']:.3f} validation accuracy "
             f"({best['params']:,} parameters); deepest ({deepest['conv_layers']} conv layers, {name(deepest)}): "
             f"{deepest['val_acc_mean']:.3f} ± {deepest['val_acc_std']:.3f}."]
    if stuck:
        lines.append("stayed near chance (" + f"{chance:.0%}" + "): "
                     + ", ".join(f"{name(r)} (train acc {r['train_acc_mean']:.3f})" for r in stuck) + ".")
    else:
        lines.append(f"every combination trained above chance ({chance:.0%}) here: the claim that some do not train "
                     "did not reproduce at this budget.")
    lines.append(checks_line(checks))
    return "\n".join(lines), checks


def _plot(rows: list[dict], grid: dict, path: Path) -> None:
    plt = pyplot()
    blocks, convs = list(grid["blocks"]), list(grid["convs"])
    cell = {(r["blocks"], r["convs_per_block"]): r for r in rows}
    values = [[cell[(b, c)]["val_acc_mean"] for c in convs] for b in blocks]
    fig, ax = plt.subplots(figsize=(1.4 * len(convs) + 2, 1.0 * len(blocks) + 1.5))
    im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    for i, b in enumerate(blocks):
        for j, c in enumerate(convs):
            r = cell[(b, c)]
            ax.text(j, i, f"{r['val_acc_mean']:.2f}\n±{r['val_acc_std']:.2f}", ha="center", va="center",
                    color="white" if r["val_acc_mean"] < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(convs)), [str(c) for c in convs])
    ax.set_yticks(range(len(blocks)), [str(b) for b in blocks])
    ax.set(xlabel="convs per block", ylabel="blocks", title=f"VGG-like, no norm: val accuracy ({grid['repeats']} runs)")
    fig.colorbar(im, ax=ax)
    save_png(fig, path, dpi=110)
