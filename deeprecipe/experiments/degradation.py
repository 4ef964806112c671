"""`degradation`: plain vs residual nets at two depths (He et al. 2016, Fig. 1 and 6).

A deeper plain net (3×3 conv stacks with batch norm, no shortcuts) reaches a *higher training* error than a
shallower one — not overfitting but an optimisation problem; the same nets with identity shortcuts do not
suffer. Here: the CIFAR-style plain/resnet of 20 and 56 layers, narrowed to fit a CPU budget, on the digits.
"""
from __future__ import annotations

from pathlib import Path

from ..plots import pyplot, save_png
from ..progress import track
from .common import digits_subset, downsampled, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

# Quick (about 11 s of CPU): 30 digits a class averaged down to 14×14, batch 32, 6 epochs (42 steps) — enough for
# plain-56 to stay near chance while plain-20 and both residual nets learn; too few steps for resnet-20 and -56 to
# end within two points of each other on every seed.
QUICK = dict(depths=(20, 56), width=8, epochs=6, per_class=30, side=14, batch_size=32)
FULL = dict(depths=(20, 56), width=8, epochs=8, per_class=None, side=None, batch_size=64)  # a 2-core CPU budget (~6 min)
TRAIN = ["optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9", "optim.weight_decay=0", "schedule.name=onecycle",
         "data.augment=[]"]
MARGIN = 0.02  # training-error differences below two points count as "no worse"


@register_experiment("degradation", "Deeper plain nets train worse (higher training error); deeper residual nets do not")
def run(quick: bool, out: Path) -> ExperimentResult:
    setup = QUICK if quick else FULL
    ds = digits_subset(per_class=setup["per_class"])
    if setup["side"]:
        ds = downsampled(ds, setup["side"])
    jobs = [(kind, depth) for depth in setup["depths"] for kind in ("plain", "resnet")]
    rows, curves = [], {}
    for kind, depth in track(jobs, description="degradation: training"):
        res = train_quietly(ds, TRAIN + [f"model.name={kind}{depth}", f"model.width={setup['width']}",
                                         f"train.epochs={setup['epochs']}",
                                         f"train.batch_size={setup['batch_size']}"])
        errors = [1 - h["train_acc"] for h in res["history"]]
        curves[(kind, depth)] = errors
        rows.append({"net": f"{kind}{depth}", "kind": kind, "depth": depth, "params": res["params"],
                     "final_train_error": errors[-1], "best_train_error": min(errors),
                     "val_error": 1 - res["history"][-1]["val_acc"], "test_error": 1 - res["test_acc"],
                     "seconds": res["seconds"]})
    plot = out / "degradation_train_error.png"
    _plot(curves, plot)
    conclusion, checks = _conclude(rows, setup)
    return ExperimentResult(rows, conclusion, [plot], checks)


def _conclude(rows: list[dict], setup: dict) -> tuple[str, dict[str, bool]]:
    err = {(r["kind"], r["depth"]): r["final_train_error"] for r in rows}
    shallow, deep = min(setup["depths"]), max(setup["depths"])
    plain_gap = err[("plain", deep)] - err[("plain", shallow)]
    res_gap = err[("resnet", deep)] - err[("resnet", shallow)]
    checks = {f"plain{deep} trains worse than plain{shallow}": plain_gap > MARGIN,
              f"resnet{deep} trains no worse than resnet{shallow}": res_gap <= MARGIN,
              f"resnet{deep} beats plain{deep}": err[("resnet", deep)] < err[("plain", deep)]}
    lines = [f"final training error after {setup['epochs']} epochs (width {setup['width']}): "
             + ", ".join(f"{r['net']} {r['final_train_error']:.3f}" for r in rows) + ".",
             f"plain: {deep} layers {'worse' if plain_gap > MARGIN else 'not worse'} than {shallow} by {plain_gap:+.3f}; "
             f"residual: {deep} layers {'worse' if res_gap > MARGIN else 'no worse'} than {shallow} ({res_gap:+.3f}).",
             checks_line(checks)]
    return "\n".join(lines), checks


def _plot(curves: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, kind in zip(axes, ("plain", "resnet")):
        for (k, depth), errors in sorted(curves.items(), key=lambda kv: kv[0][1]):
            if k == kind:
                ax.plot(range(1, len(errors) + 1), errors, marker="o", label=f"{k}-{depth}")
        ax.set(title=f"{kind} nets", xlabel="epoch", ylabel="training error", yscale="log")
        ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
        ax.legend()
    save_png(fig, path, dpi=110)
