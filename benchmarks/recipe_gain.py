"""What `deeprecipe recipe` gains: final test accuracy against the default `train` and an equal-budget random search.

For every data set × model family × seed, three ways to get a trained model, all through the product's own
code on the same split:

- **default**: `api.train` with the default config (the family's knobs only, and 8 epochs for every run);
- **recipe**: `recipe.pipeline.run_recipe` (checks, lr range test, coarse search of lr × weight decay,
  refine, the final `train.epochs` run);
- **random**: as many full-length default-config runs as the recipe's training epochs buy (the short runs of
  step 3, each as long as the configured run, + coarse + refine + final, rounded to whole runs), each with lr
  log-uniform in 1e-4–1e-1 and weight decay 0 or log-uniform in 1e-5–1e-1; the run with the best val accuracy
  gives the test accuracy.

Data sets (small, so the whole thing fits a 2-core machine): the built-in MNIST subset cut to 1,200 images,
the built-in 8×8 digits, a folder of real photos cropped from the samples scikit-image and scikit-learn ship
(6 classes, 32 px), and a folder of few images per class (8 classes × 16). One CPU thread per run.

    nice -n 19 python benchmarks/recipe_gain.py [--quick] [--seeds 0 1 2] [--only mnist1200,digits] [--models mlp]
    python benchmarks/recipe_gain.py --merge A.json B.json     # one table and plot from separate processes

Writes benchmarks/results/recipe_gain.json (after every finished cell, so a stopped run keeps what it did)
and recipe_gain.png, and prints the table docs/recipe.md shows. Runs write no report.html (building one
costs 15–35 s on a loaded 2-core machine, the same for every method, and is not training).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.photo_folder import make_photo_folder  # noqa: E402
from deeprecipe import api  # noqa: E402
from deeprecipe.config import resolve_config  # noqa: E402
from deeprecipe.data.sources import load_source  # noqa: E402
from deeprecipe.plots import pyplot, save_png  # noqa: E402
from deeprecipe.recipe.pipeline import run_recipe  # noqa: E402
from deeprecipe.utils import read_jsonl, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("default", "recipe", "random")
MODELS = {"convnet": ["model.name=convnet", "model.widths=[16,32,64]", "model.convs=1"],
          "mlp": ["model.name=mlp", "model.width=128"]}
# Eight epochs for every training run (the default's own count since the default recipe moved to 8).
COMMON = ["train.threads=1", "train.epochs=8", "data.val_fraction=0.15", "data.test_fraction=0.25"]


def make_datasets(root: Path, quick: bool) -> dict[str, list[str]]:
    """name → overrides that select it (npz subsets and photo folders written under root)."""
    mnist = load_source("builtin:mnist5k")
    keep = np.random.default_rng(0).permutation(len(mnist.labels))[:1200]
    np.savez(root / "mnist1200.npz", x=np.asarray(mnist.images)[keep, 0], y=np.asarray(mnist.labels)[keep])
    sets = {"mnist1200": [f"data.spec=npz:{root / 'mnist1200.npz'}"], "digits": ["data.spec=builtin:digits"]}
    if quick:
        return sets
    # ~64–110 px JPEGs of random crops of each photo; the models see 32 px.
    tiny = (0.004, 0.012)
    photos = make_photo_folder(root / "photos", files=360, classes=6, megapixels=tiny, seed=1)
    few = make_photo_folder(root / "few", files=8 * 16, classes=8, megapixels=tiny, seed=2)
    size = ["data.image_size=32", f"data.cache_dir={root / 'cache'}"]
    sets["photos"] = [f"data.spec={photos}", *size]
    sets["few-per-class"] = [f"data.spec={few}", *size]
    return sets


def best_val(run_dir: Path) -> float:
    return max(r.get("val_acc", 0.0) for r in read_jsonl(run_dir / "metrics.jsonl"))


def run_default(overrides: list[str], out: Path) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    summary = api.train(resolve_config(None, overrides), out=out, show_progress=False)
    return {"test_acc": summary["test_acc"], "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu, "epochs": summary["epochs_run"]}


def run_recipe_cell(overrides: list[str], out: Path) -> dict:
    start, cpu = time.perf_counter(), time.process_time()
    outcome = run_recipe(resolve_config(None, overrides), out=out, show_progress=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    trials = json.loads((out / "search" / "trials.json").read_text()) if (out / "search" / "trials.json").is_file() else []
    final = json.loads((out / "final" / "summary.json").read_text()) if outcome["test_acc"] is not None else {}
    best = yaml_safe(out / "best.yaml")
    lr_epochs = short_run_epochs(out / "lr_find.json")
    return {"test_acc": outcome["test_acc"], "seconds": seconds, "cpu_seconds": cpu_seconds,
            "stopped_at": outcome["stopped_at"], "lr_epochs": lr_epochs,
            "epochs": sum(t["epochs"] for t in trials) + final.get("epochs_run", 0) + lr_epochs,
            "trials": len(trials), "pruned": sum(t["state"] == "pruned" for t in trials),
            "best": {"lr": best["optim"]["lr"], "weight_decay": best["optim"]["weight_decay"],
                     "label_smoothing": best["regularize"]["label_smoothing"], "dropout": best["model"].get("dropout"),
                     "augment": best["data"]["augment"]} if best else None,
            "refine_added": any("refine also searched" in line for s in outcome["steps"] for line in s["lines"])}


def short_run_epochs(lr_find_json: Path) -> float:
    """The training the recipe's short runs (step 3) spent, in epochs of the configured run: every candidate
    trains as many steps as that run (0 for the range test's 100 steps, or when the step did not run)."""
    if not lr_find_json.is_file():
        return 0.0
    record = json.loads(lr_find_json.read_text())
    if record.get("method") != "short-runs" or not record.get("batches_per_epoch"):
        return 0.0
    return len(record["lrs"]) * record["steps"] / record["batches_per_epoch"]


def yaml_safe(path: Path):
    import yaml
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def run_random(overrides: list[str], out: Path, epochs: int, per_run: int, seed: int) -> dict:
    """Full-length runs at random (lr, weight decay) until `epochs` are spent; the best val run is the answer."""
    rng = np.random.default_rng(1000 + seed)
    runs, start, cpu = [], time.perf_counter(), time.process_time()
    for i in range(max(1, round(epochs / per_run))):
        lr = float(10 ** rng.uniform(-4, -1))
        wd = 0.0 if rng.random() < 0.25 else float(10 ** rng.uniform(-5, -1))
        summary = api.train(resolve_config(None, overrides + [f"optim.lr={lr}", f"optim.weight_decay={wd}"]),
                            out=out / f"r{i}", show_progress=False)
        runs.append({"lr": lr, "weight_decay": wd, "val": best_val(out / f"r{i}"), "test_acc": summary["test_acc"],
                     "epochs": summary["epochs_run"]})
    best = max(runs, key=lambda r: r["val"])
    return {"test_acc": best["test_acc"], "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
            "epochs": sum(r["epochs"] for r in runs), "runs": runs}


def summarise(cells: list[dict]) -> list[dict]:
    rows = []
    for data in dict.fromkeys(c["data"] for c in cells):
        for model in dict.fromkeys(c["model"] for c in cells if c["data"] == data):
            mine = [c for c in cells if c["data"] == data and c["model"] == model]
            row = {"data": data, "model": model, "seeds": len(mine)}
            for m in METHODS:
                accs = [c[m]["test_acc"] for c in mine if c[m]["test_acc"] is not None]
                row[m] = statistics.mean(accs) if accs else None
                row[m + "_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
                row[m + "_seconds"] = statistics.mean(c[m]["seconds"] for c in mine)
                row[m + "_epochs"] = statistics.mean(c[m]["epochs"] for c in mine)
            row["time_ratio"] = row["recipe_seconds"] / row["default_seconds"]
            rows.append(row)
    return rows


def _points(diff: float) -> str:
    return f"{round(100 * diff, 1) + 0.0:+.1f} pt"  # + 0.0: equal accuracies read +0.0, not -0.0 (float noise)


def table(rows: list[dict]) -> str:
    head = ("| data | model | seeds | default | recipe | random (same epochs) | recipe − default | recipe − random "
            "| wall s default / recipe / random | recipe ÷ default: wall, epochs | epochs recipe / random |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        def acc(m):
            return f"{r[m]:.4f} ± {r[m + '_std']:.4f}" if r[m] is not None else "—"
        lines.append(f"| {r['data']} | {r['model']} | {r['seeds']} | {acc('default')} | {acc('recipe')} | {acc('random')} "
                     f"| {_points(r['recipe'] - r['default'])} | {_points(r['recipe'] - r['random'])} "
                     f"| {r['default_seconds']:.0f} / {r['recipe_seconds']:.0f} / {r['random_seconds']:.0f} "
                     f"| {r['time_ratio']:.1f}×, {r['recipe_epochs'] / r['default_epochs']:.1f}× "
                     f"| {r['recipe_epochs']:.0f} / {r['random_epochs']:.0f} |")
    return "\n".join(lines)


def plot(cells: list[dict], path: Path) -> Path:
    rows = summarise(cells)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    width = 0.27
    for k, m in enumerate(METHODS):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        ax.bar(xs, [r[m] or 0 for r in rows], width, yerr=[r[m + "_std"] for r in rows], label=m, capsize=2)
        for i, r in enumerate(rows):  # each seed as a dot
            seeds = [c[m]["test_acc"] for c in cells if c["data"] == r["data"] and c["model"] == r["model"]]
            ax.scatter([xs[i]] * len(seeds), seeds, color="k", s=6, zorder=3)
    ax.set_xticks(range(len(rows)), [f"{r['data']}\n{r['model']}" for r in rows], fontsize=8)
    low = min(min(r[m] for m in METHODS if r[m] is not None) for r in rows)
    ax.set_ylim(max(0.0, low - 0.15), 1.0)
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title("recipe vs default train vs random search of the same epochs")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def finish(cells: list[dict], out: Path, quick: bool) -> None:
    write_json(out, {"cells": cells, "rows": summarise(cells), "quick": quick,
                     "machine": "2-core AMD EPYC (AVX2), shared, niced; one thread per run"})
    print(table(summarise(cells)))
    print(plot(cells, out.with_suffix(".png")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two built-in sets, convnet only, one seed")
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--only", help="comma-separated data set names")
    ap.add_argument("--models", help="comma-separated model families (convnet, mlp)")
    ap.add_argument("--out", default=str(RESULTS / "recipe_gain.json"))
    ap.add_argument("--merge", nargs="+", help="result files to combine into --out (no training)")
    args = ap.parse_args()
    if args.merge:
        cells = [c for f in args.merge for c in json.loads(Path(f).read_text())["cells"]]
        cells.sort(key=lambda c: (c["seed"], c["data"], c["model"]))
        return finish(cells, Path(args.out), any(json.loads(Path(f).read_text())["quick"] for f in args.merge))
    api.write_report_safely = lambda *a, **k: None  # see the module docstring
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    models = args.models.split(",") if args.models else (["convnet"] if args.quick else list(MODELS))
    out = Path(args.out)
    cells: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sets = make_datasets(root, args.quick)
        if args.only:
            sets = {k: v for k, v in sets.items() if k in args.only.split(",")}
        for seed in seeds:  # seed-major: a run stopped part-way still has whole seeds of every set
            for data, data_over in sets.items():
                for model in models:
                    over = COMMON + data_over + MODELS[model] + [f"train.seed={seed}"]
                    where = root / f"{data}-{model}-{seed}"
                    cell = {"data": data, "model": model, "seed": seed}
                    cell["default"] = run_default(over, where / "default")
                    cell["recipe"] = run_recipe_cell(over, where / "recipe")
                    cell["random"] = run_random(over, where / "random", cell["recipe"]["epochs"],
                                                cell["default"]["epochs"], seed)
                    cells.append(cell)
                    print(f"{data} {model} seed {seed}: " + ", ".join(
                        f"{m} {cell[m]['test_acc']:.4f} ({cell[m]['seconds']:.0f}s)" for m in METHODS), flush=True)
                    write_json(out, {"cells": cells, "rows": summarise(cells), "quick": args.quick,
                                     "machine": "2-core AMD EPYC (AVX2), shared, niced; one thread per run"})
    finish(cells, out, args.quick)


if __name__ == "__main__":
    main()
