"""`normalization`: none / batch / layer / instance / group norm on the same CNN, and batch-size sensitivity.

Batch norm speeds up and stabilises training at ordinary batch sizes, but its batch statistics become noise
at a batch of 2, where group norm (statistics per sample) does not care (Wu & He 2018).
"""
from __future__ import annotations

from pathlib import Path

from ..plots_common import save_figure
from ..progress import track
from .common import digits_subset, train_quietly
from .registry import ExperimentResult, register_experiment

NORMS = ["none", "batch", "layer", "instance", "group"]
BASE = ["model.widths=[16,32,64]", "model.convs=1", "data.augment=[]", "optim.lr=0.003"]


@register_experiment("normalization", "Normalisation speeds convergence; batch norm degrades at batch size 2, group norm does not")
def run(quick: bool, out: Path) -> ExperimentResult:
    ds = digits_subset(per_class=100 if quick else None)
    epochs = 4 if quick else 10
    rows, histories = [], {}
    jobs = [(n, 64) for n in NORMS] + [("batch", 2), ("group", 2)]
    for norm, bs in track(jobs, description="normalization: training"):
        small_epochs = 1 if (bs == 2 and quick) else (2 if bs == 2 else epochs)
        res = train_quietly(ds, BASE + [f"model.norm={norm}", f"train.batch_size={bs}", f"train.epochs={small_epochs}"])
        hist = res["history"]
        if bs == 64:
            histories[norm] = hist
        rows.append({"norm": norm, "batch_size": bs, "epochs": small_epochs, "val_acc_epoch1": hist[0].get("val_acc"),
                     "final_val_acc": hist[-1].get("val_acc"), "test_acc": res["test_acc"], "seconds": res["seconds"]})
    plot = out / "normalization_val_acc.png"
    _plot(histories, plot)
    acc = {(r["norm"], r["batch_size"]): r["test_acc"] for r in rows}
    drop_bn = acc[("batch", 64)] - acc[("batch", 2)]
    drop_gn = acc[("group", 64)] - acc[("group", 2)]
    checks = {"batch norm beats no norm": acc[("batch", 64)] >= acc[("none", 64)],
              "batch norm loses more than group norm at batch 2": drop_bn > drop_gn}
    best = max(NORMS, key=lambda n: acc[(n, 64)])
    lines = [", ".join(f"{n} {acc[(n, 64)]:.3f}" for n in NORMS) + f" test accuracy after {epochs} epochs at batch 64; best: {best}.",
             f"At batch size 2, batch norm's test accuracy is {acc[('batch', 2)]:.3f} ({drop_bn:+.3f} below batch 64) and "
             f"group norm's {acc[('group', 2)]:.3f} ({drop_gn:+.3f} below).",
             f"{sum(checks.values())} of {len(checks)} claims reproduced here."]
    return ExperimentResult(rows, "\n".join(lines), [plot], checks)


def _plot(histories: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for norm, hist in histories.items():
        ax.plot([r["epoch"] for r in hist], [r["val_acc"] for r in hist], marker="o", label=norm)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Normalisation layers (batch 64)")
    ax.legend()
    save_figure(fig, path)
