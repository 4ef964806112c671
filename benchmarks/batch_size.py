"""The default batch size on a small folder of photos: `deeprecipe train` at batch 64 and at the default, seed by seed.

    nice python benchmarks/batch_size.py [--files 300] [--classes 6] [--seeds 0 1 2 3 4] [--sizes 64 auto]
                                         [--json OUT]

Builds a folder of real-photo JPEGs (`benchmarks/photo_folder.py`: crops of the photos scikit-image and
scikit-learn ship, 1–3 MP) and trains the default config on it (224 px, 8 epochs) once per batch size and seed
(`train.seed` and `data.split_seed`); `auto` leaves `train.batch_size` unset, so the product picks it
(`deeprecipe/train/budget.py`). Prints and writes, per run, the batch size used, optimizer steps, test accuracy,
the diagnosis and training seconds, then per batch size the mean test accuracy and the median seconds: an
ablation of one default, both sides the product's own loop in the same process, so the comparison is the result.
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
from deeprecipe.train.budget import steps_per_epoch  # noqa: E402


def train_once(folder: Path, seed: int, size: str, out: Path) -> dict:
    chosen = [] if size == "auto" else [f"train.batch_size={size}"]
    cfg = resolve_config(None, [f"data.spec={folder}", f"train.seed={seed}", f"data.split_seed={seed}", *chosen])
    summary = api.train(cfg, out=out, show_progress=False)
    used = resolve_config(str(out / "config.yaml")).train.batch_size
    return {"seed": seed, "asked": size, "batch_size": used, "train_images": summary["sizes"]["train"],
            "steps": steps_per_epoch(summary["sizes"]["train"], used) * summary["epochs_run"],
            "test_acc": summary["test_acc"], "verdict": summary["diagnosis"]["verdict"],
            "seconds": summary["train_seconds"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--sizes", nargs="+", default=["64", "auto"], help="batch sizes to compare; auto = the default")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    api.write_report_safely = lambda *a, **k: None  # the report is not training
    runs = runs_over_seeds(args.files, args.classes, args.seeds, args.sizes, train_once, args.json)
    for size in args.sizes:
        mine = [r for r in runs if r["asked"] == size]
        print(f"batch {size} ({sorted({r['batch_size'] for r in mine})}): test acc "
              f"{[round(r['test_acc'], 3) for r in mine]} (mean {statistics.mean(r['test_acc'] for r in mine):.3f}), "
              f"verdicts {[r['verdict'] for r in mine]}, median {statistics.median(r['seconds'] for r in mine):.0f} s")


if __name__ == "__main__":
    main()
