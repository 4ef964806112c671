"""`regularization`: a net that clearly overfits, then each regulariser alone and all of them together.

The baseline is built to overfit: 20 training images per class, no augmentation, an MLP (2 × 512 units, no
normalisation) trained for many epochs with SGD — it reaches 100% training accuracy far above its validation
accuracy. Each regulariser (dropout, weight decay, augmentation, label smoothing) is then switched on alone,
and all of them together, over several seeds (each seed draws its own training images and initialisation).
The gap is the *clean* training accuracy (no augmentation, dropout off) minus the validation accuracy.

Weight decay is SGD's coupled L2 (the gradient gets `wd · w`) on a net without normalisation: there it
bounds the function the net computes. Under batch norm the conv weights are scale-invariant and decay only
changes their effective learning rate, which is why an earlier design (a batch-normed CNN, AdamW) saw no
effect from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import pyplot, save_png
from ..progress import track
from .common import evaluate_clean, per_class_split, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

DROPOUT = "model.dropout=0.5"
WEIGHT_DECAY = "optim.weight_decay=5e-2"
AUGMENT = "data.augment=['translate:2','rotate:10']"
SMOOTHING = "regularize.label_smoothing=0.1"
SETTINGS = {
    "none": [],
    "dropout": [DROPOUT],
    "weight_decay": [WEIGHT_DECAY],
    "augmentation": [AUGMENT],
    "label_smoothing": [SMOOTHING],
    "all": [DROPOUT, WEIGHT_DECAY, AUGMENT, SMOOTHING],
}
# Everything off unless a setting turns it on; the last epoch's weights are kept (no best-epoch restore,
# which would be early stopping, a regulariser of its own).
BASE = ["model.name=mlp", "model.depth=2", "model.width=512", "model.dropout=0", "optim.name=sgd", "optim.lr=0.02",
        "optim.momentum=0.9", "optim.weight_decay=0", "schedule.name=cosine", "data.augment=[]",
        "regularize.label_smoothing=0", "regularize.restore_best=false", "train.batch_size=32"]


@register_experiment("regularization", "Regularisation shrinks the train–validation gap of a net that overfits")
def run(quick: bool, out: Path) -> ExperimentResult:
    per_class, held_out, epochs, seeds = (10, 30, 12, [0]) if quick else (20, 100, 60, [0, 1, 2])
    runs = [(name, seed) for seed in seeds for name in SETTINGS]
    measured: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for name, seed in track(runs, description="regularization: training"):
        ds = per_class_split(per_class, held_out, held_out, seed)
        res = train_quietly(ds, BASE + SETTINGS[name] + [f"train.epochs={epochs}", f"train.seed={seed}"])
        train, val = evaluate_clean(res, "train"), evaluate_clean(res, "val")
        measured[name].append({"train_acc": train["acc"], "val_acc": val["acc"], "gap": train["acc"] - val["acc"],
                               "loss_gap": val["loss"] - train["loss"], "test_acc": res["test_acc"]})
    rows = [_summary(name, per_class, epochs, ms) for name, ms in measured.items()]
    plot = out / "regularization_gap.png"
    _plot(rows, plot)
    conclusion, checks = _conclude(rows, len(seeds))
    return ExperimentResult(rows, conclusion, [plot], checks)


def _summary(name: str, per_class: int, epochs: int, ms: list[dict]) -> dict:
    row = {"setting": name, "train_per_class": per_class, "epochs": epochs, "seeds": len(ms)}
    for key in ("train_acc", "val_acc", "gap", "loss_gap", "test_acc"):
        values = np.array([m[key] for m in ms])
        row[f"{key}_mean"] = float(values.mean())
        row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    row["gap_per_seed"] = " / ".join(f"{m['gap']:.3f}" for m in ms)
    return row


def _conclude(rows: list[dict], seeds: int) -> tuple[str, dict[str, bool]]:
    by = {r["setting"]: r for r in rows}
    none = by["none"]
    # "Shrinks" = by more than the larger of the two settings' seed std (with one seed: any shrink). The loss gap
    # is checked too: a ReLU net without biases is positively homogeneous, so shrinking its weights (decay)
    # or its logits (smoothing) changes how confident it is, which the loss sees and the argmax does not.
    def shrinks(name, key="gap"):
        return none[f"{key}_mean"] - by[name][f"{key}_mean"] > max(none[f"{key}_std"], by[name][f"{key}_std"])
    alone = [n for n in SETTINGS if n not in ("none", "all")]
    checks = {"the baseline overfits (clean train accuracy ≥ 0.99, gap ≥ 0.1)":
                  none["train_acc_mean"] >= 0.99 and none["gap_mean"] >= 0.1,
              **{f"{n} alone shrinks the gap": shrinks(n) for n in alone},
              "all together shrink the gap": shrinks("all"),
              "all together shrink it most": min(by, key=lambda n: by[n]["gap_mean"]) == "all",
              **{f"{n} alone shrinks the loss gap": shrinks(n, "loss_gap") for n in alone}}
    lines = [f"train–val accuracy gap (mean ± std over {seeds} seed(s)): "
             + ", ".join(f"{r['setting']} {r['gap_mean']:+.3f} ± {r['gap_std']:.3f}" for r in rows) + ".",
             "val − train cross-entropy: "
             + ", ".join(f"{r['setting']} {r['loss_gap_mean']:+.2f} ± {r['loss_gap_std']:.2f}" for r in rows) + ".",
             f"Without regularisation the net fits {none['train_acc_mean']:.1%} of its training images and "
             f"{none['val_acc_mean']:.1%} of the validation images; all together: "
             f"{by['all']['train_acc_mean']:.1%} and {by['all']['val_acc_mean']:.1%}.",
             checks_line(checks)]
    return "\n".join(lines), checks


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    names = [r["setting"].replace("_", "\n") for r in rows]
    x = np.arange(len(rows))
    for off, key, label in ((-0.2, "train_acc", "train (clean)"), (0.2, "val_acc", "validation")):
        left.bar(x + off, [r[f"{key}_mean"] for r in rows], width=0.4, yerr=[r[f"{key}_std"] for r in rows],
                 capsize=3, label=label)
    left.set_xticks(x, names, fontsize=8)
    left.set(ylabel="accuracy", title="Train vs validation accuracy (mean ± std over seeds)", ylim=(0, 1.15))
    left.legend(fontsize=8, loc="upper right", ncols=2)
    acc = right.bar(x - 0.2, [r["gap_mean"] for r in rows], yerr=[r["gap_std"] for r in rows], width=0.4, capsize=3,
                    color="C3", label="accuracy: train − val (left axis)")
    twin = right.twinx()
    loss = twin.bar(x + 0.2, [r["loss_gap_mean"] for r in rows], yerr=[r["loss_gap_std"] for r in rows], width=0.4,
                    capsize=3, color="C4", label="cross-entropy: val − train (right axis)")
    right.set_xticks(x, names, fontsize=8)
    right.set(ylabel="accuracy gap", title="Generalisation gap (mean ± std over seeds)")
    right.set_ylim(0, 1.3 * max(r["gap_mean"] + r["gap_std"] for r in rows))
    twin.set_ylim(0, 1.3 * max(r["loss_gap_mean"] + r["loss_gap_std"] for r in rows))
    twin.set_ylabel("loss gap")
    right.legend(handles=[acc, loss], fontsize=8, loc="upper right")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
