"""`memorization`: the same CNN fits random labels — more slowly — and then predicts at chance (Zhang et al. 2017).

"Understanding deep learning requires rethinking generalization": a network that generalises on real labels can
also reach (near) 100% training accuracy when every training label is replaced by a random one, only taking longer;
its test accuracy on the true labels then stays at chance, so capacity alone does not explain generalisation.
Here: a digits subset, the training labels shuffled (a permutation, so the classes stay balanced; validation and
test keep their true labels), no augmentation, dropout or weight decay, Adam at a constant rate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.sources import ImageSet
from ..data.split import split_indices
from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

FIT = 0.95  # "fitted": training accuracy at or above this
BASE = ["model.widths=[32,64,128]", "model.convs=1", "model.dropout=0", "data.augment=[]", "optim.name=adam",
        "optim.lr=3e-3", "optim.weight_decay=0", "schedule.name=constant", "train.batch_size=32"]


def with_random_labels(ds: ImageSet, splits: dict[str, np.ndarray], seed: int = 0) -> ImageSet:
    """The same images and split, the training labels permuted at random (validation and test keep the truth)."""
    labels = ds.labels.clone()
    train = torch.from_numpy(splits["train"]).long()
    g = torch.Generator().manual_seed(seed)
    labels[train] = labels[train][torch.randperm(len(train), generator=g)]
    return ImageSet(ds.images, labels, ds.classes, splits=splits, name=f"{ds.name}, random training labels")


def first_epoch_at(history: list[dict], acc: float) -> int | None:
    return next((r["epoch"] for r in history if r["train_acc"] >= acc), None)


@register_experiment("memorization", "The same net fits random labels, more slowly, and its test accuracy stays at chance")
def run(quick: bool, out: Path) -> ExperimentResult:
    per_class, epochs = (10, 12) if quick else (50, 60)
    ds = digits_subset(per_class=per_class)
    splits = split_indices(ds.labels.numpy(), 0.2, 0.3, 0)  # half the images train
    sets = {"true labels": ImageSet(ds.images, ds.labels, ds.classes, splits=splits, name=ds.name),
            "random labels": with_random_labels(ds, splits)}
    rows, histories = [], {}
    for name, data in track(list(sets.items()), description="memorization: training"):
        res = train_quietly(data, BASE + [f"train.epochs={epochs}"])
        hist = histories[name] = res["history"]
        rows.append({"labels": name, "train_images": res["train_images"], "epochs": epochs,
                     f"epochs_to_{FIT:.0%}_train_acc": first_epoch_at(hist, FIT),
                     "final_train_acc": hist[-1]["train_acc"], "val_acc": hist[-1]["val_acc"], "test_acc": res["test_acc"]})
    plot = out / "memorization_train_acc.png"
    _plot(histories, plot)
    conclusion, checks = _conclude(rows, len(ds.classes))
    return ExperimentResult(rows, conclusion, [plot], checks)


def _conclude(rows: list[dict], num_classes: int) -> tuple[str, dict[str, bool]]:
    by = {r["labels"]: r for r in rows}
    key = f"epochs_to_{FIT:.0%}_train_acc"
    true_fit, rand_fit = by["true labels"][key], by["random labels"][key]
    chance = 1.0 / num_classes
    rand_test = by["random labels"]["test_acc"]
    checks = {f"random labels reach {FIT:.0%} training accuracy": rand_fit is not None,
              "random labels take longer than true ones": true_fit is not None and (rand_fit is None or rand_fit > true_fit),
              "test accuracy with random labels stays near chance": rand_test < chance + 0.1,
              "test accuracy with true labels far above chance": by["true labels"]["test_acc"] > chance + 0.3}
    epochs = rows[0]["epochs"]

    def reached(v):
        return f"{v} epoch(s)" if v is not None else f"not within {epochs} epochs"
    lines = [f"{FIT:.0%} training accuracy: true labels {reached(true_fit)}, random labels {reached(rand_fit)}"
             + (f" ({rand_fit / true_fit:.1f}× longer)." if rand_fit and true_fit else "."),
             f"Test accuracy on the true labels: {by['true labels']['test_acc']:.3f} after training on true labels, "
             f"{rand_test:.3f} after random ones (chance {chance:.2f}) — the memorised labels carry no information.",
             checks_line(checks, "claims of Zhang et al.")]
    return "\n".join(lines), checks


def _plot(histories: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in histories.items():
        ax.plot([r["epoch"] for r in hist], [r["train_acc"] for r in hist], label=f"{name}: train")
        ax.plot([r["epoch"] for r in hist], [r["val_acc"] for r in hist], linestyle="--", label=f"{name}: val (true labels)")
    ax.axhline(FIT, color="grey", lw=0.8)
    ax.set(xlabel="epoch", ylabel="accuracy", title="Fitting true vs random labels", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    save_png(fig, path, dpi=110)
