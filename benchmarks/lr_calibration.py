"""Score learning-rate suggestions against a grid of short full runs.

    nice python -m benchmarks.lr_calibration [--setups digits-mlp,...] [--seeds 3] [--out benchmarks/results/lr_calibration.json]
    nice python -m benchmarks.lr_calibration --redo-short-runs --setups ...   # only the short runs, on stored grids
    nice python -m benchmarks.lr_calibration --bracket --setups ...   # extend stored grids whose best is the top

For each data set × model × optimizer (SGD with momentum 0.9, AdamW) a grid of rates is trained for a few
epochs under one-cycle, one run per seed, extended upwards while its best mean is the highest rate; the best
band is every grid rate whose mean final val accuracy is within one standard error of the best rate's. The
HELD_OUT setups were added after the methods were chosen on the others and are counted apart. Then, per seed, the range test (`lr-find`, its own reading
and fastai's `valley` and `minimum` readings of the same curve) and the short-runs method (`lr-find --method
short-runs`) suggest a rate. A suggestion is in the band when it lies between the band's lowest and highest
grid rate, widened half-way to the next grid rate on each side (it rounds to a band rate). `--refine FROM`
adds rates beside each band down to quarter-decade steps. Prints a markdown table: in-band share and
seed-to-seed spread (largest / smallest suggestion) per method.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from deeprecipe.utils import write_json

GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
OPTIMS = {"sgd": ["optim.name=sgd", "optim.momentum=0.9"], "adamw": ["optim.name=adamw"]}
SETUPS = {
    "digits-mlp": ["data.spec=builtin:digits", "data.augment=[]", "model.name=mlp", "model.width=128",
                   "train.batch_size=32", "train.epochs=4"],
    "mnist-lenet": ["data.spec=builtin:mnist5k", "data.val_fraction=0.2", "model.name=lenet5", "train.batch_size=64",
                    "train.epochs=3"],
    "photos-convnet": ["model.name=convnet", "model.widths=[16,32]", "model.convs=1", "train.batch_size=32",
                       "train.epochs=4"],
    # Setups added after the methods were chosen on the three above, to check them on cases not looked at.
    "digits-convnet": ["data.spec=builtin:digits", "data.augment=[]", "model.name=convnet", "model.widths=[16,32]",
                       "model.convs=1", "train.batch_size=32", "train.epochs=4"],
    "mnist-mlp": ["data.spec=builtin:mnist5k", "data.val_fraction=0.2", "model.name=mlp", "model.width=128",
                  "train.batch_size=64", "train.epochs=3"],
    # Setups added in the tenth session before the short runs went to three candidates a decade (a change chosen
    # looking at all ten cases above), to check that change on cases not looked at.
    "photos-mlp": ["model.name=mlp", "model.width=256", "train.batch_size=32", "train.epochs=4"],
    "photos-lenet": ["model.name=lenet5", "train.batch_size=32", "train.epochs=4"],
    "mnist-convnet": ["data.spec=builtin:mnist5k", "data.val_fraction=0.2", "model.name=convnet", "model.widths=[16,32]",
                      "model.convs=1", "train.batch_size=64", "train.epochs=3"],
}
HELD_OUT = {"digits-convnet", "mnist-mlp"}
HELD_OUT_LATER = {"photos-mlp", "photos-lenet", "mnist-convnet"}
PARTS = ("chosen on", "held out", "held out later")


def part_of(key: str) -> str:
    """Which group a setup (or 'setup/optimizer' key) is counted in: the setups the methods were chosen on, those
    held out from that choice, or those held out from the tenth session's change (three candidates a decade)."""
    setup = key.split("/")[0]
    return "held out later" if setup in HELD_OUT_LATER else "held out" if setup in HELD_OUT else "chosen on"


def _session(overrides: list[str]):
    from deeprecipe.api import Session
    from deeprecipe.config import resolve_config
    return Session.create(resolve_config(None, ["train.threads=1", "train.precision=fp32", *overrides]))


def final_val_acc(overrides: list[str]) -> float:
    from deeprecipe.errors import DeepRecipeError
    try:
        history = _session(overrides).make_trainer(None, show_progress=False).fit().history
    except DeepRecipeError:  # diverged
        return 0.0
    return float(history[-1]["val_acc"])


def bracket_grid(accs: dict[float, list[float]], run, seeds: int, most: int = 2) -> dict[float, list[float]]:
    """Extend the grid upwards by half-decades (0.3 → 1 → 3) while its best mean sits at the highest rate, at most
    `most` times: a band that touches the grid's edge does not say where the best rates end."""
    for _ in range(most):
        means = {lr: float(np.mean(a)) for lr, a in accs.items()}
        top = max(accs)
        if max(means, key=means.get) != top:
            break
        nxt = float(f"{10 ** (round(2 * math.log10(top)) / 2 + 0.5):.1g}")  # the next half-decade: 0.3 → 1 → 3
        accs[nxt] = [run(nxt, s) for s in range(seeds)]
    return accs


def best_band(accs: dict[float, list[float]]) -> tuple[float, float]:
    """(lowest, highest) grid rate whose mean accuracy is within one standard error of the best mean."""
    means = {lr: float(np.mean(a)) for lr, a in accs.items()}
    best = max(means, key=means.get)
    se = float(np.std(accs[best], ddof=1) / math.sqrt(len(accs[best]))) if len(accs[best]) > 1 else 0.0
    band = [lr for lr, m in means.items() if m >= means[best] - se]
    return min(band), max(band)


def band_edges(rates, band: tuple[float, float]) -> tuple[float, float]:
    """The band widened to half-way (in log lr) to the next grid rate outside it on each side — on a half-decade
    grid a factor of about √3, on a refined one less; past the grid's end, by half the last step. A suggestion
    inside these edges rounds to a band rate."""
    grid = sorted(float(r) for r in rates)
    lo, hi = grid.index(float(band[0])), grid.index(float(band[1]))
    below = grid[lo - 1] if lo > 0 else grid[lo] ** 2 / grid[lo + 1]
    above = grid[hi + 1] if hi + 1 < len(grid) else grid[hi] ** 2 / grid[hi - 1]
    return math.sqrt(below * grid[lo]), math.sqrt(grid[hi] * above)


def in_band(value: float, rates, band: tuple[float, float]) -> bool:
    low, high = band_edges(rates, band)
    return low <= value <= high


def refine_grid(accs: dict[float, list[float]], run, seeds: int, finest: float = 10 ** 0.26,
                most: int = 3) -> dict[float, list[float]]:
    """Add the geometric midpoint between each band rate and its grid neighbours until they are at most a
    quarter decade apart (`finest`): a half-decade grid cannot tell a band of one rate from one three times
    as wide, and the suggestions are read to well within that."""
    for _ in range(most):
        grid = sorted(accs)
        lo, hi = best_band(accs)
        new = set()
        for i, rate in enumerate(grid):
            if not lo <= rate <= hi:
                continue
            for j in (i - 1, i + 1):
                if 0 <= j < len(grid) and max(rate, grid[j]) / min(rate, grid[j]) > finest:
                    new.add(float(f"{math.sqrt(rate * grid[j]):.2g}"))
        new -= set(accs)
        if not new:
            break
        for rate in sorted(new):
            accs[rate] = [run(rate, s) for s in range(seeds)]
            print(f"  {rate:g}: {np.mean(accs[rate]):.4f}", flush=True)
    return accs


def fastai_valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's `valley`: two thirds along the longest decreasing stretch of the loss curve."""
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def suggestions(overrides: list[str]) -> dict[str, float | None]:
    from deeprecipe.recipe.lr_find import run_lr_find
    session = _session(overrides)
    rt = run_lr_find(session)
    out = {"range (deeprecipe)": rt.suggestion,
           "range (fastai valley)": fastai_valley(rt.lrs, rt.smoothed) if len(rt.lrs) > 5 else None,
           "range (fastai minimum)": rt.lrs[int(np.argmin(rt.smoothed))] / 10 if rt.lrs else None}
    out["short-runs"], curve = short_runs(session)
    # The raw curves too, so that other readings of the same tests can be scored without training again.
    out["curves"] = {"range": {"lrs": rt.lrs, "smoothed": rt.smoothed}, "short-runs": curve}
    return out


def short_runs(session, stop: bool = True) -> tuple[float | None, dict]:
    """(suggestion, {"lrs", "finals", "start_loss", "chance_loss"}) of one short-runs test: what scoring it and
    checking its stop need (not the per-step losses). `stop` False: every candidate (`run_short_runs`)."""
    from deeprecipe.recipe.lr_methods import run_short_runs
    record = run_short_runs(session, stop=stop).to_dict()
    return record["suggestion"], {k: record[k] for k in ("lrs", "finals", "start_loss", "chance_loss")}


def redo_short_runs(results: dict, setups: list[str]) -> None:
    """Run the current short-runs method again on every stored setup × optimizer × seed (the grids stay)."""
    for setup in setups:
        base = setup_overrides(setup)
        for opt, opt_overrides in OPTIMS.items():
            for seed, sugg in enumerate(results.get(f"{setup}/{opt}", {}).get("suggestions", [])):
                sugg["short-runs"], curve = short_runs(_session(base + opt_overrides + [f"train.seed={seed}"]))
                sugg.setdefault("curves", {})["short-runs"] = curve
            print(setup, opt, [s["short-runs"] for s in results.get(f"{setup}/{opt}", {}).get("suggestions", [])], flush=True)


def setup_overrides(setup: str) -> list[str]:
    return list(SETUPS[setup]) + ([f"data.spec={photos_spec()}"] if setup.startswith("photos-") else [])


def photos_spec() -> str:
    from benchmarks.diagnosis_corpus import data_spec
    return data_spec("photos", 60, 0.0, 0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", default="digits-mlp")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lr_calibration.json")
    p.add_argument("--bracket", action="store_true",
                   help="extend stored grids whose best rate is the highest one (then --redo-short-runs if given)")
    p.add_argument("--refine", type=Path, metavar="FROM",
                   help="copy the stored grids of FROM into --out and add rates between the band and its "
                        "neighbours down to quarter-decade steps")
    p.add_argument("--redo-short-runs", action="store_true",
                   help="only run the short-runs method again on the stored grids (after it changed)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.refine:
        source = json.loads(args.refine.read_text())
        for setup in args.setups.split(","):
            for opt, opt_overrides in OPTIMS.items():
                key = f"{setup}/{opt}"
                if key not in source or key in results:
                    continue
                r, base = source[key], setup_overrides(setup) + opt_overrides
                run = lambda lr, s: final_val_acc(base + [f"optim.lr={lr:g}", f"train.seed={s}"])
                print(key, flush=True)
                accs = refine_grid({float(k): v for k, v in r["accs"].items()}, run, len(next(iter(r["accs"].values()))))
                results[key] = {**r, "accs": {str(k): v for k, v in accs.items()}, "band": best_band(accs)}
                print(key, results[key]["band"], flush=True)
                write_json(args.out, results)
        print(markdown(results))
        return
    if args.bracket:
        for setup in args.setups.split(","):
            for opt, opt_overrides in OPTIMS.items():
                if f"{setup}/{opt}" not in results:
                    continue
                r, base = results[f"{setup}/{opt}"], setup_overrides(setup) + opt_overrides
                run = lambda lr, s: final_val_acc(base + [f"optim.lr={lr:g}", f"train.seed={s}"])
                accs = bracket_grid({float(k): v for k, v in r["accs"].items()}, run, len(next(iter(r["accs"].values()))))
                r["accs"], r["band"] = {str(k): v for k, v in accs.items()}, best_band(accs)
                print(setup, opt, r["band"], flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    if args.redo_short_runs:
        redo_short_runs(results, args.setups.split(","))
        args.out.write_text(json.dumps(results, indent=1))
        print(markdown(results))
        return
    for setup in args.setups.split(","):
        base = setup_overrides(setup)
        for opt, opt_overrides in OPTIMS.items():
            key = f"{setup}/{opt}"
            if key in results:
                continue
            run = lambda lr, s: final_val_acc(base + opt_overrides + [f"optim.lr={lr:g}", f"train.seed={s}"])
            accs = bracket_grid({lr: [run(lr, s) for s in range(args.seeds)] for lr in GRID}, run, args.seeds)
            sugg = [suggestions(base + opt_overrides + [f"train.seed={s}"]) for s in range(args.seeds)]
            results[key] = {"accs": {str(k): v for k, v in accs.items()}, "band": best_band(accs), "suggestions": sugg}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
            print(key, results[key]["band"], [{k: v for k, v in s.items() if k != "curves"} for s in sugg], flush=True)
    print(markdown(results))


def _stored(suggestion: dict, method: str) -> float | None:
    """A stored suggestion; deeprecipe's range reading taken again from the stored curve, so that tests run
    before its reading changed are scored by the current one."""
    if method == "range (deeprecipe)" and "curves" in suggestion:
        from deeprecipe.recipe.lr_find import suggest_lr
        return suggest_lr(suggestion["curves"]["range"]["lrs"], suggestion["curves"]["range"]["smoothed"])[0]
    return suggestion[method]


def markdown(results: dict) -> str:
    methods = ["range (deeprecipe)", "range (fastai valley)", "range (fastai minimum)", "short-runs"]
    rows = ["| setup / optimizer | best band | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    score = {part: {m: [] for m in methods} for part in PARTS}
    for key, r in results.items():
        lo, hi = r["band"]
        cells = []
        for m in methods:
            vals = [v for v in (_stored(s, m) for s in r["suggestions"]) if v]
            inside = [in_band(v, r["accs"], (lo, hi)) for v in vals]
            score[part_of(key)][m] += inside
            spread = max(vals) / min(vals) if vals else float("nan")
            cells.append(", ".join(f"{v:.2g}" for v in vals) + f" ({sum(inside)}/{len(r['suggestions'])} in, ×{spread:.1f})")
        rows.append(f"| {key} | {lo:g}–{hi:g} | " + " | ".join(cells) + " |")
    for part, counts in score.items():
        if any(counts.values()):
            name = {"chosen on": "setups the methods were chosen on", "held out": "held-out setups",
                    "held out later": "setups held out from the tenth session's change"}[part]
            rows.append(f"| **in band, {name}** | | " + " | ".join(f"{sum(v)}/{len(v)}" for v in counts.values()) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
