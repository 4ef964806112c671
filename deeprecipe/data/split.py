"""Honest splits: stratified train/val/test with a seed (scikit-learn does the work)."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from ..errors import DeepRecipeError


def _stratified_take(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """Split `indices` into (rest, taken) with `fraction` of them taken, stratified by label."""
    n_take = int(round(fraction * len(indices)))
    if n_take == 0:
        return indices, indices[:0]
    n_classes = len(np.unique(labels[indices]))
    counts = np.bincount(labels[indices])
    counts = counts[counts > 0]
    if n_take < n_classes or len(indices) - n_take < n_classes or counts.min() < 2:
        # Too few samples for stratification: fall back to a seeded random split (still reproducible).
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(indices))
        return np.sort(indices[perm[n_take:]]), np.sort(indices[perm[:n_take]])
    sss = StratifiedShuffleSplit(n_splits=1, test_size=n_take, random_state=seed)
    rest, taken = next(sss.split(np.zeros(len(indices)), labels[indices]))
    return np.sort(indices[rest]), np.sort(indices[taken])


def split_indices(labels, val_fraction: float, test_fraction: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified train/val/test indices. Fractions are of the whole set."""
    labels = np.asarray(labels)
    if val_fraction + test_fraction >= 1.0:
        raise DeepRecipeError("data.val_fraction + data.test_fraction must be below 1", "lower one of them")
    all_idx = np.arange(len(labels))
    rest, test = _stratified_take(all_idx, labels, test_fraction, seed)
    val_of_rest = val_fraction / (1.0 - test_fraction)  # test_fraction < 1: the check above, fractions ≥ 0
    train, val = _stratified_take(rest, labels, val_of_rest, seed + 1)
    if len(train) == 0:
        raise DeepRecipeError(f"the split leaves no training images ({len(labels)} in all)", "lower val/test fractions or add data")
    return {"train": train, "val": val, "test": test}


def resolve_splits(given: dict[str, np.ndarray] | None, labels, val_fraction: float, test_fraction: float,
                   seed: int) -> dict[str, np.ndarray]:
    """Respect a given split (folder train/val/test); carve any missing part out of train."""
    if given is None:
        return split_indices(labels, val_fraction, test_fraction, seed)
    labels = np.asarray(labels)
    out = {k: np.asarray(v) for k, v in given.items()}
    train = out["train"]
    for part, frac in (("test", test_fraction), ("val", val_fraction)):
        if part not in out:
            train, taken = _stratified_take(train, labels, frac, seed + (part == "val"))
            out[part] = taken
    out["train"] = train
    return out
