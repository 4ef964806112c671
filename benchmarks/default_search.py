"""The search that chose `deeprecipe train`'s defaults: shortest training time to ≥ 98.5% test accuracy.

Each candidate is a set of `--set` overrides on top of the current defaults, trained through the product's
own `train()` on the built-in MNIST subset (3,500 / 500 / 1,000 split) for several seeds. Accuracy does not
depend on how busy the machine is; seconds do, so time is also reported as a cost that does not: training
FLOPs (forward + backward ≈ 3 × forward, by torch's FlopCounterMode) × images seen, in TFLOP.

    python benchmarks/default_search.py --seeds 0 1 2 --threads 2 [--only NAME ...] [--data builtin:digits]

Writes benchmarks/results/default-search-<time>.json and prints a table (mean ± std over seeds).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from deeprecipe import api  # noqa: E402
from deeprecipe.config import resolve_config  # noqa: E402
from deeprecipe.data.sources import load_source  # noqa: E402
from deeprecipe.models import create_model  # noqa: E402

# name → overrides. The first is the shipped default (whatever configs/default.yaml says), for comparison.
CANDIDATES: dict[str, list[str]] = {
    "default": [],
    "w32-e15-lr5e-3": ["model.widths=[32,64,128]", "train.epochs=15", "optim.lr=0.005"],
    "w32-e8": ["model.widths=[32,64,128]", "train.epochs=8"],
    "w32-e8-lr3e-3": ["model.widths=[32,64,128]", "train.epochs=8", "optim.lr=0.003"],
    "w24-e10": ["model.widths=[24,48,96]", "train.epochs=10"],
    "w24-e10-ls": ["model.widths=[24,48,96]", "train.epochs=10", "regularize.label_smoothing=0.1"],
    "w24-e10-b128": ["model.widths=[24,48,96]", "train.epochs=10", "train.batch_size=128", "optim.lr=0.006"],
    "w16-e12": ["model.widths=[16,32,64]", "train.epochs=12"],
    "w16-e12-ls": ["model.widths=[16,32,64]", "train.epochs=12", "regularize.label_smoothing=0.1"],
    "w16-e15": ["model.widths=[16,32,64]", "train.epochs=15"],
    "w16-e15-ls": ["model.widths=[16,32,64]", "train.epochs=15", "regularize.label_smoothing=0.1"],
    "w20-e10-ls": ["model.widths=[20,40,80]", "train.epochs=10", "regularize.label_smoothing=0.1"],
    "w20-e12-ls": ["model.widths=[20,40,80]", "train.epochs=12", "regularize.label_smoothing=0.1"],
    "w16-e12-ls-b32": ["model.widths=[16,32,64]", "train.epochs=12", "regularize.label_smoothing=0.1",
                       "train.batch_size=32", "optim.lr=0.0035"],
    "w16-e12-ls-ema": ["model.widths=[16,32,64]", "train.epochs=12", "regularize.label_smoothing=0.1",
                       "regularize.ema=0.99"],
    "w24-e8-ls": ["model.widths=[24,48,96]", "train.epochs=8", "regularize.label_smoothing=0.1"],
    "w24-e8-lr3e-3-ls": ["model.widths=[24,48,96]", "train.epochs=8", "optim.lr=0.003",
                         "regularize.label_smoothing=0.1"],
}


def train_flops_per_image(overrides: list[str], data: str) -> float:
    """Forward FLOPs × 3 (backward ≈ 2 × forward) of the candidate's model on one image."""
    from torch.utils.flop_counter import FlopCounterMode
    cfg = resolve_config(None, overrides + [f"data.spec={data}"])
    shape = tuple(load_source(data).images.shape[1:])
    model = create_model(cfg.model.name, num_classes=10, in_chans=shape[0], input_size=shape[1],
                         **cfg.model.knobs()).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return 3.0 * counter.get_total_flops()


def run_candidate(name: str, overrides: list[str], seed: int, threads: int, data: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sets = overrides + [f"train.seed={seed}", f"train.threads={threads}", f"data.spec={data}"]
        start = time.perf_counter()
        summary = api.train(None, overrides=sets, out=Path(tmp) / "run", show_progress=False)
        wall = time.perf_counter() - start
    return {"name": name, "seed": seed, "test_acc": summary["test_acc"], "train_seconds": summary["train_seconds"],
            "wall_seconds": wall, "epochs": summary["epochs_run"], "sizes": summary["sizes"],
            "images_per_second": summary["images_per_second"]}


def table(rows: list[dict], flops: dict[str, float]) -> str:
    lines = ["| candidate | test acc (mean ± std) | min | train s (mean) | TFLOP trained |",
             "|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        acc = [r["test_acc"] for r in mine]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        tflop = flops[name] * mine[0]["epochs"] * mine[0]["sizes"]["train"] / 1e12
        lines.append(f"| {name} | {statistics.mean(acc):.4f} ± {sd:.4f} | {min(acc):.4f} | "
                     f"{statistics.mean(r['train_seconds'] for r in mine):.1f} | {tflop:.2f} |")
    return "\n".join(lines)


def add_search_arguments(ap: argparse.ArgumentParser, candidates: dict[str, list[str]]) -> None:
    """The options every candidate search shares (this one and benchmarks/early_accuracy.py)."""
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=sorted(candidates))
    ap.add_argument("--data", default="builtin:mnist5k")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_arguments(ap, CANDIDATES)
    args = ap.parse_args(argv)
    names = args.only or list(CANDIDATES)
    flops = {n: train_flops_per_image(CANDIDATES[n], args.data) for n in names}
    rows = []
    for i, name in enumerate(names):
        for seed in args.seeds:
            rows.append(run_candidate(name, CANDIDATES[name], seed, args.threads, args.data))
            r = rows[-1]
            print(f"[{i + 1}/{len(names)}] {name} seed {seed}: test_acc {r['test_acc']:.4f} "
                  f"{r['train_seconds']:.1f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"default-search-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"data": args.data, "threads": args.threads, "rows": rows, "train_flops": flops},
                               indent=1))
    print(table(rows, flops))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
