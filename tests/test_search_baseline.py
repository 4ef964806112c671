"""The recipe's guard: the configured settings stand unless the search's best trial beats them beyond the
validation set's noise: a paired test on the images the two trials disagree on (an exact one-sided McNemar test,
computed here from binomial coefficients, not by the product), else the configured trial's Wilson 95 % interval
(computed here by SciPy)."""
from __future__ import annotations

import json
import math
import re

import optuna
import pytest
from scipy.stats import binomtest

from deeprecipe.config import resolve_config
from deeprecipe.recipe.baseline import BASELINE, CORRECT, beats_baseline, choose, configured_values, discordant, paired_p
from deeprecipe.recipe.search import run_search
from deeprecipe.session import Session

SMALL_NET = ["model.widths=[16,32]", "model.convs=1", "train.batch_size=64"]


def _wilson_high(p: float, n: int) -> float:
    return binomtest(round(p * n), n).proportion_ci(0.95, method="wilson").high


def _study(values: list[float], baseline_at: int, correct: list[str] | None = None):
    study = optuna.create_study(direction="maximize")
    for i, v in enumerate(values):
        attrs = {BASELINE: True} if i == baseline_at else {}
        if correct is not None:
            attrs[CORRECT] = correct[i]
        study.add_trial(optuna.trial.create_trial(value=v, user_attrs=attrs))
    return study


@pytest.mark.parametrize("winner,configured,n", [(0.95, 0.85, 20), (0.95, 0.9, 1000), (1.0, 0.95, 20),
                                                 (0.93, 0.9, 300), (0.97, 0.9, 300), (0.9, 0.1, 10)])
def test_beats_baseline_is_above_the_wilson_interval(winner, configured, n):
    assert beats_baseline(winner, configured, n) == (winner > _wilson_high(configured, n))


def _one_sided_mcnemar(b: int, c: int) -> float:
    n = b + c
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2 ** n


@pytest.mark.parametrize("b,c", [(0, 0), (5, 0), (6, 0), (12, 2), (6, 2), (3, 5), (30, 15), (1, 0)])
def test_paired_p_is_the_exact_one_sided_mcnemar_test(b, c):
    assert paired_p(b, c) == pytest.approx(1.0 if b + c == 0 else _one_sided_mcnemar(b, c), rel=1e-9)


def test_discordant_counts_only_the_images_the_two_disagree_on():
    assert discordant("110010", "011000") == (2, 1)  # winner alone right on images 0 and 4, baseline alone on 2
    assert discordant("1111", "1111") == (0, 0)


def _records(n: int, right_both: int, only_best: int, only_base: int) -> tuple[str, str]:
    wrong = n - right_both - only_best - only_base
    best = "1" * right_both + "1" * only_best + "0" * only_base + "0" * wrong
    base = "1" * right_both + "0" * only_best + "1" * only_base + "0" * wrong
    return best, base


def test_choose_adopts_the_winner_when_it_wins_significantly_more_disagreements():
    # 200 images, 0.84 vs 0.80: unpaired, the gap sits inside the configured trial's interval (0.74-0.85) ...
    best, base = _records(200, 155, 13, 5)
    assert not beats_baseline(0.84, 0.80, 200)
    study = _study([0.80, 0.84], baseline_at=0, correct=[base, best])
    trial, note, kept = choose(study, study.trials[1], 200)
    # ... but paired, 13 of 18 disagreements go to the winner: p = 0.048
    assert not kept and trial.number == 1 and "used" in note and "alone was right on 13 and" in note and "alone on 5 (" in note
    # the same accuracies with the disagreements split 23 / 15 (p = 0.128) are not enough
    best, base = _records(200, 145, 23, 15)
    study = _study([0.80, 0.84], baseline_at=0, correct=[base, best])
    trial, note, kept = choose(study, study.trials[1], 200)
    assert kept and trial.number == 0 and "kept the configured settings" in note and "p = 0.128" in note


def test_choose_falls_back_to_the_wilson_interval_without_per_image_records():
    study = _study([0.80, 0.90, 0.85], baseline_at=0)
    best = max(study.trials, key=lambda t: t.value)
    trial, note, kept = choose(study, best, 20)  # 18/20 vs 16/20: inside the interval
    assert kept and trial.user_attrs[BASELINE] and "kept the configured settings" in note and "20 images" in note
    trial, note, kept = choose(study, best, 2000)  # the same gap on 2,000 images is real
    assert not kept and trial.number == best.number and "settings are used" in note
    # a record of the wrong length (another validation split) is not paired either
    wrong_length = _study([0.80, 0.90], baseline_at=0, correct=["1" * 8 + "0" * 2, "1" * 9 + "0"])
    trial, note, kept = choose(wrong_length, wrong_length.trials[1], 20)
    assert kept and "interval" in note
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
    if best["number"] == base["number"]:
        assert not result.kept_configured and result.baseline_note == "the configured settings were the best trial"
        expected = base
    else:  # every trial recorded its images, so the guard's test is the paired one, and the note says its numbers
        b, c = map(int, re.search(r"alone was right on (\d+) and .* alone on (\d+) ", result.baseline_note).groups())
        p = float(re.search(r"paired test p = ([0-9.e-]+)", result.baseline_note).group(1))
        assert p == pytest.approx(_one_sided_mcnemar(b, c), rel=1e-2) and b + c <= len(session.data.splits["val"])
        beaten = best["value"] > base["value"] and _one_sided_mcnemar(b, c) < 0.05
        assert result.kept_configured == (not beaten)
        expected = best if beaten else base
    assert result.best_params["optim.lr"] == pytest.approx(expected["params"]["optim.lr"])
    assert result.best_config.optim.lr == pytest.approx(expected["params"]["optim.lr"])
    assert ("kept the configured settings" in result.baseline_note) == result.kept_configured
