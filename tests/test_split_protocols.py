"""Splits and evaluation protocols pinned down without training: sizes, stratification, the fallbacks at the
edges of stratification, seeding, and the protocol summary's numbers (each test runs in milliseconds)."""
from __future__ import annotations

import numpy as np
import pytest

from deeprecipe.data.protocols import (format_protocol, macro_f1, protocol_name, protocol_splits, sub_run_name,
                                       summarize_protocol)
from deeprecipe.data.split import _stratified_take, resolve_splits, split_indices
from deeprecipe.errors import DeepRecipeError


def _per_class(labels, part, n_classes):
    return np.bincount(labels[part], minlength=n_classes).tolist()


def _is_partition(parts, n):
    joined = np.concatenate(parts)
    return sorted(joined.tolist()) == list(range(n))


# ------------------------------------------------------------------------------------------ _stratified_take
def test_take_nothing_returns_the_indices_untouched():
    idx = np.array([5, 3, 9])
    rest, taken = _stratified_take(idx, np.zeros(10, int), 0.1, seed=0)  # round(0.3) = 0
    assert rest is idx and len(taken) == 0 and taken.dtype == idx.dtype


def test_take_is_stratified_sorted_and_seeded():
    labels = np.repeat([0, 1, 2], [20, 40, 60])
    idx = np.arange(120)
    rest, taken = _stratified_take(idx, labels, 0.25, seed=0)
    assert len(taken) == 30 and _is_partition([rest, taken], 120)
    assert _per_class(labels, taken, 3) == [5, 10, 15]
    assert np.all(np.diff(rest) > 0) and np.all(np.diff(taken) > 0)
    again = _stratified_take(idx, labels, 0.25, seed=0)
    other = _stratified_take(idx, labels, 0.25, seed=1)
    assert np.array_equal(again[1], taken) and not np.array_equal(other[1], taken)


def test_take_stratifies_when_a_label_is_absent():
    # label 1 never occurs: the empty class must not count as "too small to stratify"
    labels = np.repeat([0, 2], 10)
    for seed in range(10):
        rest, taken = _stratified_take(np.arange(20), labels, 0.5, seed=seed)
        assert _per_class(labels, taken, 3) == [5, 0, 5]


def test_take_of_a_subset_uses_the_subset_labels():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10)
    idx = np.arange(10, 30)  # classes 1 and 2 only
    rest, taken = _stratified_take(idx, labels, 0.5, seed=0)
    assert _per_class(labels, taken, 3) == [0, 5, 5] and _is_partition([rest, taken, np.arange(10)], 30)


@pytest.mark.parametrize("n_take, n", [(3, 12), (9, 12)])
def test_take_stratifies_right_at_one_per_class(n_take, n):
    """Exactly one image per class taken (or left): still stratified, so every class appears."""
    labels = np.tile([0, 1, 2], n // 3)
    for seed in range(10):
        rest, taken = _stratified_take(np.arange(n), labels, n_take / n, seed=seed)
        assert sorted(set(labels[taken])) == [0, 1, 2] and sorted(set(labels[rest])) == [0, 1, 2]


def test_take_stratifies_with_two_per_class():
    labels = np.repeat([0, 1, 2], 2)
    for seed in range(10):
        rest, taken = _stratified_take(np.arange(6), labels, 0.5, seed=seed)
        assert _per_class(labels, taken, 3) == [1, 1, 1]


@pytest.mark.parametrize("labels, fraction", [
    (np.array([0, 0, 0, 0, 0, 1]), 0.5),       # a class with one image
    (np.repeat([0, 1, 2, 3], 3), 3 / 12),      # fewer taken than classes
    (np.repeat([0, 1, 2, 3], 3), 9 / 12),      # fewer left than classes
])
def test_take_falls_back_to_a_seeded_random_split(labels, fraction):
    n = len(labels)
    rest, taken = _stratified_take(np.arange(n), labels, fraction, seed=7)
    assert len(taken) == round(fraction * n) and _is_partition([rest, taken], n)
    assert np.all(np.diff(rest) > 0) and np.all(np.diff(taken) > 0)
    again = _stratified_take(np.arange(n), labels, fraction, seed=7)
    assert np.array_equal(again[0], rest) and np.array_equal(again[1], taken)
    draws = {tuple(_stratified_take(np.arange(n), labels, fraction, seed=s)[1]) for s in range(8)}
    assert len(draws) > 1  # the seed matters


def test_fallback_keeps_the_original_index_values():
    labels = np.zeros(100, int)
    labels[50] = 1  # class 1 has one image: fallback path
    idx = np.arange(40, 60)
    rest, taken = _stratified_take(idx, labels, 0.5, seed=0)
    assert _is_partition([rest - 40, taken - 40], 20)


# ------------------------------------------------------------------------------------------ split_indices
def test_split_sizes_are_fractions_of_the_whole_set():
    labels = np.repeat(np.arange(5), 20)
    s = split_indices(labels, 0.2, 0.3, seed=0)
    assert {k: len(v) for k, v in s.items()} == {"train": 50, "val": 20, "test": 30}
    assert _is_partition(list(s.values()), 100)
    assert _per_class(labels, s["val"], 5) == [4] * 5 and _per_class(labels, s["test"], 5) == [6] * 5


def test_split_without_test_or_val():
    labels = np.repeat(np.arange(4), 10)
    s = split_indices(labels, 0.25, 0.0, seed=0)
    assert len(s["test"]) == 0 and len(s["val"]) == 10 and len(s["train"]) == 30
    s = split_indices(labels, 0.0, 0.5)
    assert len(s["val"]) == 0 and len(s["test"]) == 20 and len(s["train"]) == 20


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (0.7, 0.4)])
def test_fractions_summing_to_one_or_more_are_refused(val, test):
    with pytest.raises(DeepRecipeError) as e:
        split_indices(np.arange(10) % 2, val, test)
    assert (e.value.message, e.value.fix) == ("data.val_fraction + data.test_fraction must be below 1",
                                              "lower one of them")


def test_a_split_leaving_no_training_images_is_refused():
    with pytest.raises(DeepRecipeError) as e:
        split_indices([0, 1], 0.4, 0.4)
    assert (e.value.message, e.value.fix) == ("the split leaves no training images (2 in all)",
                                              "lower val/test fractions or add data")


def test_split_draws_test_then_val_with_the_next_seed():
    """The exact draw is part of a run's reproducibility: the same seed gives the same split in every version."""
    labels = np.repeat(np.arange(3), 20)
    for seed in (0, 5):
        s = split_indices(labels, 0.2, 0.25, seed=seed)
        rest, test = _stratified_take(np.arange(60), labels, 0.25, seed)
        train, val = _stratified_take(rest, labels, 0.2 / 0.75, seed + 1)
        assert [s["train"].tolist(), s["val"].tolist(), s["test"].tolist()] == [train.tolist(), val.tolist(), test.tolist()]


def test_split_default_seed_is_zero_and_val_differs_from_test_draw():
    labels = np.repeat(np.arange(2), 50)
    assert all(np.array_equal(a, b) for a, b in zip(split_indices(labels, 0.2, 0.2).values(),
                                                    split_indices(labels, 0.2, 0.2, seed=0).values()))
    a, b = split_indices(labels, 0.2, 0.2, seed=0), split_indices(labels, 0.2, 0.2, seed=1)
    assert not np.array_equal(a["val"], b["val"])


# ------------------------------------------------------------------------------------------ resolve_splits
def test_resolve_without_a_given_split_is_split_indices():
    labels = np.repeat(np.arange(3), 10)
    a = resolve_splits(None, labels, 0.2, 0.2, seed=5)
    b = split_indices(labels, 0.2, 0.2, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in b)


def test_resolve_keeps_given_parts_and_carves_missing_ones_from_train():
    labels = np.repeat(np.arange(2), 20)
    given = {"train": np.arange(30), "test": np.arange(30, 40)}
    out = resolve_splits(given, labels, 0.2, 0.5, seed=0)
    assert out["test"].tolist() == list(range(30, 40))  # given test kept; test_fraction unused
    assert len(out["val"]) == 6 and _is_partition([out["train"], out["val"]], 30)  # 0.2 of the 30 train images
    full = {"train": np.arange(20), "val": np.arange(20, 30), "test": np.arange(30, 40)}
    kept = resolve_splits(full, labels, 0.2, 0.2, seed=0)
    assert all(kept[k].tolist() == full[k].tolist() for k in full)


def test_resolve_carves_test_then_val_with_their_own_seeds():
    labels = np.repeat(np.arange(2), 50)
    out = resolve_splits({"train": np.arange(100)}, labels, 0.25, 0.2, seed=3)
    rest, test = _stratified_take(np.arange(100), labels, 0.2, 3)
    train, val = _stratified_take(rest, labels, 0.25, 4)
    assert out["test"].tolist() == test.tolist() and out["val"].tolist() == val.tolist()
    assert out["train"].tolist() == train.tolist()


# ------------------------------------------------------------------------------------------ protocols
@pytest.mark.parametrize("folds, repeats, name", [(5, 0, "5-fold CV"), (2, 1, "2-fold CV"), (2, 2, "2×2-fold CV"),
                                                  (3, 4, "4×3-fold CV"), (0, 2, "2 random splits"),
                                                  (1, 7, "7 random splits")])
def test_protocol_names(folds, repeats, name):
    assert protocol_name(folds, repeats) == name


def test_sub_run_names():
    assert sub_run_name(2, 3) == "fold3" and sub_run_name(1, 3) == "repeat3" and sub_run_name(0, 1) == "repeat1"


def test_two_fold_cv_tests_every_image_once_with_val_from_train():
    labels = np.repeat(np.arange(2), 10)
    splits = list(protocol_splits(labels, 2, 0, 0.1, 0.2, seed=0))
    assert len(splits) == 2
    assert sorted(np.concatenate([s["test"] for s in splits]).tolist()) == list(range(20))
    for s in splits:
        assert _is_partition([s["train"], s["val"], s["test"]], 20)
        assert len(s["val"]) == 2 and _per_class(labels, s["test"], 2) == [5, 5]  # val: 0.1 of all 20
        assert all(np.all(np.diff(s[k]) > 0) for k in s)


def test_repeated_kfold_runs_folds_times_repeats():
    labels = np.repeat(np.arange(2), 6)
    splits = list(protocol_splits(labels, 3, 2, 0.1, 0.2, seed=0))
    assert len(splits) == 6
    first, second = splits[:3], splits[3:]
    for group in (first, second):
        assert sorted(np.concatenate([s["test"] for s in group]).tolist()) == list(range(12))
    assert any(not np.array_equal(a["test"], b["test"]) for a, b in zip(first, second))


def test_kfold_is_seeded():
    labels = np.repeat(np.arange(2), 10)
    a = [s["test"].tolist() for s in protocol_splits(labels, 2, 0, 0.1, 0.2, seed=0)]
    b = [s["test"].tolist() for s in protocol_splits(labels, 2, 0, 0.1, 0.2, seed=0)]
    c = [s["test"].tolist() for s in protocol_splits(labels, 2, 0, 0.1, 0.2, seed=1)]
    d = [s["test"].tolist() for s in protocol_splits(labels, 2, 0, 0.1, 0.2)]
    assert a == b == d and a != c


def test_validation_is_capped_at_half_of_the_training_part():
    labels = np.repeat(np.arange(2), 20)
    s = next(protocol_splits(labels, 2, 0, 0.9, 0.2, seed=0))
    assert len(s["val"]) == 10 and len(s["train"]) == 10


def test_validation_draw_differs_per_fold():
    labels = np.repeat(np.arange(2), 50)
    splits = list(protocol_splits(labels, 0, 3, 0.2, 0.2, seed=0))
    # the same test draw for two repeats would still give different val draws; here: each repeat is seeded apart
    tests = [s["test"].tolist() for s in splits]
    assert len({tuple(t) for t in tests}) == 3
    for s in splits:
        assert len(s["test"]) == 20 and len(s["val"]) == 20 and _per_class(labels, s["test"], 2) == [10, 10]
        assert _is_partition([s["train"], s["val"], s["test"]], 100)


def test_repeated_splits_are_seeded():
    labels = np.repeat(np.arange(2), 10)
    a = [s["test"].tolist() for s in protocol_splits(labels, 0, 2, 0.1, 0.2, seed=0)]
    b = [s["test"].tolist() for s in protocol_splits(labels, 0, 2, 0.1, 0.2, seed=1)]
    c = [s["test"].tolist() for s in protocol_splits(labels, 0, 2, 0.1, 0.2, seed=0)]
    assert a != b and a == c
    a = [s["test"].tolist() for s in protocol_splits(labels, 2, 2, 0.1, 0.2, seed=0)]  # repeated k-fold too
    c = [s["test"].tolist() for s in protocol_splits(labels, 2, 2, 0.1, 0.2, seed=0)]
    assert a == c


def test_kfold_val_seed_is_per_fold():
    """Each fold's validation draw gets its own seed (seed + 1000 + fold), so folds are independent draws."""
    labels = np.repeat(np.arange(2), 20)
    for seed in (0, 3):
        for i, s in enumerate(protocol_splits(labels, 2, 0, 0.2, 0.2, seed=seed)):
            rest = np.setdiff1d(np.arange(40), s["test"])
            _, val = _stratified_take(rest, labels, 0.2 * 40 / len(rest), seed + 1000 + i)
            assert s["val"].tolist() == val.tolist()


def test_folds_equal_to_the_smallest_class_are_allowed():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    assert len(list(protocol_splits(labels, 3, 0, 0.0, 0.2))) == 3
    with pytest.raises(DeepRecipeError) as e:
        list(protocol_splits(labels, 4, 0, 0.0, 0.2))
    assert (e.value.message, e.value.fix) == ("data.folds=4 but the smallest class has only 3 image(s)",
                                              "use data.folds ≤ 3, or data.repeats for random splits")
    with pytest.raises(DeepRecipeError, match="smallest class has only 1 image"):
        list(protocol_splits(np.array([0, 0, 0, 1, 2, 2, 2]), 2, 0, 0.0, 0.2))  # a class of one image


def test_smallest_class_ignores_absent_labels():
    labels = np.repeat([0, 2], 3)  # label 1 absent: the smallest class has 3 images, not 0
    assert len(list(protocol_splits(labels, 3, 0, 0.0, 0.2))) == 3


def test_repeats_need_a_test_set_and_some_protocol():
    labels = np.repeat(np.arange(2), 10)
    with pytest.raises(DeepRecipeError) as e:
        list(protocol_splits(labels, 0, 2, 0.1, 0.0))
    assert (e.value.message, e.value.fix) == ("data.repeats needs a test set, but data.test_fraction is 0",
                                              "set data.test_fraction, e.g. 0.2")
    assert len(list(protocol_splits(labels, 1, 2, 0.1, 0.1))) == 2  # a small positive test fraction is enough
    with pytest.raises(DeepRecipeError, match="^these labels cannot be split for 2 random splits: .*test_size") as e:
        list(protocol_splits(labels, 0, 2, 0.1, 0.01))  # one test image for two classes
    assert e.value.fix == "raise data.test_fraction or add images"
    for folds, repeats in ((1, 1), (0, 0)):
        with pytest.raises(DeepRecipeError) as e:
            list(protocol_splits(labels, folds, repeats, 0.1, 0.2))
        assert (e.value.message, e.value.fix) == ("no protocol: data.folds and data.repeats are both below 2",
                                                  "set data.folds=5 or data.repeats=5")


# ------------------------------------------------------------------------------------------ summaries
def _result(acc, loss, f1s=None, **extra):
    r = {"test_acc": acc, "test_loss": loss, "best_epoch": 2, "train_seconds": 1.5, "sizes": {"test": 4}, **extra}
    if f1s is not None:
        r["per_class"] = {str(i): {"f1": f} for i, f in enumerate(f1s)}
    return r


def test_macro_f1_is_the_mean_of_per_class_f1():
    assert macro_f1({"per_class": {"a": {"f1": 0.5}, "b": {"f1": 1.0}}}) == pytest.approx(0.75)
    assert macro_f1({}) is None and macro_f1({"per_class": {}}) is None


def test_protocol_summary_has_mean_sample_std_and_rows():
    results = [_result(0.5, 1.0, [0.2, 0.4]), _result(0.7, 0.8, [0.6, 0.8]), _result(0.9, 0.6, None, test_top5=1.0)]
    s = summarize_protocol(results, 3, 0, ["fold1", "fold2", "fold3"])
    assert s["protocol"] == "3-fold CV" and s["folds"] == 3 and s["repeats"] == 0
    assert [r["run"] for r in s["runs"]] == ["fold1", "fold2", "fold3"]
    assert s["runs"][0] == {"run": "fold1", "test_acc": 0.5, "test_loss": 1.0, "macro_f1": pytest.approx(0.3),
                            "best_epoch": 2, "train_seconds": 1.5, "sizes": {"test": 4}}
    assert "macro_f1" not in s["runs"][2] and s["runs"][2]["test_top5"] == 1.0
    acc = s["metrics"]["test_acc"]
    assert acc["values"] == [0.5, 0.7, 0.9]
    assert acc["mean"] == pytest.approx(0.7) and acc["std"] == pytest.approx(0.2)  # ddof=1
    assert s["metrics"]["macro_f1"]["values"] == [pytest.approx(0.3), pytest.approx(0.7)]
    assert s["metrics"]["test_top5"] == {"mean": 1.0, "std": 0.0, "values": [1.0]}
    assert s["test_acc"] == pytest.approx(0.7) and s["test_acc_std"] == pytest.approx(0.2)
    assert isinstance(acc["mean"], float) and isinstance(acc["std"], float)


def test_protocol_summary_skips_missing_metrics():
    s = summarize_protocol([{"test_loss": 1.0, "test_acc": None}], 0, 2, ["repeat1"])
    assert s["protocol"] == "2 random splits" and "test_acc" not in s and "test_acc" not in s["metrics"]
    assert s["runs"] == [{"run": "repeat1", "test_loss": 1.0, "best_epoch": None, "train_seconds": None,
                          "sizes": None}]
    assert s["metrics"] == {"test_loss": {"mean": 1.0, "std": 0.0, "values": [1.0]}}


def test_protocol_line_matches_the_summary():
    s = summarize_protocol([_result(0.5, 1.0), _result(0.75, 0.5)], 2, 0, ["fold1", "fold2"])
    assert format_protocol(s) == ("2-fold CV over 2 runs: test_acc 0.6250 ± 0.1768, test_loss 0.7500 ± 0.3536")
