"""Several starts per short-runs test: every candidate rate tried from a few seeds, stored for readings.

    nice python -m benchmarks.lr_starts [--setups digits-mlp,...] [--starts 3] [--out benchmarks/results/lr_starts.json]
    python -m benchmarks.lr_starts --score [--out ...]   # read the stored tests, no training

For each setup × optimizer × seed s of `benchmarks/lr_calibration.py` (its grids and bands stay where they
are), the short runs are run with every candidate (no stop) from the starts s, s + 10, s + 20, …: the same
data split, other initial weights and batch orders. `--score` then reads each seed's test the way the product
would with one start or with the first k starts averaged per candidate (the stop past the minimum replayed on
the averaged losses, so that the count of candidates is the one the product would train), and prints the
in-band share and the seed-to-seed spread per reading, as `benchmarks.lr_calibration` counts them.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from benchmarks.lr_calibration import OPTIMS, SETUPS, _session, in_band, part_of, setup_overrides
from deeprecipe.recipe.lr_methods import past_the_minimum, run_short_runs, vertex_lr
from deeprecipe.utils import write_json

RESULTS = Path(__file__).parent / "results"
START_STEP = 10  # start k of seed s trains with seed s + 10 k


def exhaustive_test(overrides: list[str]) -> dict:
    r = run_short_runs(_session(overrides), stop=False).to_dict()
    return {k: r[k] for k in ("lrs", "finals", "start_loss", "chance_loss")}


def run(setups: list[str], starts: int, seeds: int, out: Path) -> None:
    results = json.loads(out.read_text()) if out.is_file() else {}
    for setup in setups:
        for opt, opt_overrides in OPTIMS.items():
            key = f"{setup}/{opt}"
            per_seed = results.setdefault(key, [[] for _ in range(seeds)])
            for seed in range(seeds):
                while len(per_seed[seed]) < starts:
                    start = seed + START_STEP * len(per_seed[seed])
                    per_seed[seed].append({"seed": start, **exhaustive_test(
                        setup_overrides(setup) + opt_overrides + [f"train.seed={start}"])})
                    write_json(out, results)
            print(key, flush=True)


def replay(tests: list[dict]) -> tuple[float | None, int]:
    """(suggestion, candidates tried) of the product reading the given starts together: per candidate the mean
    of the starts' final losses (inf if any diverged), tried from the highest rate down until the stop."""
    lrs = tests[0]["lrs"]
    chance = tests[0]["chance_loss"]
    start = min((t["start_loss"] for t in tests if t["start_loss"] is not None), default=math.inf)
    finals: list[float] = []
    for i in range(len(lrs)):
        values = [t["finals"][i] for t in tests]
        finals.append(math.inf if any(v is None for v in values) else float(np.mean(values)))
        if past_the_minimum(finals, min(start, chance)):
            break
    return vertex_lr(lrs[:len(finals)], finals), len(finals)


def score(results: dict, calibration: dict, most_starts: int) -> str:
    rows = ["| reading | in band (all) | chosen on | held out | held out later | spreads > 1.5× | worst spread | "
            "candidates tried |", "|---" * 8 + "|"]
    for k in range(1, most_starts + 1):
        for offset in range(most_starts - k + 1):  # one start: each start alone; k starts: the first k
            if k > 1 and offset:
                break
            inside = {p: [] for p in ("chosen on", "held out", "held out later")}
            spreads, tried = [], []
            for key, per_seed in results.items():
                band, accs = calibration[key]["band"], calibration[key]["accs"]
                suggestions = []
                for tests in per_seed:
                    if len(tests) < offset + k:
                        continue
                    s, n = replay(tests[offset:offset + k])
                    if s:
                        suggestions.append(s)
                        inside[part_of(key)].append(in_band(s, accs, band))
                    tried.append(n * k)
                if suggestions:
                    spreads.append(max(suggestions) / min(suggestions))
            total = sum(inside.values(), [])
            name = f"{k} starts averaged" if k > 1 else f"one start (seed + {START_STEP * offset})"
            rows.append(f"| {name} | {sum(total)}/{len(total)} | " + " | ".join(
                f"{sum(v)}/{len(v)}" for v in inside.values()) + f" | {sum(s > 1.5 for s in spreads)} of {len(spreads)} | "
                f"×{max(spreads):.2f} | {np.mean(tried):.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "lr_starts.json")
    p.add_argument("--calibration", type=Path, default=RESULTS / "lr_calibration.json")
    p.add_argument("--score", action="store_true", help="only read the stored tests")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not args.score:
        run(args.setups.split(","), args.starts, args.seeds, args.out)
    print(score(json.loads(args.out.read_text()), json.loads(args.calibration.read_text()), args.starts))


if __name__ == "__main__":
    main()
