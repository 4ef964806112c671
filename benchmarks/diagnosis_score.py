"""Score the curve diagnosis on the stored corpus of runs with known causes (no training).

    python -m benchmarks.diagnosis_score [--part tune|heldout|all] [--dir tests/data/diagnosis_corpus] [--runs]

Prints the confusion table verdict × cause (markdown, as in docs/recipe.md), the false-alarm rate on healthy
runs and the share of each cause's runs that got a right verdict.

A cause counts only where it visibly hurt the run: its final validation accuracy lies below the 95 % interval
of every healthy run on the same data, split and seed (the four schedules: how far apart good configurations
land), or its loss went NaN. A "10× too high" rate that trained as well as one of the tuned setups is not a
problem for a diagnosis to find; such runs are listed as "<cause> (no effect)", where a healthy-type verdict
and the cause's own verdict are both right. Causes without healthy runs on the same split (tiny data without
regularisation, label noise) always count.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from deeprecipe.train.diagnose import PROBLEMS, diagnose, wilson

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "diagnosis_corpus"
RIGHT = {
    "lr_10x_high": {"unstable"},
    "lr_30x_high": {"unstable"},
    "lr_30x_low": {"underfitting", "not converged"},  # both advise a higher rate or more epochs
    "few_epochs": {"not converged"},
    "model_too_small": {"underfitting"},
    "no_regularisation": {"overfitting"},
    "label_noise": {"overfitting"},  # curves alone cannot tell memorised noise from memorised images
}
FINE = {"healthy", "too little validation data"}  # verdicts that ask for no change to training
TWINNED = {"lr_10x_high", "lr_30x_high", "lr_30x_low", "few_epochs", "model_too_small"}


def load(directory: Path = CORPUS, part: str = "all") -> list[dict]:
    parts = ["tune", "heldout"] if part == "all" else [part]
    return [json.loads(p.read_text()) for part_ in parts for p in sorted((directory / part_).glob("*.json"))]


def verdict_of(record: dict) -> dict:
    """The diagnosis exactly as training computes it: class count, val-set size, schedule, label smoothing."""
    return diagnose(record["history"], num_classes=record["num_classes"], val_images=record["sizes"]["val"],
                    schedule=record["schedule"]["name"], label_smoothing=record.get("label_smoothing", 0.0))


def healthy_floors(records: list[dict]) -> dict[tuple, float]:
    """(setup, part, seed) → the lowest lower end of the healthy runs' val-accuracy intervals on that split."""
    floors: dict[tuple, float] = {}
    for r in records:
        if r["cause"] == "healthy":
            key = r["setup"], r["part"], r["seed"]
            lo, _ = wilson(r["history"][-1]["val_acc"], r["sizes"]["val"])
            floors[key] = min(floors.get(key, 1.0), lo)
    return floors


def label(record: dict, floors: dict[tuple, float]) -> str:
    """The cause as scored: '<cause> (no effect)' when it did not visibly hurt the run."""
    cause = record["cause"]
    floor = floors.get((record["setup"], record["part"], record["seed"]))
    if cause not in TWINNED or record.get("diverged") or not record["history"] or floor is None:
        return cause
    acc = record["history"][-1].get("val_acc")
    return cause if acc is None or acc < floor else f"{cause} (no effect)"


def score(records: list[dict]) -> dict:
    twins = healthy_floors(records)
    table: dict[str, Counter] = defaultdict(Counter)
    right: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        cause, verdict = label(r, twins), verdict_of(r)["verdict"]
        table[cause][verdict] += 1
        if cause == "healthy":
            right[cause].append(verdict not in PROBLEMS)
        elif cause.endswith("(no effect)"):  # nothing to find, though naming the cause is no mistake
            right[cause].append(verdict not in PROBLEMS or verdict in RIGHT[r["cause"]])
        else:
            right[cause].append(verdict in RIGHT[cause])
    healthy = right.get("healthy", [])
    return {"table": {c: dict(v) for c, v in table.items()},
            "right": {c: sum(v) / len(v) for c, v in right.items()},
            "counts": {c: len(v) for c, v in right.items()},
            "false_alarms": (len(healthy) - sum(healthy)) / len(healthy) if healthy else None}


def markdown(result: dict) -> str:
    verdicts = ["healthy", "too little validation data", *PROBLEMS]
    order = ["healthy"] + [c for c in RIGHT] + sorted(c for c in result["table"] if c.endswith("(no effect)"))
    rows = ["| cause \\ verdict | " + " | ".join(verdicts) + " | runs | right |",
            "|---" * (len(verdicts) + 3) + "|"]
    for c in order:
        if c in result["table"]:
            counts = result["table"][c]
            rows.append(f"| {c} | " + " | ".join(str(counts.get(v, "")) for v in verdicts)
                        + f" | {result['counts'][c]} | {result['right'][c]:.0%} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=CORPUS)
    p.add_argument("--part", choices=["tune", "heldout", "all"], default="tune")
    p.add_argument("--runs", action="store_true", help="also list every run with its verdict and evidence")
    args = p.parse_args(argv)
    records = load(args.dir, args.part)
    if args.runs:
        twins = healthy_floors(records)
        for r in records:
            d = verdict_of(r)
            print(f"{r['setup']:15} {r['scenario']:18} s{r['seed']} n_val={r['sizes']['val']:4} "
                  f"{label(r, twins):28} → {d['verdict']}: {' | '.join(d['evidence'][2:])}")
    result = score(records)
    print(markdown(result))
    print(f"\n{len(records)} runs ({args.part}); false alarms on healthy runs: {result['false_alarms']:.1%}")


if __name__ == "__main__":
    main()
