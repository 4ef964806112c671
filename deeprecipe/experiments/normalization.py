"""`normalization`: none / batch / layer / instance / group norm on the same CNN, and batch-size sensitivity.

Batch norm speeds up and stabilises training at ordinary batch sizes, but its batch statistics become noise
at a batch of 2, where group norm (statistics per sample) does not care (Wu & He 2018). Wu & He compare at
equal epochs and judge each norm by its drop from its own large-batch result; that is the headline here. The
equal-step comparison is kept beside it: at a batch of 2 the same number of steps sees 1/32 of the images, too
few for either norm to learn the digits — which is why group norm once stayed at chance here (330 steps,
660 images), a step budget and not a bug (the grouping is tested against torch's own group norm).
After training, the batch-2 batch-norm net's running statistics are re-estimated on the clean training data
(`train.bn_stats.reestimate_bn`, what `deeprecipe recalibrate` does) to measure what that repairs.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..progress import track
from ..plots import pyplot, save_png
from ..train.bn_stats import reestimate_bn
from .common import digits_subset, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

NORMS = ["none", "batch", "layer", "instance", "group"]
# SGD with momentum at a high rate, where normalisation matters most.
BASE = ["model.widths=[16,32,64]", "model.convs=1", "data.augment=[]", "optim.name=sgd", "optim.momentum=0.9",
        "optim.weight_decay=0", "schedule.name=onecycle"]
LR = 0.2        # high enough that the net without normalisation struggles: where BN shines
SMALL_BATCH = 2
SMALL_LR = 0.02  # a 32× smaller batch: 10× lower rate (between the sqrt and the linear scaling rules)


def _recalibrated_test_acc(res: dict) -> float:
    session, trainer = res["session"], res["trainer"]
    cfg, device = session.cfg, session.device
    train = session.data.loader("train", cfg, device, augment=False, channels_last=session.channels_last)
    reestimate_bn(trainer.eval_model, (x for x, _ in train))
    return trainer.evaluate(session.data.loader("test", cfg, device, channels_last=session.channels_last))["acc"]


@register_experiment("normalization", "Normalisation speeds convergence; batch norm degrades at batch size 2, group norm much less")
def run(quick: bool, out: Path) -> ExperimentResult:
    epochs = 1 if quick else 2
    ds = digits_subset(per_class=30 if quick else None)
    steps = epochs * math.ceil(len(ds.labels) * 0.7 / 64)  # the default split trains on 70%
    # Equal steps: a training split sized for `steps` batches of 2 (the rest of the digits become a large test set),
    # the rate scaled by sqrt(batch ratio).
    small_train = steps * SMALL_BATCH / len(ds.labels)
    small_split = ["data.val_fraction=0.05", f"data.test_fraction={1 - 0.05 - small_train:.4f}"]
    jobs = ([("equal epochs", n, 64, [], LR) for n in NORMS]
            + [("equal epochs", n, SMALL_BATCH, [], SMALL_LR) for n in ("batch", "group")]
            + [("equal steps", n, SMALL_BATCH, small_split, LR * math.sqrt(SMALL_BATCH / 64)) for n in ("batch", "group")])
    rows = []
    for compare, norm, bs, split, lr in track(jobs, description="normalization: training"):
        n_epochs = epochs if compare == "equal epochs" else 1
        res = train_quietly(ds, BASE + split + [f"model.norm={norm}", f"train.batch_size={bs}",
                                                f"train.epochs={n_epochs}", f"optim.lr={lr:.4g}"])
        hist = res["history"]
        row = {"compare": compare, "norm": norm, "batch_size": bs, "lr": round(lr, 4), "epochs": n_epochs,
               "steps": n_epochs * res["steps_per_epoch"], "images_seen": n_epochs * res["train_images"],
               "final_train_acc": hist[-1]["train_acc"], "test_acc": res["test_acc"], "seconds": res["seconds"],
               "test_acc_bn_recalibrated": None}
        if norm == "batch" and bs == SMALL_BATCH:
            row["test_acc_bn_recalibrated"] = _recalibrated_test_acc(res)
        rows.append(row)
    plot = out / "normalization_test_acc.png"
    _plot(rows, plot)
    conclusion, checks = _conclude(rows, epochs)
    return ExperimentResult(rows, conclusion, [plot], checks)


def _conclude(rows: list[dict], epochs: int) -> tuple[str, dict[str, bool]]:
    acc = {(r["compare"], r["norm"], r["batch_size"]): r["test_acc"] for r in rows}
    big = {n: acc[("equal epochs", n, 64)] for n in NORMS}
    small = {n: acc[("equal epochs", n, SMALL_BATCH)] for n in ("batch", "group")}
    steps = {n: acc[("equal steps", n, SMALL_BATCH)] for n in ("batch", "group")}
    drop = {n: big[n] - small[n] for n in small}
    bn_small = next(r for r in rows if r["compare"] == "equal epochs" and r["norm"] == "batch" and r["batch_size"] == SMALL_BATCH)
    bn_steps = next(r for r in rows if r["compare"] == "equal steps" and r["norm"] == "batch")
    checks = {"batch norm beats no norm at batch 64": big["batch"] > big["none"],
              f"group norm learns at batch {SMALL_BATCH} (equal epochs)": small["group"] > 0.5,
              f"batch norm drops more than group norm from batch 64 to {SMALL_BATCH} (equal epochs)": drop["batch"] > drop["group"]}
    best = max(NORMS, key=big.get)
    lines = [", ".join(f"{n} {big[n]:.3f}" for n in NORMS) + f" test accuracy after {epochs} epoch(s) at batch 64; best: {best}.",
             f"Equal epochs at batch {SMALL_BATCH}: batch norm {small['batch']:.3f} ({-drop['batch']:+.3f} against its batch-64 "
             f"result), group norm {small['group']:.3f} ({-drop['group']:+.3f} against its own).",
             f"Equal steps ({bn_steps['steps']} steps, {bn_steps['images_seen']} images seen) at batch {SMALL_BATCH}: "
             f"batch norm {steps['batch']:.3f}, group norm {steps['group']:.3f} — too few images for a fair verdict.",
             f"Re-estimating the batch-{SMALL_BATCH} batch-norm statistics on clean training data: test accuracy "
             f"{bn_small['test_acc']:.3f} → {bn_small['test_acc_bn_recalibrated']:.3f} (equal epochs), "
             f"{bn_steps['test_acc']:.3f} → {bn_steps['test_acc_bn_recalibrated']:.3f} (equal steps).",
             checks_line(checks)]
    return "\n".join(lines), checks


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [5, 4]})
    big = [r for r in rows if r["batch_size"] == 64]
    left.bar([r["norm"] for r in big], [r["test_acc"] for r in big])
    left.set(ylabel="test accuracy", title="batch 64", ylim=(0, 1))
    settings = [("equal epochs", 64, "batch 64"), ("equal epochs", SMALL_BATCH, f"batch {SMALL_BATCH}, equal epochs"),
                ("equal steps", SMALL_BATCH, f"batch {SMALL_BATCH}, equal steps")]
    for i, norm in enumerate(("batch", "group")):
        for j, (compare, bs, label) in enumerate(settings):
            r = next(r for r in rows if (r["compare"], r["norm"], r["batch_size"]) == (compare, norm, bs))
            right.bar(i + (j - 1) * 0.27, r["test_acc"], width=0.27, color=f"C{j}", label=label if i == 0 else None)
    right.set_xticks([0, 1], ["batch norm", "group norm"])
    right.set(title=f"batch 64 vs {SMALL_BATCH}", ylim=(0, 1))
    right.legend(fontsize=7)
    save_png(fig, path, dpi=110)
