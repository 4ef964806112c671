"""`activations`: the same CNN with sigmoid, tanh, ReLU and GELU — how fast does each train?

Krizhevsky et al. (2012) report a four-layer CNN with ReLUs reaching 25% training error on CIFAR-10 six times
faster than the same net with tanh. Here: no normalisation (so the activation alone shapes the gradients),
SGD with momentum at a constant rate, epochs and seconds until the training error first falls below a threshold.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset, downsampled, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

ACTS = ["sigmoid", "tanh", "relu", "gelu"]
INIT = {"sigmoid": "xavier", "tanh": "xavier", "relu": "he", "gelu": "he"}  # each with its matching init


def first_epoch_below(history: list[dict], error: float) -> int | None:
    for row in history:
        if 1.0 - row["train_acc"] <= error:
            return row["epoch"]
    return None


@register_experiment("activations", "ReLU trains several times faster than tanh (AlexNet: ~6×); sigmoid is slowest")
def run(quick: bool, out: Path) -> ExperimentResult:
    # Many short epochs on a mid-sized subset: the epoch count to the threshold is then a fine-grained clock.
    # The full version repeats every run over 3 seeds (initialisation and batch order): one seed's ordering
    # of ReLU and tanh can flip by an epoch.
    # Quick: 50 digits a class averaged down to 14×14 (a few seconds in all): enough to show sigmoid stuck at
    # chance while ReLU learns, too little to order ReLU and tanh.
    ds = downsampled(digits_subset(per_class=50), 14) if quick else digits_subset()
    epochs, threshold, seeds = (8, 0.5, [0]) if quick else (15, 0.05, [0, 1, 2])
    key = f"epochs_to_{threshold:.0%}_error"
    inf = epochs + 1  # "not reached within the budget" ranks after every reached value
    rows, histories = [], {}
    for act in track(ACTS, description="activations: training"):
        runs = []
        for seed in seeds:
            res = train_quietly(ds, ["model.widths=[16,32,64]", "model.convs=1", "model.norm=none",
                                     f"model.activation={act}", f"model.init={INIT[act]}", "optim.name=sgd",
                                     "optim.lr=0.05", "optim.momentum=0.9", "optim.weight_decay=0",
                                     "schedule.name=constant", f"train.epochs={epochs}", "train.batch_size=32",
                                     "data.augment=[]", f"train.seed={seed}"])
            hist = res["history"]
            histories.setdefault(act, hist)  # the plot shows the first seed
            reach = first_epoch_below(hist, threshold)
            runs.append({"reach": reach, "seconds": sum(r["seconds"] for r in hist[:reach]) if reach else None,
                         "final_error": 1 - hist[-1]["train_acc"], "test_acc": res["test_acc"]})
        ranks = np.array([r["reach"] or inf for r in runs], dtype=float)
        reached = [r for r in runs if r["reach"]]
        rows.append({"activation": act, "init": INIT[act], "seeds": len(seeds),
                     "runs_reaching_threshold": f"{len(reached)}/{len(runs)}",
                     f"{key}_mean": float(ranks.mean()) if reached else None,
                     f"{key}_std": float(ranks.std(ddof=1)) if reached and len(ranks) > 1 else 0.0 if reached else None,
                     f"{key}_per_seed": " / ".join(str(r["reach"] or "-") for r in runs),
                     "seconds_to_threshold_mean": float(np.mean([r["seconds"] for r in reached])) if reached else None,
                     "final_train_error_mean": float(np.mean([r["final_error"] for r in runs])),
                     "test_acc_mean": float(np.mean([r["test_acc"] for r in runs])),
                     "_ranks": ranks})
    plot = out / "activations_train_error.png"
    _plot(histories, threshold, plot)
    conclusion, checks = _conclude(rows, key, threshold, epochs)
    for r in rows:
        del r["_ranks"]
    return ExperimentResult(rows, conclusion, [plot], checks)


def _conclude(rows: list[dict], key: str, threshold: float, epochs: int) -> tuple[str, dict[str, bool]]:
    """Epochs to the threshold per seed (not reached = the budget + 1); ReLU must be faster on the mean and
    no slower on any seed."""
    by = {r["activation"]: r for r in rows}
    rank = {a: r["_ranks"] for a, r in by.items()}
    relu_all = by["relu"]["runs_reaching_threshold"].split("/")
    checks = {"relu reaches the threshold on every seed": relu_all[0] == relu_all[1],
              "relu faster than tanh (mean epochs, and no slower on any seed)":
                  rank["relu"].mean() < rank["tanh"].mean() and bool((rank["relu"] <= rank["tanh"]).all()),
              "tanh at least as fast as sigmoid": rank["tanh"].mean() <= rank["sigmoid"].mean()}
    lines = []
    for a, r in by.items():
        if r[f"{key}_mean"] is None:
            lines.append(f"{a}: did not reach {threshold:.0%} training error in {epochs} epochs on any seed")
        else:
            lines.append(f"{a}: {r[f'{key}_mean']:.1f} ± {r[f'{key}_std']:.1f} epoch(s) to ≤{threshold:.0%} training "
                         f"error (per seed {r[f'{key}_per_seed']}; '-' = not reached, counted as {epochs + 1})")
    if by["relu"][f"{key}_mean"] and by["tanh"][f"{key}_mean"]:
        lines.append(f"tanh needed {rank['tanh'].mean() / rank['relu'].mean():.1f}× the epochs of ReLU "
                     "(AlexNet reported ~6× on CIFAR-10).")
    lines.append(checks_line(checks, "orderings from the lectures"))
    return "\n".join(lines), checks


def _plot(histories: dict, threshold: float, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for act, hist in histories.items():
        ax.plot([r["epoch"] for r in hist], [1 - r["train_acc"] for r in hist], marker="o", label=act)
    ax.axhline(threshold, color="grey", linestyle="--", label=f"{threshold:.0%} threshold")
    ax.set(xlabel="epoch", ylabel="training error", title="Same CNN, different activations", yscale="log")
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
    ax.legend()
    save_png(fig, path, dpi=110)
