"""Score readings of the stored learning-rate tests against the grids' best bands, without training again.

    python -m benchmarks.lr_readings [--results benchmarks/results/lr_calibration.json]

`benchmarks/lr_calibration.py` keeps every range test's curve and every short-runs candidate's loss fall
beside the grid of short full runs. This script applies several readings of those same curves — deeprecipe's,
the loss minimum itself and fractions of it, the steepest fall, fastai's `valley` — and prints, per reading, how
many suggestions fall in the best band (widened half-way to the next grid rate on each side, as the
calibration counts) and the seed-to-seed spread (largest / smallest suggestion) of each setup. Its last two rows are
the ceiling for any reading of one seed's tests: each seed's own grid of full runs, read by the accuracy the band is
made of — at its best rate, and at the vertex around it (the short runs' reading of their losses).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from benchmarks.lr_calibration import PARTS, fastai_valley, in_band, part_of
from deeprecipe.recipe.lr_find import suggest_lr
from deeprecipe.recipe.lr_methods import vertex_lr


def _range_readings(lrs: list[float], smoothed: list[float]) -> dict[str, float | None]:
    suggestion, min_lr, steep = suggest_lr(lrs, smoothed)
    # The first reading the product used: the steepest point, capped at a tenth of the minimum.
    first = (math.sqrt(steep * min_lr / 10) if steep and steep < min_lr / 10 else min_lr / 10) if min_lr else None
    out = {"deeprecipe (min÷2, current)": suggestion, "deeprecipe v1 (steepest/min÷10)": first, "steepest": steep,
           "valley (fastai)": fastai_valley(lrs, smoothed)}
    for k in (1, 2, 3, 10):
        out[f"minimum ÷ {k}" if k > 1 else "minimum"] = min_lr / k if min_lr else None
    return out


def _short_readings(curve: dict) -> dict[str, float | None]:
    if "finals" in curve:  # the current method: schedule-shaped runs scored by their final loss
        finals = [math.inf if f is None else f for f in curve["finals"]]
        ok = [f for f in finals if math.isfinite(f)]
        return {"short-runs (vertex around the lowest final loss)": vertex_lr(curve["lrs"], finals),
                "short-runs (lowest final loss)": curve["lrs"][finals.index(min(ok))] if ok else None}
    # the first version (constant rate, relative fall), as stored by the earlier calibration run
    scored = [(lr, f) for lr, f in zip(curve["lrs"], curve["falls"]) if f is not None]
    if not scored:
        return {"short-runs v1 (largest fall)": None, "short-runs v1 (largest rate within 5% of the largest fall)": None}
    best = max(f for _, f in scored)
    near = [lr for lr, f in scored if f >= best - 0.05 * abs(best)]
    return {"short-runs v1 (largest fall)": max(scored, key=lambda t: t[1])[0],
            "short-runs v1 (largest rate within 5% of the largest fall)": max(near)}


def readings(case: dict, optimizer: str, cases: list[dict]) -> dict[str, float | None]:
    """Every reading of one seed's tests; `cases` are all seeds' tests of the same setup × optimizer."""
    curves = case["curves"]
    out = _range_readings(curves["range"]["lrs"], curves["range"]["smoothed"])
    # A fraction per optimizer family (fitted on the first three setups: SGD ÷ 2, AdamW ÷ 4).
    out["minimum ÷ 2 (SGD) / ÷ 4 (AdamW)"] = out["minimum"] / (2 if optimizer == "sgd" else 4) if out["minimum"] else None
    # Several range tests combined: the median of the minimum ÷ 2 over every seed's test (one value per setup).
    halves = [suggest_lr(c["curves"]["range"]["lrs"], c["curves"]["range"]["smoothed"])[0] for c in cases]
    out["minimum ÷ 2, median of the seeds' tests"] = float(np.median([h for h in halves if h])) if any(halves) else None
    out.update(_short_readings(curves["short-runs"]))
    return out


ONE_SEED_GRID = "the grid itself, one seed (that seed's best full run)"


def one_seed_grid(accs: dict[str, list[float]]) -> list[float]:
    """Per seed, the grid rate whose full run scored best (ties: the higher rate): the ceiling of any one-seed
    reading, since it reads the very accuracy the band is made of."""
    grid = {float(r): a for r, a in accs.items()}
    seeds = min(map(len, grid.values()))
    return [max(grid, key=lambda r: (grid[r][seed], r)) for seed in range(seeds)]


ONE_SEED_GRID_VERTEX = "the grid itself, one seed (vertex around that seed's best full run)"


def one_seed_grid_vertex(accs: dict[str, list[float]]) -> list[float]:
    """Per seed, its own grid of full runs read as the short runs read their losses: the vertex of the parabola
    through the best rate and its two neighbours in log lr (on the accuracy's negative) — a continuous reading
    of the grid, so that neighbours trading places from seed to seed move it less than an argmax."""
    rates = sorted(float(r) for r in accs)
    by_rate = {float(r): a for r, a in accs.items()}
    seeds = min(map(len, by_rate.values()))
    return [vertex_lr(rates, [-by_rate[r][seed] for r in rates]) for seed in range(seeds)]


def score(results: dict) -> tuple[list[str], dict[str, dict[str, tuple[int, int, float]]]]:
    """(setups, reading → setup → (in band, cases, spread))."""
    table: dict[str, dict[str, tuple[int, int, float]]] = {}
    setups = [k for k, r in results.items() if all("curves" in s for s in r["suggestions"])]
    for key in setups:
        lo, hi = results[key]["band"]
        cases = results[key]["suggestions"]
        per_seed = [readings(s, key.split("/")[1], cases) for s in cases]
        for row, pick, vertex in zip(per_seed, one_seed_grid(results[key]["accs"]), one_seed_grid_vertex(results[key]["accs"])):
            row[ONE_SEED_GRID], row[ONE_SEED_GRID_VERTEX] = pick, vertex
        for name in per_seed[0]:
            vals = [r[name] for r in per_seed if r[name]]
            inside = sum(in_band(v, results[key]["accs"], (lo, hi)) for v in vals)
            spread = max(vals) / min(vals) if vals else float("nan")
            table.setdefault(name, {})[key] = (inside, len(per_seed), spread)
    return setups, table


def markdown(results: dict) -> str:
    setups, table = score(results)
    head = "| reading | " + " | ".join(f"{k} (band {results[k]['band'][0]:g}–{results[k]['band'][1]:g})" for k in setups)
    groups = [p for p in PARTS if any(part_of(k) == p for k in setups)]
    titles = {"chosen on": "chosen-on setups", "held out": "held-out setups", "held out later": "setups held out later"}
    rows = [head + "".join(f" | in band, {titles[g]}" for g in groups) + " | worst spread |",
            "|---" * (len(setups) + len(groups) + 2) + "|"]
    for name, cells in table.items():
        parts = []
        for group in groups:
            part = [c for k, c in cells.items() if part_of(k) == group]
            inside, total = sum(c[0] for c in part), sum(c[1] for c in part)
            parts.append(f"**{inside}/{total}** ({100 * inside / total:.0f} %)" if total else "")
        worst = max(c[2] for c in cells.values())
        rows.append(f"| {name} | " + " | ".join(f"{c[0]}/{c[1]}, ×{c[2]:.1f}" for c in cells.values())
                    + "".join(f" | {p}" for p in parts) + f" | ×{worst:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "lr_calibration.json")
    args = p.parse_args(argv)
    print(markdown(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
