"""`normalization`: none / batch / layer / instance / group norm on the same CNN, and batch-size sensitivity.

Batch norm speeds up and stabilises training at ordinary batch sizes, but its batch statistics become noise
at a batch of 2, where group norm (statistics per sample) does not care (Wu & He 2018).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

NORMS = ["none", "batch", "layer", "instance", "group"]
# SGD with momentum at a high rate, where normalisation matters most; the digits in full, few epochs.
BASE = ["model.widths=[16,32,64]", "model.convs=1", "data.augment=[]", "optim.name=sgd", "optim.momentum=0.9",
        "optim.weight_decay=0", "schedule.name=onecycle"]
LR = 0.2  # high enough that the net without normalisation fails to train: where BN shines
SMALL_BATCH = 2


@register_experiment("normalization", "Normalisation speeds convergence; batch norm degrades at batch size 2, group norm does not")
def run(quick: bool, out: Path) -> ExperimentResult:
    epochs = 2 if quick else 6
    ds = digits_subset()
    steps = epochs * math.ceil(len(ds.labels) * 0.7 / 64)  # the default split trains on 70%
    # Batch 2 gets the SAME number of steps as batch 64: a training split sized for one epoch of them (the rest
    # of the digits become a large test set), and the rate scaled by sqrt(batch ratio) so that neither norm is
    # simply knocked out by too large a step.
    small_train = steps * SMALL_BATCH / len(ds.labels)
    small_split = ["data.val_fraction=0.05", f"data.test_fraction={1 - 0.05 - small_train:.4f}"]
    small_lr = LR * math.sqrt(SMALL_BATCH / 64)
    jobs = [(n, 64, [], epochs, LR) for n in NORMS] + [(n, SMALL_BATCH, small_split, 1, small_lr) for n in ("batch", "group")]
    rows = []
    for norm, bs, split, n_epochs, lr in track(jobs, description="normalization: training"):
        res = train_quietly(ds, BASE + split + [f"model.norm={norm}", f"train.batch_size={bs}",
                                                f"train.epochs={n_epochs}", f"optim.lr={lr:.4g}"])
        hist = res["history"]
        rows.append({"norm": norm, "batch_size": bs, "lr": lr, "steps": n_epochs * res["steps_per_epoch"],
                     "train_images": res["train_images"], "final_train_acc": hist[-1]["train_acc"],
                     "final_val_acc": hist[-1].get("val_acc"), "test_acc": res["test_acc"], "seconds": res["seconds"]})
    plot = out / "normalization_test_acc.png"
    _plot(rows, plot)
    conclusion, checks = _conclude(rows, epochs)
    return ExperimentResult(rows, conclusion, [plot], checks)


def _conclude(rows: list[dict], epochs: int) -> tuple[str, dict[str, bool]]:
    acc = {(r["norm"], r["batch_size"]): r["test_acc"] for r in rows}
    drop_bn = acc[("batch", 64)] - acc[("batch", SMALL_BATCH)]
    drop_gn = acc[("group", 64)] - acc[("group", SMALL_BATCH)]
    normed = [n for n in NORMS if n != "none"]
    checks = {"batch norm beats no norm": acc[("batch", 64)] > acc[("none", 64)],
              "every norm beats no norm": all(acc[(n, 64)] > acc[("none", 64)] for n in normed),
              f"batch norm loses more than group norm at batch {SMALL_BATCH}": drop_bn > drop_gn}
    best = max(NORMS, key=lambda n: acc[(n, 64)])
    steps = next(r["steps"] for r in rows if r["batch_size"] == SMALL_BATCH)
    lines = [", ".join(f"{n} {acc[(n, 64)]:.3f}" for n in NORMS) + f" test accuracy after {epochs} epochs at batch 64; "
             f"best: {best}.",
             f"At batch size {SMALL_BATCH} (the same ~{steps} steps), batch norm reaches {acc[('batch', SMALL_BATCH)]:.3f} "
             f"({drop_bn:+.3f} below batch 64) and group norm {acc[('group', SMALL_BATCH)]:.3f} ({drop_gn:+.3f} below).",
             *([f"Both barely learn at batch {SMALL_BATCH} in so few steps (below 50%), so that comparison says little here."]
               if max(acc[("batch", SMALL_BATCH)], acc[("group", SMALL_BATCH)]) < 0.5 else []),
             checks_line(checks)]
    return "\n".join(lines), checks


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [5, 3]})
    big = [r for r in rows if r["batch_size"] == 64]
    left.bar([r["norm"] for r in big], [r["test_acc"] for r in big])
    left.set(ylabel="test accuracy", title="batch 64", ylim=(0, 1))
    for i, norm in enumerate(("batch", "group")):
        pair = [r for r in rows if r["norm"] == norm]
        right.bar([i - 0.2, i + 0.2], [r["test_acc"] for r in pair], width=0.4, color=["tab:blue", "tab:orange"])
    right.set_xticks([0, 1], ["batch", "group"])
    right.set(title=f"batch 64 (blue) vs {SMALL_BATCH} (orange)\nat equal steps", ylim=(0, 1))
    save_png(fig, path, dpi=110)
