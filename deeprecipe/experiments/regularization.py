"""`regularization`: a small training set with none, dropout, weight decay, augmentation, and all of them.

With 30 images per class a CNN memorises its training set; each regulariser should shrink the gap between
training and validation accuracy, and together they should shrink it most.
"""
from __future__ import annotations

from pathlib import Path

from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

SETTINGS = {
    "none": ["model.dropout=0", "optim.weight_decay=0", "data.augment=[]"],
    "dropout": ["model.dropout=0.5", "optim.weight_decay=0", "data.augment=[]"],
    "weight_decay": ["model.dropout=0", "optim.weight_decay=0.5", "data.augment=[]"],
    "augmentation": ["model.dropout=0", "optim.weight_decay=0", "data.augment=['translate:3']"],
    "all": ["model.dropout=0.5", "optim.weight_decay=0.5", "data.augment=['translate:3']"],
}


@register_experiment("regularization", "Regularisation shrinks the train–validation gap on a small training set")
def run(quick: bool, out: Path) -> ExperimentResult:
    # 100 per class, of which 30% train, 35% val, 35% test → 30 training images per class.
    ds = digits_subset(per_class=100)
    epochs = 15 if quick else 40
    rows = []
    for name, sets in track(list(SETTINGS.items()), description="regularization: training"):
        res = train_quietly(ds, sets + ["model.widths=[32,64,128]", "model.convs=1", "data.val_fraction=0.35",
                                        "data.test_fraction=0.35", f"train.epochs={epochs}", "train.batch_size=32"])
        last = res["history"][-1]
        rows.append({"setting": name, "train_acc": last["train_acc"], "val_acc": last["val_acc"],
                     "gap": last["train_acc"] - last["val_acc"], "test_acc": res["test_acc"]})
    plot = out / "regularization_gap.png"
    _plot(rows, plot)
    gap = {r["setting"]: r["gap"] for r in rows}
    smallest = min(gap, key=gap.get)
    checks = {"every regulariser shrinks the gap": all(gap[k] <= gap["none"] for k in SETTINGS if k != "none"),
              "all together shrinks it most": smallest == "all"}
    lines = ["train–val gap: " + ", ".join(f"{k} {v:+.3f}" for k, v in gap.items()) + f"; smallest with {smallest}.",
             checks_line(checks)]
    return ExperimentResult(rows, "\n".join(lines), [plot], checks)


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r["setting"] for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["train_acc"] for r in rows], width=0.4, label="train")
    ax.bar([i + 0.2 for i in x], [r["val_acc"] for r in rows], width=0.4, label="val")
    ax.set_xticks(list(x), names)
    ax.set(ylabel="accuracy", title="Small training set: train vs validation", ylim=(0, 1.05))
    ax.legend()
    save_png(fig, path, dpi=110)
