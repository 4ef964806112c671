"""How early does a recipe reach the peers' accuracies? Per-epoch TEST accuracy of candidate defaults.

`benchmarks/run.py` scores deeprecipe by the seconds to each peer recipe's final test accuracy (95.9 % for the
PyTorch examples' MNIST script, 97.5 % for fastai's fit_one_cycle), read at epoch ends. This script trains
candidate recipes (sets of `--set` overrides on top of the defaults) through the product's Session and Trainer
and records the test accuracy after every epoch (off the clock), for several seeds. Accuracy does not depend on
how busy the machine is; seconds do, so each candidate's epoch is expressed in *default epochs*: its training
FLOPs per epoch (forward × 3 × images) over the default's in the table, and — since oneDNN's speed varies with
width and batch, and FLOPs do not see the batch size — with `--time`, the CPU seconds of one epoch on one thread,
measured back to back (CPU time, not wall time: on a shared machine wall time measures the neighbours).

    python benchmarks/early_accuracy.py --seeds 0 1 2 [--only NAME ...] [--stop-after 2] [--data builtin:digits]
    python benchmarks/early_accuracy.py --time --only default b32 b16 w16-b32   # CPU seconds per epoch

Writes benchmarks/results/early-accuracy-<time>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.common import EpochTestAccuracy  # noqa: E402
from benchmarks.default_search import add_search_arguments, train_flops_per_image  # noqa: E402
from deeprecipe.config import resolve_config  # noqa: E402
from deeprecipe.session import Session, prepare_data  # noqa: E402

PEER_TARGETS = (0.959, 0.975)  # the peers' final test accuracies in benchmarks/results/cpu-20261130-225922.json

# name → overrides on top of the shipped defaults (configs/default.yaml). "default" is the shipped recipe.
CANDIDATES: dict[str, list[str]] = {
    "default": [],
    "pct0.1": ["schedule.pct_start=0.1"],
    "pct0.1-ema": ["schedule.pct_start=0.1", "regularize.ema=0.99"],
    "ema": ["regularize.ema=0.99"],
    "pct0.05-lr3e-3": ["schedule.pct_start=0.05", "optim.lr=0.003"],
    "b32": ["train.batch_size=32"],
    "b32-pct0.1-lr5e-3": ["train.batch_size=32", "schedule.pct_start=0.1", "optim.lr=0.005"],
    "b32-pct0.1-lr5e-3-ema": ["train.batch_size=32", "schedule.pct_start=0.1", "optim.lr=0.005",
                              "regularize.ema=0.99"],
    "w16-e14-pct0.1-ema": ["model.widths=[16,32,64]", "train.epochs=14", "schedule.pct_start=0.1",
                           "regularize.ema=0.99"],
    "w16-e14-b32-pct0.1-lr5e-3-ema": ["model.widths=[16,32,64]", "train.epochs=14", "train.batch_size=32",
                                      "schedule.pct_start=0.1", "optim.lr=0.005", "regularize.ema=0.99"],
    "b16": ["train.batch_size=16"],
    "w16": ["model.widths=[16,32,64]"],
    "w16-b16": ["model.widths=[16,32,64]", "train.batch_size=16"],
    "w16-b32": ["model.widths=[16,32,64]", "train.batch_size=32"],
    "b32-pct0.1-lr3e-3-ema": ["train.batch_size=32", "schedule.pct_start=0.1", "optim.lr=0.003", "regularize.ema=0.99"],
    "b32-pct0.05-lr5e-3-ema": ["train.batch_size=32", "schedule.pct_start=0.05", "optim.lr=0.005",
                               "regularize.ema=0.99"],
    "b32-lr5e-3-ema": ["train.batch_size=32", "optim.lr=0.005", "regularize.ema=0.99"],
    "b16-pct0.1-lr3e-3-ema": ["train.batch_size=16", "schedule.pct_start=0.1", "optim.lr=0.003", "regularize.ema=0.99"],
    "w16-e14-b32-pct0.05-lr5e-3-ema": ["model.widths=[16,32,64]", "train.epochs=14", "train.batch_size=32",
                                       "schedule.pct_start=0.05", "optim.lr=0.005", "regularize.ema=0.99"],
    "w20-e10-b32-pct0.05-lr5e-3-ema": ["model.widths=[20,40,80]", "train.epochs=10", "train.batch_size=32",
                                       "schedule.pct_start=0.05", "optim.lr=0.005", "regularize.ema=0.99"],
    "w20-b32": ["model.widths=[20,40,80]", "train.batch_size=32"],
    "c1-w32-e14-b32-pct0.05-lr5e-3-ema": ["model.convs=1", "model.widths=[32,64,128]", "train.epochs=14",
                                          "train.batch_size=32", "schedule.pct_start=0.05", "optim.lr=0.005",
                                          "regularize.ema=0.99"],
    "c1-w32-b32": ["model.convs=1", "model.widths=[32,64,128]", "train.batch_size=32"],
    "w16-e14-b32-pct0.1-lr3e-3-ema": ["model.widths=[16,32,64]", "train.epochs=14", "train.batch_size=32",
                                      "schedule.pct_start=0.1", "optim.lr=0.003", "regularize.ema=0.99"],
    "w16-e14-b16-pct0.1-lr2e-3-ema": ["model.widths=[16,32,64]", "train.epochs=14", "train.batch_size=16",
                                      "schedule.pct_start=0.1", "optim.lr=0.002", "regularize.ema=0.99"],
}


def run_candidate(overrides: list[str], seed: int, threads: int, data: str, stop_after: int | None) -> dict:
    """Train one candidate; the test accuracy after every epoch (off the clock) and the seconds per epoch."""
    cfg = resolve_config(None, overrides + [f"train.seed={seed}", f"train.threads={threads}", f"data.spec={data}"])
    session = Session.create(cfg, prepare_data(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = session.make_trainer(Path(tmp), show_progress=False)
        test_loader = session.data.loader("test", cfg, session.device, channels_last=session.channels_last)
        tests = EpochTestAccuracy(test_loader, stop_after)
        trainer.hooks["on_epoch_end"].append(tests)
        tests.start()
        trainer.fit()
        history = tests.history
    return {"seed": seed, "history": history, "batch_size": session.cfg.train.batch_size, "epochs": cfg.train.epochs,
            "train_images": session.data.sizes()["train"]}


def first_epoch_reaching(history: list[dict], target: float) -> int | None:
    return next((h["epoch"] for h in history if h["test_acc"] >= target), None)


def table(results: dict[str, dict]) -> str:
    """Per-epoch test accuracy per seed, and the worst seed's epochs to each peer target in default epochs."""
    lines = ["| candidate | epoch cost (default epochs) | test acc per epoch, seed by seed | "
             + " | ".join(f"worst seed to {t:.3f} (default epochs)" for t in PEER_TARGETS) + " | final (min) |",
             "|---|---:|---|" + "---:|" * len(PEER_TARGETS) + "---:|"]
    for name, res in results.items():
        cost = res["epoch_cost"]
        curves = "<br>".join(" ".join(f"{h['test_acc']:.3f}" for h in r["history"]) for r in res["runs"])
        reach = []
        for t in PEER_TARGETS:
            epochs = [first_epoch_reaching(r["history"], t) for r in res["runs"]]
            reach.append("never" if None in epochs else f"{max(epochs) * cost:.2f}")
        final = min(r["history"][-1]["test_acc"] for r in res["runs"])
        lines.append(f"| {name} | {cost:.2f} | {curves} | " + " | ".join(reach) + f" | {final:.3f} |")
    return "\n".join(lines)


def epoch_cpu_seconds(overrides: list[str], data: str, epochs: int = 1) -> float:
    """CPU seconds of a training epoch (validation included, as run.py's clock counts it) on ONE thread.

    On a shared machine wall-clock seconds measure the neighbours; the CPU time of a one-thread run measures
    the work. With two threads a smaller batch parallelises worse, so this understates a small batch's cost."""
    cfg = resolve_config(None, overrides + ["train.threads=1", f"data.spec={data}", f"train.epochs={epochs}"])
    session = Session.create(cfg, prepare_data(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = session.make_trainer(Path(tmp), show_progress=False)
        marks = [time.process_time()]
        trainer.hooks["on_epoch_end"].append(lambda tr, row: marks.append(time.process_time()))
        trainer.fit()
    return (marks[-1] - marks[0]) / epochs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_arguments(ap, CANDIDATES)
    ap.add_argument("--stop-after", type=int, default=None, help="stop each run after N epochs (a screen)")
    ap.add_argument("--time", action="store_true", help="measure CPU seconds per epoch (one thread) back to back instead")
    ap.add_argument("--rounds", type=int, default=2, help="with --time: rounds over the candidates")
    args = ap.parse_args(argv)
    names = args.only or list(CANDIDATES)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.time:  # interleaved rounds, so a change in the machine's load hits every candidate alike
        seconds: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(args.rounds):
            for n in names:
                seconds[n].append(epoch_cpu_seconds(CANDIDATES[n], args.data))
                print(f"{n}: {seconds[n][-1]:.2f} CPU s/epoch", flush=True)
        base = statistics.median(seconds.get("default", [float("nan")]))
        for n in names:
            print(f"| {n} | {statistics.median(seconds[n]):.2f} s | {statistics.median(seconds[n]) / base:.2f} |")
        path = args.out / f"epoch-seconds-{stamp}.json"
        path.write_text(json.dumps({"data": args.data, "threads": 1, "cpu_seconds_per_epoch": seconds,
                                    "overrides": {n: CANDIDATES[n] for n in names}}, indent=1))
        print(f"wrote {path}")
        return
    base_flops = train_flops_per_image([], args.data)
    results: dict[str, dict] = {}
    for name in names:
        runs = []
        for seed in args.seeds:
            runs.append(run_candidate(CANDIDATES[name], seed, args.threads, args.data, args.stop_after))
            curve = " ".join(f"{h['test_acc']:.3f}" for h in runs[-1]["history"])
            print(f"{name} seed {seed}: {curve}", flush=True)
        results[name] = {"overrides": CANDIDATES[name], "runs": runs,
                         "epoch_cost": train_flops_per_image(CANDIDATES[name], args.data) / base_flops}
    path = args.out / f"early-accuracy-{stamp}.json"
    path.write_text(json.dumps({"data": args.data, "threads": args.threads, "stop_after": args.stop_after,
                                "peer_targets": PEER_TARGETS, "results": results}, indent=1))
    print(table(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
