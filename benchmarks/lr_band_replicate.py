"""How reproducible is the best band itself? The calibration's grids trained again from other seeds.

    nice python -m benchmarks.lr_band_replicate [--setups digits-mlp,...] [--first-seed 30]
    python -m benchmarks.lr_band_replicate --score

`benchmarks/lr_calibration.py` makes each setup's best band from one grid of full runs, seeds 0–2. This trains
the same rates again from seeds 30–32 (the same split; other initial weights and batch orders; none shared with
the grid or with `benchmarks/lr_starts.py`'s short runs, seeds 0–22) and asks of the replicate what the bar asks
of a suggestion: is its best rate (the best mean of three seeds — the whole grid trained again) in the original
band, widened as the calibration widens it? That is the ceiling of any method scored against one grid's band.
`--score` also reads the stored short runs of `lr_starts.json` (one start, seeds s, s + 10, s + 20) against both
bands, and the starts that share no seed with either grid against the band of both grids pooled (six seeds a
rate); prints a markdown table, and how often the recipe's coarse search box holds each grid's best rate.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.lr_calibration import OPTIMS, SETUPS, best_band, final_val_acc, in_band, setup_overrides
from benchmarks.lr_starts import replay
from deeprecipe.utils import write_json

RESULTS = Path(__file__).parent / "results"


def run(setups: list[str], first_seed: int, calibration: dict, out: Path) -> None:
    results = json.loads(out.read_text()) if out.is_file() else {}
    for setup in setups:
        for opt, opt_overrides in OPTIMS.items():
            key = f"{setup}/{opt}"
            entry = results.setdefault(key, {"seeds": [first_seed + i for i in range(3)], "accs": {}})
            for rate in calibration[key]["accs"]:
                if rate not in entry["accs"]:
                    entry["accs"][rate] = [final_val_acc(setup_overrides(setup) + opt_overrides + [
                        f"optim.lr={float(rate):g}", f"train.seed={s}"]) for s in entry["seeds"]]
                    write_json(out, results)
            print(key, best_band({float(k): v for k, v in entry["accs"].items()}), flush=True)


def best_rate(accs: dict[str, list[float]]) -> float:
    return float(max(accs, key=lambda r: np.mean(accs[r])))


def one_start_readings(starts: dict) -> dict[str, list[list[float | None]]]:
    """Per 'setup/optimizer': for each start offset (seed + 0, + 10, + 20), the product's reading of each seed's
    test from that start alone."""
    return {key: [[replay([tests[i]])[0] for tests in per_seed] for i in range(len(per_seed[0]))]
            for key, per_seed in starts.items()}


def score(replicate: dict, calibration: dict, starts: dict) -> str:
    readings = one_start_readings(starts)
    rows = ["| setup / optimizer | band (seeds 0–2) | band (seeds 30–32) | replicate's best in the first band | "
            "short runs (one start each, seeds 0–2 / 10–12 / 20–22) in the first band | in the replicate's band | "
            "band of all six seeds | short runs from seeds 10–12 / 20–22 in it |", "|---" * 8 + "|"]
    counts = np.zeros(7, dtype=int)
    for key, entry in replicate.items():
        first, accs = tuple(calibration[key]["band"]), calibration[key]["accs"]
        accs2 = {float(k): v for k, v in entry["accs"].items()}
        second = best_band(accs2)
        best_in = in_band(best_rate(entry["accs"]), accs, first)
        suggestions = [s for by_seed in readings.get(key, []) for s in by_seed]
        in_first = sum(in_band(s, accs, first) for s in suggestions if s)
        in_second = sum(in_band(s, accs2, second) for s in suggestions if s)
        # Six seeds pooled: a steadier band. Only the starts that share no seed with either grid are scored on it.
        pooled = {float(r): list(accs[r]) + list(entry["accs"][r]) for r in accs}
        six = best_band(pooled)
        independent = [s for by_seed in readings.get(key, [])[1:] for s in by_seed]
        in_six = sum(in_band(s, pooled, six) for s in independent if s)
        counts += [best_in, 1, in_first, in_second, len(suggestions), in_six, len(independent)]
        rows.append(f"| {key} | {first[0]:g}–{first[1]:g} | {second[0]:g}–{second[1]:g} | {'yes' if best_in else 'no'} | "
                    f"{in_first}/{len(suggestions)} | {in_second}/{len(suggestions)} | {six[0]:g}–{six[1]:g} | "
                    f"{in_six}/{len(independent)} |")
    rows.append(f"| **all** | | | **{counts[0]}/{counts[1]}** | **{counts[2]}/{counts[4]}** | **{counts[3]}/{counts[4]}** | "
                f"| **{counts[5]}/{counts[6]}** |")
    return "\n".join(rows) + "\n\n" + coarse_box_line(replicate, calibration, readings)


def coarse_box_line(replicate: dict, calibration: dict, readings: dict[str, list[list[float | None]]]) -> str:
    """How often the recipe's coarse search box — the suggestion ÷/× recipe.lr_span — holds each grid's best rate."""
    from deeprecipe.config import RecipeConfig
    span = RecipeConfig().lr_span
    held, total = [0, 0], 0
    for key, by_start in readings.items():
        bests = [best_rate(calibration[key]["accs"]), best_rate(replicate[key]["accs"])]
        for s in (s for by_seed in by_start for s in by_seed):
            total += 1
            held = [h + (s / span <= b <= s * span) for h, b in zip(held, bests)]
    return (f"The recipe's coarse search box (suggestion ÷/× {span:g}, `recipe.lr_span`) holds the first grid's best "
            f"rate in {held[0]} of {total} one-start tests and the second grid's in {held[1]}.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default=",".join(SETUPS))
    p.add_argument("--first-seed", type=int, default=30)
    p.add_argument("--out", type=Path, default=RESULTS / "lr_band_replicate.json")
    p.add_argument("--calibration", type=Path, default=RESULTS / "lr_calibration.json")
    p.add_argument("--starts", type=Path, default=RESULTS / "lr_starts.json")
    p.add_argument("--score", action="store_true", help="only read the stored grids")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    calibration = json.loads(args.calibration.read_text())
    if not args.score:
        run(args.setups.split(","), args.first_seed, calibration, args.out)
    starts = json.loads(args.starts.read_text()) if args.starts.is_file() else {}
    print(score(json.loads(args.out.read_text()), calibration, starts))


if __name__ == "__main__":
    main()
