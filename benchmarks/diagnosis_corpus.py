"""Regenerate the diagnosis corpus: real training runs made with known causes, kept as small JSON histories.

    nice python -m benchmarks.diagnosis_corpus [--out tests/data/diagnosis_corpus] [--part tune|heldout|all]
                                               [--only SCENARIO,...] [--setups SETUP,...] [--jobs 1]

Each run trains a tiny model (MLP, LeNet-5, a narrow convnet) for a few epochs on one thread, on the built-in
MNIST subset, the built-in 8×8 digits, or crops of the real RGB photos that scikit-image and scikit-learn
ship (no downloads), with validation sets from ~20 to 1,000 images. A cause is one deliberate change to a
well-tuned base setup: the learning rate 10× or 30× too high, 30× too low, too few epochs, a model too small,
no regularisation on tiny data for many epochs, 30 % of the labels flipped — and healthy runs of the base
under one-cycle, cosine, step and constant schedules, and one-cycle with label smoothing 0.1. Every run lands in OUT/PART/NAME.json with its
per-epoch metrics and what made it (cause, data set, split sizes, schedule, class count, seed).

Six split-size sets ("tune", "heldout", "heldout2" … "heldout5": other images per class and validation fractions,
each spanning ~20 to 1,000 validation images) and seeds 0-27 make the parts. The "tune" folder (seeds 0-1 with the
"tune" sizes, 2-7 with the "heldout" sizes, 8-10 with "heldout2", 11-13 with "heldout3", 14-19 with "heldout4") is
what the diagnosis rules were chosen on; seeds 2-4, 5-7, 8-13 and then 14-19 were each a held-back part once,
scored once with the rules of their day, and moved into "tune" when the rules were next revised. The "heldout"
folder holds seeds 20-27 with the "heldout5" sizes, trained into a folder outside the corpus while the current
rules were chosen on seeds 0-19 and scored once with them fixed (docs/recipe.md, tests/test_diagnosis_corpus.py).
A record's "part" names the split-size set it was made with; `--seeds` trains a subset of a part's seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "diagnosis_corpus"
CACHE = Path("/tmp/deeprecipe_corpus_data")
PHOTO_SIZE = 32

# ------------------------------------------------------------------------------------------ data
def photo_crops(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Random crops (40–160 px, resized to 32×32, random flips) of real photos: one class per photo."""
    import skimage.data
    from skimage.transform import resize
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
    china, flower = load_sample_images().images
    photos.update(china=china, flower=flower)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, image in enumerate(photos.values()):
        h, w = image.shape[:2]
        for _ in range(per_class):
            s = int(rng.integers(40, min(160, h, w)))
            top, left = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            crop = resize(image[top:top + s, left:left + s], (PHOTO_SIZE, PHOTO_SIZE), anti_aliasing=True)
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            xs.append(np.round(crop * 255).astype(np.uint8))
            ys.append(label)
    return np.stack(xs), np.asarray(ys), list(photos)


def builtin_subset(name: str, per_class: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first `per_class` images of each class of a built-in set (all of them when 0)."""
    from deeprecipe.data.sources import load_source
    ds = load_source(f"builtin:{name}")
    x, y = ds.images[:, 0].numpy(), ds.labels.numpy()
    if per_class:
        idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
        x, y = x[idx], y[idx]
    return x, y, [str(c) for c in range(10)]


def noisy(y: np.ndarray, classes: int, fraction: float, seed: int) -> np.ndarray:
    """Flip `fraction` of the labels to another class, uniformly (the whole set: validation labels too)."""
    rng = np.random.default_rng(1000 + seed)
    y = y.copy()
    flip = rng.random(len(y)) < fraction
    y[flip] = (y[flip] + rng.integers(1, classes, flip.sum())) % classes
    return y


def data_spec(kind: str, per_class: int, label_noise: float, seed: int) -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{kind}{per_class}_noise{label_noise:g}_s{seed}.npz"
    if not path.is_file():
        if kind == "photos":
            x, y, classes = photo_crops(per_class, seed=7)  # one fixed set of crops per size
        else:
            x, y, classes = builtin_subset("mnist5k" if kind == "mnist" else "digits", per_class)
        if label_noise:
            y = noisy(y, len(classes), label_noise, seed)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:  # written whole, then renamed: parallel runs never read half a file
            np.savez(f, x=x, y=y, classes=np.asarray(classes))
        os.replace(tmp, path)
    return f"npz:{path}"


# ------------------------------------------------------------------------------------------ setups
# Data set × model with a tuned base (optimizer, lr, epochs); checked by the healthy runs' accuracy.
# "tune" and "heldout" differ in split sizes (and seeds, below).
DATASETS = {
    "mnist-mlp": dict(kind="mnist", per_class={"tune": 500, "heldout": 300, "heldout2": 400, "heldout3": 250, "heldout4": 450, "heldout5": 350},
                      val={"tune": 0.2, "heldout": 0.15, "heldout2": 0.25, "heldout3": 0.3, "heldout4": 0.22, "heldout5": 0.28},
                      model=["model.name=mlp", "model.width=128"], big=["model.name=mlp", "model.width=512"],
                      small=["model.name=mlp", "model.width=3", "model.depth=1"],
                      optim=["optim.name=adamw", "optim.lr=2e-3"], epochs=8, batch=64),
    "mnist-lenet": dict(kind="mnist", per_class={"tune": 100, "heldout": 80, "heldout2": 60, "heldout3": 120, "heldout4": 110, "heldout5": 90},
                        val={"tune": 0.25, "heldout": 0.2, "heldout2": 0.3, "heldout3": 0.15, "heldout4": 0.2, "heldout5": 0.25},
                        model=["model.name=lenet5"], big=["model.name=lenet5"],
                        small=["model.name=mlp", "model.width=2", "model.depth=1"],
                        optim=["optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9"], epochs=12, batch=32),
    "digits-mlp": dict(kind="digits", per_class={"tune": 0, "heldout": 0, "heldout2": 150, "heldout3": 100, "heldout4": 120, "heldout5": 140},
                       val={"tune": 0.1, "heldout": 0.25, "heldout2": 0.2, "heldout3": 0.3, "heldout4": 0.15, "heldout5": 0.12},
                       model=["model.name=mlp", "model.width=128"], big=["model.name=mlp", "model.width=512"],
                       small=["model.name=mlp", "model.width=3", "model.depth=1"],
                       optim=["optim.name=adamw", "optim.lr=3e-3"], epochs=10, batch=32,
                       augment=["data.augment=[]"]),  # a 2-pixel shift is a quarter of an 8×8 digit
    "photos-convnet": dict(kind="photos", per_class={"tune": 35, "heldout": 60, "heldout2": 40, "heldout3": 30, "heldout4": 45, "heldout5": 50},
                           val={"tune": 0.1, "heldout": 0.15, "heldout2": 0.1, "heldout3": 0.15, "heldout4": 0.08, "heldout5": 0.07},
                           model=["model.name=convnet", "model.widths=[16,32]", "model.convs=1"],
                           big=["model.name=mlp", "model.width=512"],  # batch-normed convnets did not overfit the crops
                           small=["model.name=mlp", "model.width=2", "model.depth=1"],
                           optim=["optim.name=adamw", "optim.lr=3e-3"], epochs=12, batch=16),
    "photos-large": dict(kind="photos", per_class={"tune": 120, "heldout": 90, "heldout2": 150, "heldout3": 100, "heldout4": 110, "heldout5": 130},
                         val={"tune": 0.25, "heldout": 0.3, "heldout2": 0.2, "heldout3": 0.25, "heldout4": 0.3, "heldout5": 0.22},
                         model=["model.name=convnet", "model.widths=[16,32]", "model.convs=1"],
                         big=["model.name=mlp", "model.width=512"],  # batch-normed convnets did not overfit the crops
                         small=["model.name=mlp", "model.width=2", "model.depth=1"],
                         optim=["optim.name=sgd", "optim.lr=0.03", "optim.momentum=0.9"], epochs=10, batch=32),
}
# Folder → (split-size set, seeds). A held-back part, once scored, moves into "tune" with its sizes and seeds,
# and a new one (new seeds, new sizes) is made before the rules are next revised.
PARTS = {"tune": [("tune", [0, 1]), ("heldout", [2, 3, 4, 5, 6, 7]), ("heldout2", [8, 9, 10]), ("heldout3", [11, 12, 13]),
                  ("heldout4", [14, 15, 16, 17, 18, 19])],
         "heldout": [("heldout5", [20, 21, 22, 23, 24, 25, 26, 27])]}
SCHEDULES = ["onecycle", "cosine", "step", "constant"]


def _lr(optim: list[str]) -> float:
    return float(next(o for o in optim if o.startswith("optim.lr=")).split("=")[1])


def _with_lr(optim: list[str], lr: float) -> list[str]:
    return [o for o in optim if not o.startswith("optim.lr=")] + [f"optim.lr={lr:g}"]


def schedule_overrides(name: str, epochs: int) -> list[str]:
    if name == "step":
        return ["schedule.name=step", f"schedule.step_size={max(1, epochs // 3)}", "schedule.gamma=0.3"]
    return [f"schedule.name={name}"]


def scenarios(setup: dict, seed: int) -> dict[str, tuple[str, list[str], float]]:
    """name → (cause, overrides beyond data/seed, label noise)."""
    e, optim = setup["epochs"], setup["optim"]
    base = setup["model"] + [f"train.batch_size={setup['batch']}"] + setup.get("augment", [])
    sched = SCHEDULES[seed % 4]  # causes rotate through the schedules with the seed
    out = {}
    for s in SCHEDULES:
        # A constant rate runs a third lower: no annealing to settle the last epochs.
        lr = _lr(optim) / (3 if s == "constant" else 1)
        out[f"healthy-{s}"] = ("healthy", base + _with_lr(optim, lr) + schedule_overrides(s, e) + [f"train.epochs={e}"], 0.0)
    # Label smoothing (the default recipe's) lifts the training loss's floor to ~0.5 for 10 classes: healthy too.
    out["healthy-smoothed"] = ("healthy", base + _with_lr(optim, _lr(optim)) + schedule_overrides("onecycle", e)
                               + [f"train.epochs={e}", "regularize.label_smoothing=0.1"], 0.0)
    for factor, cause in ((10, "lr_10x_high"), (30, "lr_30x_high")):
        out[cause] = (cause, base + _with_lr(optim, _lr(optim) * factor) + schedule_overrides(sched, e) + [f"train.epochs={e}"], 0.0)
    out["lr_30x_low"] = ("lr_30x_low", base + _with_lr(optim, _lr(optim) / 30) + schedule_overrides(sched, e)
                         + [f"train.epochs={e}"], 0.0)
    out["few_epochs"] = ("few_epochs", base + _with_lr(optim, _lr(optim) / 3) + ["schedule.name=constant", "train.epochs=2"], 0.0)
    out["model_too_small"] = ("model_too_small", setup["small"] + [f"train.batch_size={setup['batch']}"]
                              + setup.get("augment", []) + optim
                              + schedule_overrides(sched, e) + [f"train.epochs={e}"], 0.0)
    out["no_regularisation"] = ("no_regularisation", setup["big"] + [f"train.batch_size={setup['batch']}"]
                                + _with_lr(optim, _lr(optim) / 3)
                                + ["optim.weight_decay=0", "data.augment=[]", "schedule.name=constant",
                                   f"train.epochs={4 * e}", "tiny"], 0.0)  # tiny: see run_one
    out["label_noise"] = ("label_noise", setup["big"] + [f"train.batch_size={setup['batch']}"] + optim
                          + schedule_overrides(sched, 3 * e) + ["optim.weight_decay=0", "data.augment=[]", f"train.epochs={3 * e}"], 0.3)
    return out


def run_one(name: str, setup_name: str, sizes: str, seed: int, out_dir: Path) -> None:
    """Train one run of the corpus into out_dir/NAME.json (skipped when that file exists)."""
    from deeprecipe.api import Session
    from deeprecipe.config import resolve_config

    torch.set_num_threads(1)
    setup = DATASETS[setup_name]
    cause, overrides, noise = scenarios(setup, seed)[name]
    per_class = setup["per_class"][sizes]
    val_fraction = setup["val"][sizes]
    if "tiny" in overrides:  # tiny training data: a fifth of the images, half of them held out for validation
        overrides = [o for o in overrides if o != "tiny"]
        per_class, val_fraction = max(24, (per_class or 175) // 5), 0.5
    spec_kind = setup["kind"]
    spec = data_spec(spec_kind, per_class, noise, seed)
    target = out_dir / f"{setup_name}__{name}__s{seed}.json"
    if target.is_file():
        return
    cfg = resolve_config(None, [f"data.spec={spec}", f"data.val_fraction={val_fraction}",
                                f"data.test_fraction={min(0.1, 0.9 - val_fraction):g}", f"data.split_seed={seed}", f"train.seed={seed}",
                                "train.threads=1", "train.precision=fp32", "train.nan_policy=stop", *overrides])
    session = Session.create(cfg)
    trainer = session.make_trainer(None, show_progress=False)
    t0 = time.perf_counter()
    try:
        history = trainer.fit().history
        diverged = None
    except Exception as err:  # a diverged run is part of the corpus: its history up to the NaN
        history, diverged = trainer.state.history, str(err).splitlines()[0]
    record = {
        "cause": cause, "scenario": name, "setup": setup_name, "part": sizes, "seed": seed,  # part: the split sizes
        "data": spec_kind, "per_class": per_class, "label_noise": noise,
        "num_classes": len(session.data.classes), "sizes": session.data.sizes(),
        "model": cfg.model.name, "optimizer": cfg.optim.name, "lr": cfg.optim.lr,
        "schedule": cfg.schedule.model_dump(), "epochs": cfg.train.epochs,
        "label_smoothing": cfg.regularize.label_smoothing,
        "diverged": diverged, "seconds": round(time.perf_counter() - t0, 2),
        "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()
                     if k not in ("seconds", "images_per_second")} for row in history],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=None, separators=(",", ":")) + "\n")
    print(f"{target.name}: {cause} val_acc {history[-1].get('val_acc') if history else None} "
          f"({record['seconds']}s)", flush=True)


def _run(task: tuple) -> None:
    run_one(*task)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--setups", default="", help="comma-separated setup names")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    p.add_argument("--seeds", default="", help="comma-separated seeds (default: every seed of the part)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folders = list(PARTS) if args.part == "all" else [args.part]
    only = set(filter(None, args.only.split(",")))
    setups = [s for s in DATASETS if not args.setups or s in args.setups.split(",")]
    only_seeds = {int(x) for x in args.seeds.split(",") if x}
    tasks = [(name, setup_name, sizes, seed, args.out / folder)
             for folder in folders for sizes, seeds in PARTS[folder] for seed in seeds
             for setup_name in setups for name in scenarios(DATASETS[setup_name], seed)
             if (not only or name in only) and (not only_seeds or seed in only_seeds)]
    # Runs already there are skipped here, not in a worker: a fresh process per task costs seconds of imports.
    tasks = [t for t in tasks if not (t[4] / f"{t[1]}__{t[0]}__s{t[3]}.json").is_file()]
    print(f"{len(tasks)} runs to train", flush=True)
    if args.jobs <= 1:
        for task in tasks:
            _run(task)
        return
    with Pool(args.jobs, maxtasksperchild=1) as pool:  # a fresh process per run: no state carried between runs
        for _ in pool.imap_unordered(_run, tasks):
            pass


if __name__ == "__main__":
    main()
