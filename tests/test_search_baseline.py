"""The recipe's guard: the configured settings stand unless the search's best trial beats them beyond the
validation set's noise (its Wilson 95 % interval, computed here by SciPy, not by the product)."""
from __future__ import annotations

import json

import optuna
import pytest
from scipy.stats import binomtest

from deeprecipe.config import resolve_config
from deeprecipe.recipe.baseline import BASELINE, beats_baseline, choose, configured_values
from deeprecipe.recipe.search import run_search
from deeprecipe.session import Session

SMALL_NET = ["model.widths=[16,32]", "model.convs=1", "train.batch_size=64"]


def _wilson_high(p: float, n: int) -> float:
    return binomtest(round(p * n), n).proportion_ci(0.95, method="wilson").high


def _study(values: list[float], baseline_at: int):
    study = optuna.create_study(direction="maximize")
    for i, v in enumerate(values):
        study.add_trial(optuna.trial.create_trial(value=v, user_attrs={BASELINE: True} if i == baseline_at else {}))
    return study


@pytest.mark.parametrize("winner,configured,n", [(0.95, 0.85, 20), (0.95, 0.9, 1000), (1.0, 0.95, 20),
                                                 (0.93, 0.9, 300), (0.97, 0.9, 300), (0.9, 0.1, 10)])
def test_beats_baseline_is_above_the_wilson_interval(winner, configured, n):
    assert beats_baseline(winner, configured, n) == (winner > _wilson_high(configured, n))


def test_choose_keeps_the_configured_trial_unless_beaten_beyond_noise():
    study = _study([0.80, 0.90, 0.85], baseline_at=0)
    best = max(study.trials, key=lambda t: t.value)
    trial, note, kept = choose(study, best, 20)  # 18/20 vs 16/20: inside the interval
    assert kept and trial.user_attrs[BASELINE] and "kept the configured settings" in note and "20 images" in note
    trial, note, kept = choose(study, best, 2000)  # the same gap on 2,000 images is real
    assert not kept and trial.number == best.number and "its settings are used" in note
    alone = _study([0.95, 0.9], baseline_at=0)  # the configured trial is itself the best
    trial, note, kept = choose(alone, alone.trials[0], 20)
    assert trial.number == 0 and not kept and note == "the configured settings were the best trial"
    plain = _study([0.8, 0.9], baseline_at=-1)
    assert choose(plain, plain.trials[1], 20) == (plain.trials[1], None, False)  # no configured trial: no guard


def test_configured_values_reads_dotted_keys():
    cfg = resolve_config(None, ["optim.lr=0.02", "regularize.label_smoothing=0.05"])
    assert configured_values(cfg, ["optim.lr", "regularize.label_smoothing"]) == {
        "optim.lr": 0.02, "regularize.label_smoothing": 0.05}


def test_search_with_a_baseline_trains_the_configured_settings_in_each_stage(tmp_path, mnist_small_npz):
    # 20 validation images: whichever way the guard decides here, its decision must follow the rule (both
    # ways are pinned down by the unit test above).
    cfg = resolve_config(None, [f"data.spec={mnist_small_npz}", *SMALL_NET, "data.val_fraction=0.02",
                                "optim.lr=0.00001", "search.space={optim.lr: {log: [0.003, 0.3]}}",
                                "search.epochs=1", "search.refine_trials=1", "search.refine_epochs=1"])
    session = Session.create(cfg)
    result = run_search(session, tmp_path / "s", trials=3, baseline=True)
    rows = json.loads((tmp_path / "s" / "trials.json").read_text())
    for stage in ("coarse", "refine"):
        configured = [r for r in rows if r["stage"] == stage and r["configured"]]
        assert len(configured) == 1 and configured[0]["state"] == "complete", rows
        assert configured[0]["params"]["optim.lr"] == pytest.approx(1e-5)
    refine = [r for r in rows if r["stage"] == "refine" and r["state"] == "complete"]
    base = next(r for r in refine if r["configured"])
    best = max(refine, key=lambda r: r["value"])
    n = len(session.data.splits["val"])
    beaten = best["value"] > _wilson_high(base["value"], n)
    assert result.kept_configured == (not beaten and best["number"] != base["number"])
    expected = best if beaten else base
    assert result.best_params["optim.lr"] == pytest.approx(expected["params"]["optim.lr"])
    assert result.best_config.optim.lr == pytest.approx(expected["params"]["optim.lr"])
    assert ("kept the configured settings" in result.baseline_note) == result.kept_configured
