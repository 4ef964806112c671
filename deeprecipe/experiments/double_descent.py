"""`double-descent`: test error over model width on a small set with noisy labels (Nakkiran et al. 2020).

"Deep double descent": as a model grows, test error first falls, then rises to a peak near the *interpolation
threshold* — the smallest size that can just fit the (noisy) training set — and falls again beyond it; label
noise makes the peak stronger. Here: a one-hidden-layer MLP of growing width on a few hundred digits averaged
down to 8×8 pixels (at 28×28 even a width-8 net has 6,370 weights for 500 images, and no peak showed), a fixed
share of the training labels replaced by a wrong class (validation is not used; the test set keeps the true
labels), no regularisation of any kind, Adam at a constant rate, trained until the training set is fitted (zero
training error) or the epoch budget ends. The result is reported as found: the conclusion says whether a peak
near the threshold appeared.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.sources import ImageSet
from ..plots import pyplot, save_png
from ..progress import track
from .common import downsampled, evaluate_clean, per_class_split, train_quietly
from .registry import ExperimentResult, checks_line, register_experiment

NOISE = 0.2
SIDE = 8        # digits averaged down to 8×8: 64 inputs, so that narrow nets are under-parameterised
FITTED = 0.01   # "interpolates": training error (on the noisy labels) at or below this
MARGIN = 0.01   # a peak must stand this far above the best error on each side
BASE = ["model.name=mlp", "model.depth=1", "model.dropout=0", "optim.name=adam", "optim.lr=1e-3", "optim.weight_decay=0",
        "schedule.name=constant", "data.augment=[]", "regularize.label_smoothing=0", "regularize.restore_best=false",
        "train.batch_size=64"]


def with_noisy_labels(ds: ImageSet, fraction: float, seed: int = 0) -> ImageSet:
    """The same images and split; `fraction` of the training labels replaced by a different class at random."""
    labels = ds.labels.clone()
    train = torch.from_numpy(ds.splits["train"]).long()
    g = torch.Generator().manual_seed(seed)
    flip = train[torch.randperm(len(train), generator=g)[:round(fraction * len(train))]]
    k = len(ds.classes)
    labels[flip] = (labels[flip] + torch.randint(1, k, (len(flip),), generator=g)) % k  # never the true class
    return ImageSet(ds.images, labels, ds.classes, splits=ds.splits, name=f"{ds.name}, {fraction:.0%} noisy training labels")


def _stop_when_fitted(trainer, row) -> None:
    if 1.0 - row["train_acc"] <= FITTED / 2:  # the running training error: the net is past the threshold
        trainer.state.stopped_early = True


@register_experiment("double-descent", "Test error over width rises near the interpolation threshold, then falls again "
                                       "(label noise makes it show)")
def run(quick: bool, out: Path) -> ExperimentResult:
    per_class, widths, epochs = (10, [2, 16, 256], 100) if quick else (50, [4, 8, 16, 32, 48, 64, 96, 128, 256, 1024], 500)
    ds = downsampled(with_noisy_labels(per_class_split(per_class, 0, 200, seed=0), NOISE), SIDE)
    rows = []
    for width in track(widths, description="double-descent: training"):
        res = train_quietly(ds, BASE + [f"model.width={width}", f"train.epochs={epochs}"],
                            hooks={"on_epoch_end": [_stop_when_fitted]})
        train_acc = evaluate_clean(res, "train")["acc"]
        rows.append({"width": width, "params": res["params"], "train_images": res["train_images"],
                     "epochs_run": len(res["history"]), "train_error": 1.0 - train_acc,
                     "test_error": 1.0 - res["test_acc"], "seconds": res["seconds"]})
    plot = out / "double_descent.png"
    conclusion, checks, threshold = _conclude(rows, epochs)
    _plot(rows, threshold, plot)
    return ExperimentResult(rows, conclusion, [plot], checks)


def interpolation_threshold(rows: list[dict]) -> int | None:
    """The smallest width whose training error (noisy labels) is at most FITTED."""
    return next((r["width"] for r in rows if r["train_error"] <= FITTED), None)


def peak_near(rows: list[dict], threshold: int | None) -> dict | None:
    """A width within one step of the threshold whose test error stands MARGIN above the best error of
    some narrower width and of some wider one: test error rose, then fell."""
    if threshold is None:
        return None
    widths = [r["width"] for r in rows]
    i = widths.index(threshold)
    best = None
    for j in range(max(1, i - 1), min(len(rows) - 1, i + 2)):
        err = rows[j]["test_error"]
        left = min(r["test_error"] for r in rows[:j])
        right = min(r["test_error"] for r in rows[j + 1:])
        if err > left + MARGIN and err > right + MARGIN and (best is None or err > best["test_error"]):
            best = rows[j]
    return best


def _conclude(rows: list[dict], epochs: int) -> tuple[str, dict[str, bool], int | None]:
    threshold = interpolation_threshold(rows)
    peak = peak_near(rows, threshold)
    widest = rows[-1]
    checks = {"the widest net fits its noisy training set": widest["train_error"] <= FITTED,
              "a test-error peak near the interpolation threshold, lower again for wider nets": peak is not None}
    lines = ["test error by width: " + ", ".join(f"{r['width']} {r['test_error']:.3f}" for r in rows) + ".",
             (f"interpolation threshold (training error ≤ {FITTED:.0%} on the {NOISE:.0%}-noisy labels): width {threshold} "
              f"({next(r['params'] for r in rows if r['width'] == threshold):,} parameters, "
              f"{rows[0]['train_images']} training images)." if threshold is not None else
              f"no width fitted its training set within {epochs} epochs: the threshold was not reached.")]
    if peak is not None:
        lines.append(f"Peak at width {peak['width']}: test error {peak['test_error']:.3f}, above the best narrower "
                     f"net and falling to {widest['test_error']:.3f} at width {widest['width']} — double descent, as "
                     f"Nakkiran et al. report.")
    else:
        best = min(rows, key=lambda r: r["test_error"])
        lines.append(f"No peak of more than {MARGIN:.0%} near the threshold: test error was lowest at width "
                     f"{best['width']} ({best['test_error']:.3f}); as found, the curve did not descend twice here.")
    lines.append(checks_line(checks))
    return "\n".join(lines), checks, threshold


def _plot(rows: list[dict], threshold: int | None, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    widths = [r["width"] for r in rows]
    ax.plot(widths, [r["test_error"] for r in rows], marker="o", label="test error (true labels)")
    ax.plot(widths, [r["train_error"] for r in rows], marker="s", linestyle="--", label=f"training error ({NOISE:.0%} noisy labels)")
    if threshold is not None:
        ax.axvline(threshold, color="grey", lw=0.8, label="interpolation threshold")
    ax.set(xscale="log", xlabel="hidden units (one-layer MLP)", ylabel="error", title="Test and training error over width")
    ax.legend(fontsize=8)
    save_png(fig, path, dpi=110)
