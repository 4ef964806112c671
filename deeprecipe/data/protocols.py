"""Evaluation protocols beyond one split: stratified k-fold and repeated random splits.

Each protocol yields train/val/test index sets (scikit-learn draws them); training every one and
reporting mean ± std of the test metrics tells how much of a result is the split's luck.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, StratifiedShuffleSplit

from ..errors import DeepRecipeError
from .split import _stratified_take

# Test metrics summarised across folds/repeats (the rest of each sub-run's summary stays in its folder).
PROTOCOL_METRICS = ("test_acc", "test_loss", "test_top5", "macro_f1")


def protocol_name(folds: int, repeats: int) -> str:
    if folds >= 2 and repeats >= 2:
        return f"{repeats}×{folds}-fold CV"
    if folds >= 2:
        return f"{folds}-fold CV"
    return f"{repeats} random splits"


def protocol_splits(labels, folds: int, repeats: int, val_fraction: float, test_fraction: float,
                    seed: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Stratified k-fold (folds ≥ 2; repeated when repeats ≥ 2 too) or repeated stratified random
    splits (repeats ≥ 2). Validation is carved from each training part, `val_fraction` of the set."""
    labels = np.asarray(labels)
    n = len(labels)
    smallest = int(np.bincount(labels)[np.bincount(labels) > 0].min())
    if folds >= 2:
        if smallest < folds:
            raise DeepRecipeError(f"data.folds={folds} but the smallest class has only {smallest} image(s)",
                                  f"use data.folds ≤ {smallest}, or data.repeats for random splits")
        splitter = (RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed) if repeats >= 2
                    else StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed))
    elif repeats >= 2:
        if test_fraction <= 0:
            raise DeepRecipeError("data.repeats needs a test set, but data.test_fraction is 0", "set data.test_fraction, e.g. 0.2")
        splitter = StratifiedShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=seed)
    else:
        raise DeepRecipeError("no protocol: data.folds and data.repeats are both below 2", "set data.folds=5 or data.repeats=5")
    try:  # scikit-learn refuses e.g. a test part smaller than the class count: say so without a traceback
        draws = list(splitter.split(np.zeros(n), labels))
    except ValueError as e:
        raise DeepRecipeError(f"these labels cannot be split for {protocol_name(folds, repeats)}: {e}",
                              "raise data.test_fraction or add images") from None
    for i, (rest, test) in enumerate(draws):
        val_of_rest = min(0.5, val_fraction * n / max(1, len(rest)))
        train, val = _stratified_take(np.sort(rest), labels, val_of_rest, seed + 1000 + i)
        yield {"train": train, "val": val, "test": np.sort(test)}


def sub_run_name(folds: int, index: int) -> str:
    return f"fold{index}" if folds >= 2 else f"repeat{index}"


def macro_f1(summary: dict) -> float | None:
    per_class = summary.get("per_class")
    return float(np.mean([v["f1"] for v in per_class.values()])) if per_class else None


def summarize_protocol(results: list[dict], folds: int, repeats: int, names: list[str]) -> dict:
    """Per-fold test metrics and their mean and sample std (ddof=1), for summary.json."""
    rows = []
    for name, r in zip(names, results):
        row = {"run": name, **{k: r[k] for k in PROTOCOL_METRICS if r.get(k) is not None}}
        f1 = macro_f1(r)
        if f1 is not None:
            row["macro_f1"] = f1
        row.update(best_epoch=r.get("best_epoch"), train_seconds=r.get("train_seconds"), sizes=r.get("sizes"))
        rows.append(row)
    stats = {}
    for key in PROTOCOL_METRICS:
        values = [row[key] for row in rows if row.get(key) is not None]
        if values:
            stats[key] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                          "values": values}
    out = {"protocol": protocol_name(folds, repeats), "folds": folds, "repeats": repeats, "runs": rows,
           "metrics": stats}
    if "test_acc" in stats:  # the usual top-level keys, so tools reading one run's summary still work
        out["test_acc"] = stats["test_acc"]["mean"]
        out["test_acc_std"] = stats["test_acc"]["std"]
    return out


def format_protocol(summary: dict) -> str:
    """One line for the terminal, made from the same numbers as summary.json."""
    bits = [f"{k} {m['mean']:.4f} ± {m['std']:.4f}" for k, m in summary["metrics"].items()]
    return f"{summary['protocol']} over {len(summary['runs'])} runs: " + ", ".join(bits)
