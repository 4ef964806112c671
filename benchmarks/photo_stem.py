"""The convnet's stem on a folder of photos: `deeprecipe train` with `model.stem` on and off, seed by seed.

    nice python benchmarks/photo_stem.py [--files 300] [--classes 4] [--seeds 0 1 2] [--json OUT]
                                         [--epochs N] [--stem-only]

Builds a folder of real-photo JPEGs (`benchmarks/photo_folder.py`: crops of the photos scikit-image and
scikit-learn ship, 1–3 MP) and trains the default config on it at the default 224 px, once with the stem (the
default from 96 px up) and once without, per seed (`train.seed` and `data.split_seed`). Prints and writes test
accuracy, training seconds and images/s per run and the medians: an ablation of one product switch, both sides
the product's own training loop in the same process order, so the ratio is the result.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.photo_folder import runs_over_seeds  # noqa: E402
from deeprecipe import api  # noqa: E402
from deeprecipe.config import resolve_config  # noqa: E402


def train_once(folder: Path, seed: int, stem: bool, out: Path, epochs: int | None = None) -> dict:
    cfg = resolve_config(None, [f"data.spec={folder}", f"train.seed={seed}", f"data.split_seed={seed}",
                                f"model.stem={str(stem).lower()}", *([f"train.epochs={epochs}"] if epochs else [])])
    summary = api.train(cfg, out=out, show_progress=False)
    return {"seed": seed, "stem": stem, "epochs": summary["epochs_run"], "test_acc": summary["test_acc"], "seconds": summary["train_seconds"],
            "images_per_second": summary["images_per_second"],
            "verdict": summary["diagnosis"]["verdict"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the config's)")
    ap.add_argument("--stem-only", action="store_true", help="only the runs with the stem")
    args = ap.parse_args(argv)
    api.write_report_safely = lambda *a, **k: None  # the report is not training
    runs = runs_over_seeds(args.files, args.classes, args.seeds, (True,) if args.stem_only else (True, False),
                           lambda folder, seed, stem, out: train_once(folder, seed, stem, out, args.epochs), args.json)
    for stem in (True, False):
        mine = [r for r in runs if r["stem"] is stem]
        if not mine:
            continue
        print(f"stem {stem}: test acc {[round(r['test_acc'], 3) for r in mine]} (mean "
              f"{statistics.mean(r['test_acc'] for r in mine):.3f}), median {statistics.median(r['seconds'] for r in mine):.0f} s, "
              f"{statistics.median(r['images_per_second'] for r in mine):.0f} images/s")


if __name__ == "__main__":
    main()
