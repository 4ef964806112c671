"""Several starts per short-runs test: every candidate rate tried from a few seeds, stored for readings.

    nice python -m benchmarks.lr_starts [--setups digits-mlp,...] [--starts 3] [--out benchmarks/results/lr_starts.json]
    nice python -m benchmarks.lr_starts --above    # add rates above 1 where a start's reading climbs past the list
    nice python -m benchmarks.lr_starts --range    # add a range test (lr-find's default) from every start
    python -m benchmarks.lr_starts --score [--out ...]   # read the stored tests, no training

For each setup × optimizer × seed s of `benchmarks/lr_calibration.py` (its grids and bands stay where they
are), the short runs are run with every candidate (no stop) from the starts s, s + 10, s + 20, …: the same
data split, other initial weights and batch orders. Start s shares its seed with the grid's full run of seed s
(the same weights and batches); the others do not. `--score` then reads each seed's test the way the product
would — from 1 down until the stop past the minimum, then upwards while the best is the top (`replay`) — with
one start, or with several averaged per candidate, and prints the in-band share and the seed-to-seed spread per
reading, as `benchmarks.lr_calibration` counts them. Measured in docs/recipe.md ("How reproducible the band is").
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from benchmarks.lr_calibration import OPTIMS, SETUPS, _session, in_band, part_of, setup_overrides, short_runs
from deeprecipe.recipe.lr_methods import MOST_ABOVE, PER_DECADE, candidate_lrs, explore_rates, run_short_runs, vertex_lr
from deeprecipe.utils import write_json

RESULTS = Path(__file__).parent / "results"
START_STEP = 10  # start k of seed s trains with seed s + 10 k


def start_session(key: str, seed: int):
    """The calibration's session for 'setup/optimizer' `key`, trained from `seed`."""
    setup, opt = key.split("/")
    return _session(setup_overrides(setup) + OPTIMS[opt] + [f"train.seed={seed}"])


def run(setups: list[str], starts: int, seeds: int, out: Path) -> None:
    results = json.loads(out.read_text()) if out.is_file() else {}
    for setup in setups:
        for opt in OPTIMS:
            key = f"{setup}/{opt}"
            per_seed = results.setdefault(key, [[] for _ in range(seeds)])
            for seed in range(seeds):
                while len(per_seed[seed]) < starts:
                    start = seed + START_STEP * len(per_seed[seed])
                    per_seed[seed].append({"seed": start, **short_runs(start_session(key, start), stop=False)[1]})
                    write_json(out, results)
            print(key, flush=True)


def _mean_final(tests: list[dict], lr: float) -> float:
    """The starts' mean final loss at `lr` (inf if any diverged); KeyError when a start never tried it."""
    values = []
    for t in tests:
        at = [i for i, r in enumerate(t["lrs"]) if math.isclose(r, lr, rel_tol=1e-6)]
        if not at:
            raise KeyError(f"no stored test at lr {lr:g}: run `python -m benchmarks.lr_starts --above`")
        values.append(t["finals"][at[0]])
    return math.inf if any(v is None for v in values) else float(np.mean(values))


def replay(tests: list[dict]) -> tuple[float | None, int]:
    """(suggestion, candidates tried) of the product reading the given starts together — per candidate the mean
    of the starts' final losses (inf if any diverged) — through the product's own search (`explore_rates`)."""
    start = min((t["start_loss"] for t in tests if t["start_loss"] is not None), default=math.inf)
    lrs, finals = explore_rates(lambda lr: _mean_final(tests, lr), lambda: start, tests[0]["chance_loss"],
                                progress=False)
    return vertex_lr(lrs, finals), len(finals)


def add_above(results: dict) -> None:
    """Train the rates above the candidates (up to 10) for every stored start whose own reading goes there."""
    for key, per_seed in results.items():
        def needs_above(test: dict) -> bool:
            try:
                replay([test])
            except KeyError:
                return True
            return False
        if not any(needs_above(t) for tests in per_seed for t in tests):
            continue
        for tests in per_seed:  # every start of the setup, so that averaged readings find them too
            for test in tests:
                if not any(r > 1.0001 for r in test["lrs"]):
                    above = [float(candidate_lrs()[0] * 10 ** (i / PER_DECADE)) for i in range(MOST_ABOVE, 0, -1)]
                    extra = run_short_runs(start_session(key, test["seed"]), candidates=above, stop=False)
                    test["lrs"], test["finals"] = extra.lrs + test["lrs"], [
                        f if math.isfinite(f) else None for f in extra.finals] + test["finals"]
        print(key, flush=True)


def add_range(results: dict) -> None:
    """Run the range test (`lr-find`'s default) from every stored start that has none yet."""
    from deeprecipe.recipe.lr_find import run_lr_find
    for key, per_seed in results.items():
        for tests in per_seed:
            for test in tests:
                if "range" not in test:
                    rt = run_lr_find(start_session(key, test["seed"]))
                    test["range"] = {"lrs": rt.lrs, "smoothed": rt.smoothed}
        print(key, flush=True)


def range_reading(test: dict) -> float | None:
    """The product's reading of a stored range test (half the rate at the smoothed loss's minimum)."""
    from deeprecipe.recipe.lr_find import suggest_lr
    return suggest_lr(test["range"]["lrs"], test["range"]["smoothed"])[0] if "range" in test else None


def score(results: dict, calibration: dict, most_starts: int) -> str:
    rows = ["| reading | in band (all) | chosen on | held out | held out later | spreads > 1.5× | worst spread | "
            "candidates tried |", "|---" * 8 + "|"]
    # Each reading: a name and what it makes of one seed's starts — (suggestion, candidates trained or None).
    readings = [(f"one start (seed + {START_STEP * i})", lambda tests, i=i: replay([tests[i]]))
                for i in range(most_starts)]
    readings += [(f"{k} starts averaged (seed + 0 … + {START_STEP * (k - 1)})",
                  lambda tests, k=k: _scaled(replay(tests[:k]), k)) for k in range(2, most_starts + 1)]
    # Start 0 shares its seed — initial weights and batch order — with the grid's full run of that seed; the
    # others are independent of the band.
    if most_starts > 2:
        readings.append((f"{most_starts - 1} starts averaged, none shared with the grid",
                         lambda tests: _scaled(replay(tests[1:]), most_starts - 1)))
    if any("range" in t for per_seed in results.values() for tests in per_seed for t in tests):
        readings += [(f"range test (min ÷ 2), one start (seed + {START_STEP * i})",
                      lambda tests, i=i: (range_reading(tests[i]), None)) for i in range(most_starts)]
    for name, read in readings:
        inside = {p: [] for p in ("chosen on", "held out", "held out later")}
        spreads, tried = [], []
        for key, per_seed in results.items():
            band, accs = calibration[key]["band"], calibration[key]["accs"]
            suggestions = []
            for tests in per_seed:
                if len(tests) < most_starts:
                    continue
                s, n = read(tests)
                if s:
                    suggestions.append(s)
                    inside[part_of(key)].append(in_band(s, accs, band))
                if n is not None:
                    tried.append(n)
            if suggestions:
                spreads.append(max(suggestions) / min(suggestions))
        total = sum(inside.values(), [])
        rows.append(f"| {name} | {sum(total)}/{len(total)} | " + " | ".join(
            f"{sum(v)}/{len(v)}" for v in inside.values()) + f" | {sum(s > 1.5 for s in spreads)} of {len(spreads)} | "
            f"×{max(spreads):.2f} | " + (f"{np.mean(tried):.1f} |" if tried else "(100 steps) |"))
    return "\n".join(rows)


def _scaled(reading: tuple[float | None, int], starts: int) -> tuple[float | None, int]:
    """A reading of several starts averaged: each candidate was trained once per start."""
    return reading[0], reading[1] * starts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "lr_starts.json")
    p.add_argument("--calibration", type=Path, default=RESULTS / "lr_calibration.json")
    p.add_argument("--score", action="store_true", help="only read the stored tests")
    p.add_argument("--range", action="store_true", help="add a range test from every stored start")
    p.add_argument("--above", action="store_true",
                   help="add the rates above 1 (up to 10) to the stored starts whose reading goes past the top")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.above or args.range:
        results = json.loads(args.out.read_text())
        (add_above if args.above else add_range)(results)
        write_json(args.out, results)
    elif not args.score:
        run(args.setups.split(","), args.starts, args.seeds, args.out)
    print(score(json.loads(args.out.read_text()), json.loads(args.calibration.read_text()), args.starts))


if __name__ == "__main__":
    main()
