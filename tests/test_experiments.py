"""Built-in experiments: the registry and CLI, `init` in full, and each training experiment's --quick run (slow)."""
from __future__ import annotations

import csv
import json

import pytest

from deeprecipe.experiments.registry import list_experiments, run_experiment

OWN = ["init", "activations", "normalization", "regularization", "degradation", "depth-grid"]


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
    return _quick("normalization", tmp_path_factory.mktemp("normalization"))


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


@pytest.mark.slow
def test_normalization_batch_norm_beats_no_norm(normalization):
    acc = {(r["norm"], r["batch_size"]): r["test_acc"] for r in normalization.rows}
    assert acc[("batch", 64)] > acc[("none", 64)]
    steps = {r["batch_size"]: r["steps"] for r in normalization.rows}
    assert abs(steps[2] - steps[64]) <= 0.2 * steps[64]              # compared at (about) equal steps


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="batch 2: group norm does not train in the steps batch 64 gets "
                                        "(docs/experiments.md), so BN-vs-GN at batch 2 is not shown; needs a redesign")
def test_normalization_batch_norm_degrades_at_batch_2_group_norm_does_not(normalization):
    acc = {(r["norm"], r["batch_size"]): r["test_acc"] for r in normalization.rows}
    assert acc[("group", 2)] > 0.5, acc                               # group norm trains at batch 2
    assert acc[("batch", 64)] - acc[("batch", 2)] > acc[("group", 64)] - acc[("group", 2)], acc


@pytest.mark.slow
def test_regularization_shrinks_the_gap(tmp_path):
    result = _quick("regularization", tmp_path)
    gap = {r["setting"]: r["gap"] for r in result.rows}
    assert gap["all"] < gap["none"]
