"""The learning-rate suggestion on a folder of photos at the default config, scored against a grid of full runs.

    nice python benchmarks/lr_photo_folder.py [--files 300] [--classes 6] [--seeds 0 1 2]
                                              [--rates 0.001 0.003 0.01 0.03 0.1 0.3] [--set KEY=VALUE ...]
                                              [--json OUT]

`benchmarks/lr_calibration.py` measures the methods on small images (8×8 digits, 28 px MNIST, 32 px photo
crops). This is the user's case the issue started from: a folder of real-photo JPEGs (`photo_folder.py`: 1–3 MP
crops of the photos scikit-image and scikit-learn ship) trained by the default config — the convnet with its stem
at 224 px, AdamW under one-cycle, the default batch size — with only `optim.lr` varied. Per seed (`train.seed` and
`data.split_seed`) it trains the grid of rates in full and runs `lr-find --method short-runs` (the default method
of `recipe`) and the range test; the best band is every grid rate whose mean final val accuracy is within one
standard error of the best (`lr_calibration.best_band`), and a suggestion is in it when it rounds to a band rate
(`lr_calibration.in_band`). Prints and writes the grid, the band and each seed's suggestions. At the default
8 epochs every rate from 1e-3 to 0.3 reaches val accuracy 1.00 on these folders (each class is crops of one
photo), so the grid cannot tell rates apart; `--set train.epochs=2` makes the budget short enough that it can.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.lr_calibration import best_band, in_band  # noqa: E402
from benchmarks.photo_folder import make_photo_folder  # noqa: E402
from deeprecipe.utils import write_json  # noqa: E402


SETTINGS: list[str] = []  # --set overrides, the same for every run


def _session(folder: Path, seed: int, lr: float | None = None):
    from deeprecipe.api import Session
    from deeprecipe.config import resolve_config
    extra = [f"optim.lr={lr:g}"] if lr is not None else []
    return Session.create(resolve_config(None, [f"data.spec={folder}", f"train.seed={seed}", f"data.split_seed={seed}",
                                                *SETTINGS, *extra]))


def full_run_val_acc(folder: Path, seed: int, lr: float) -> float:
    from deeprecipe.errors import DeepRecipeError
    try:
        history = _session(folder, seed, lr).make_trainer(None, show_progress=False).fit().history
    except DeepRecipeError:  # diverged
        return 0.0
    return float(history[-1]["val_acc"])


def suggestions(folder: Path, seed: int) -> dict[str, float | None]:
    from deeprecipe.recipe.lr_find import run_lr_find
    from deeprecipe.recipe.lr_methods import run_short_runs
    session = _session(folder, seed)
    short = run_short_runs(session)
    return {"short-runs": short.suggestion, "range": run_lr_find(session).suggestion,
            "short-runs candidates": len(short.lrs)}


def main(argv: list[str] | None = None) -> None:
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3])
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    SETTINGS[:] = args.settings
    out: dict = {"files": args.files, "classes": args.classes, "settings": args.settings, "accs": {}, "suggestions": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_photo_folder(Path(tmp) / "photos", files=args.files, classes=args.classes,
                                   megapixels=(1.0, 3.0), seed=1)
        for seed in args.seeds:
            for lr in args.rates:
                out["accs"].setdefault(str(lr), []).append(full_run_val_acc(folder, seed, lr))
                print(f"seed {seed} lr {lr:g}: val_acc {out['accs'][str(lr)][-1]:.3f}", flush=True)
            out["suggestions"].append(suggestions(folder, seed))
            print(f"seed {seed}: {out['suggestions'][-1]}", flush=True)
            if args.json:
                write_json(args.json, out)
    accs = {float(k): v for k, v in out["accs"].items()}
    out["band"] = list(best_band(accs))
    for method in ("short-runs", "range"):
        vals = [s[method] for s in out["suggestions"] if s[method]]
        inside = sum(in_band(v, accs, tuple(out["band"])) for v in vals)
        print(f"{method}: {[round(v, 4) for v in vals]} — {inside}/{len(vals)} in the band "
              f"{out['band'][0]:g}–{out['band'][1]:g}, spread ×{max(vals) / min(vals):.2f}")
    print("mean val acc per rate:", {k: round(statistics.mean(v), 3) for k, v in out["accs"].items()})
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
