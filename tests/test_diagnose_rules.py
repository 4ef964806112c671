"""The curve diagnosis rule by rule, on hand-made histories (no training; milliseconds each): the interval
arithmetic, each instability check, and each branch of the verdict, with the evidence that names its numbers."""
from __future__ import annotations

import math

import pytest

from deeprecipe.train.diagnose import (ADVICE, AT_LN_C, AUDIT, UNDERFIT_LOSS, _finite, _fmt_interval, _Run, _significant_gain, _skill,
                                       _still_falling, diagnose, wilson)


def _rows(train_loss, train_acc, val_loss=None, val_acc=None, lr=None):
    n = len(train_loss)
    val_loss, val_acc, lr = val_loss or [None] * n, val_acc or [None] * n, lr or [0.1] * n
    return [dict(epoch=i + 1, train_loss=a, train_acc=b, val_loss=c, val_acc=d, lr=e)
            for i, (a, b, c, d, e) in enumerate(zip(train_loss, train_acc, val_loss, val_acc, lr))]


LN10 = math.log(10)


# ------------------------------------------------------------------------------------------ small pieces
def test_wilson_interval_known_values():
    assert wilson(0.0, 10) == (0.0, pytest.approx(0.38416 / 1.38416))
    lo, hi = wilson(1.0, 10)
    assert lo == pytest.approx(1 - 0.38416 / 1.38416) and hi == 1.0
    lo, hi = wilson(0.5, 100)
    assert (lo, hi) == (pytest.approx(0.40383, abs=1e-5), pytest.approx(0.59617, abs=1e-5))
    lo, hi = wilson(0.2, 50, z=1.0)
    centre = (0.2 + 1 / 100) / (1 + 1 / 50)
    half = 1 / (1 + 1 / 50) * math.sqrt(0.2 * 0.8 / 50 + 1 / (4 * 2500))
    assert (lo, hi) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert wilson(0.3, 0) == (0.0, 1.0) and wilson(0.3, -1) == (0.0, 1.0)
    assert wilson(1.0, 5)[1] == 1.0 and wilson(0.0, 10)[0] == 0.0  # rounding would leave [0, 1] here: clamped


def test_interval_text():
    lo, hi = wilson(0.75, 40)
    assert _fmt_interval(0.75, 40) == f"0.750 on 40 images (95% interval {lo:.3f}–{hi:.3f})"


def test_finite_and_skill():
    assert _finite([1.0, None, float("nan"), float("inf"), -2.0]) == [1.0, -2.0]
    assert _skill(0.55, 10) == pytest.approx(0.5) and _skill(0.5, None) == 0.5 and _skill(0.5, 1) == 0.5
    assert _skill(0.75, 2) == pytest.approx(0.5)


def test_still_falling_needs_both_floors():
    ln_c = LN10  # absolute floor: 0.2 × 0.05 × ln 10 ≈ 0.023
    assert _still_falling([1.0, 0.96], ln_c)            # 4 % and 0.04
    assert not _still_falling([1.0, 0.975], ln_c)       # 2.5 %: below 3 %
    assert not _still_falling([0.5, 0.48], ln_c)        # 4 % but 0.02 < 0.023
    assert not _still_falling([1.0, 0.92], ln_c, fast=True) and _still_falling([1.0, 0.89], ln_c, fast=True)
    assert not _still_falling([1.0], ln_c) and not _still_falling([], ln_c)
    assert _still_falling([2.0, 1.5], ln_c) and not _still_falling([1.0, 1.0], ln_c)


def test_run_reads_scale_phase_and_intervals():
    run = _Run(_rows([1, 1, 1], [0.5] * 3, [1, 1, 1], [0.5, 0.6, 0.7], [0.1, 1.0, 0.4]), 4, 100, "cosine")
    assert run.ln_c == pytest.approx(math.log(4)) and run.has_val
    assert run.high_phase == [False, True, False] and not run.constant_lr
    assert run.phase(1) == "in the schedule's high-rate phase" and run.phase(0) == "in the schedule's low-rate phase"
    assert run.interval(1) == wilson(0.6, 100)
    assert run.epoch(2) == 3
    run = _Run([{"train_loss": 1.0, "train_acc": 0.5, "lr": 0.5}, {"train_loss": 1.0, "train_acc": 0.5, "lr": 1.0}],
               None, None, None)
    assert run.ln_c == pytest.approx(LN10) and run.epoch(1) == 2 and not run.has_val
    assert run.high_phase == [True, True] and run.constant_lr and run.phase(0) == "at a constant lr"
    run = _Run(_rows([1.0], [0.5], [1.0], [0.4], [0.2]), 1, None, None)  # one class: ln(10) scale, exact val
    assert run.ln_c == pytest.approx(LN10) and run.interval(0) == (0.4, 0.4)
    no_lr = _Run([{"train_loss": 1.0, "train_acc": 0.5, "lr": None}], 10, None, None)
    assert no_lr.high_phase == [False] and not no_lr.constant_lr
    half = _Run(_rows([1, 1], [0.5] * 2, lr=[0.5, 1.0]), 10, None, None)
    assert half.high_phase == [True, True] and half.constant_lr  # exactly half the peak counts as high
    nan_val = _Run(_rows([1, 1], [0.5] * 2, [1.0, float("nan")], [0.5, 0.5]), 10, 10, None)
    assert not nan_val.has_val
    missing_acc = _Run(_rows([1, 1], [0.5] * 2, [1.0, 1.0], [0.5, None]), 10, 10, None)
    assert not missing_acc.has_val


def test_loss_rise_needs_relative_and_absolute_size():
    run = _Run(_rows([1.0], [0.5]), 10, None, None)  # absolute floor 0.05 × ln 10 ≈ 0.115
    assert run.significant_loss_rise(1.0, 1.35) and not run.significant_loss_rise(1.0, 1.29)
    assert not run.significant_loss_rise(0.067, 0.094)  # +40 % but 0.027
    assert run.significant_loss_rise(1.0, 1.2, rel=0.1) and not run.significant_loss_rise(1.0, 1.2)
    assert not run.significant_loss_rise(0.3, 0.4)  # +33 % but 0.1 < 0.115


def test_gain_beyond_noise_over_the_last_third():
    run = _Run(_rows([1] * 6, [0.5] * 6, [1] * 6, [0.5, 0.5, 0.5, 0.5, 0.6, 0.7]), 10, 400, None)
    gain = _significant_gain(run)  # compares epoch 4 (0.5) with epoch 6 (0.7) on 400 images
    se = math.sqrt((0.25 + 0.21) / 400)
    assert gain == (f"val_acc rose 0.500 → 0.700 from epoch 4 on 400 images (z = {0.2 / se:.1f} > 1.96): "
                    "more epochs still pay")
    assert _significant_gain(_Run(_rows([1] * 6, [0.5] * 6, [1] * 6, [0.5] * 4 + [0.51, 0.52]), 10, 400, None)) == ""
    assert _significant_gain(_Run(_rows([1] * 6, [0.5] * 6, [1] * 6, [0.5] * 4 + [0.6, 0.7]), 10, None, None)) == ""
    assert _significant_gain(_Run(_rows([1], [0.5], [1], [0.5]), 10, 400, None)) == ""
    two = _Run(_rows([1, 1], [0.5] * 2, [1, 1], [0.1, 0.9]), 10, 400, None)
    assert _significant_gain(two).startswith("val_acc rose 0.100 → 0.900 from epoch 1")
    nine = _Run(_rows([1] * 9, [0.5] * 9, [1] * 9, [0.1] * 5 + [0.2, 0.9, 0.9, 0.9]), 10, 400, None)
    assert "from epoch 6 " in _significant_gain(nine)  # a third of 9 epochs back from the last
    same = _Run(_rows([1] * 3, [0.5] * 3, [1] * 3, [1.0, 1.0, 1.0]), 10, 50, None)
    assert _significant_gain(same) == ""  # zero variance: no division by zero, no gain
    # z exactly at the bar is not beyond it
    p1 = 0.5
    n = 100
    p2 = 0.6
    z = (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    run = _Run(_rows([1] * 3, [0.5] * 3, [1] * 3, [0.5, p1, p2]), 10, n, None)
    assert (_significant_gain(run) == "") == (z <= 1.96)


# ------------------------------------------------------------------------------------------ verdicts
def test_no_epochs():
    assert diagnose([], 5, 20, "cosine") == {"verdict": "not converged", "evidence": ["no finished epochs"],
                                             "advice": ["raise train.epochs"],
                                             "context": {"num_classes": 5, "val_images": 20, "schedule": "cosine",
                                                         "label_smoothing": 0.0}}


def test_nan_loss_is_unstable():
    for train, val in (([1.0, float("nan")], [1.0, 1.0]), ([1.0, 0.9], [1.0, float("inf")]), ([1.0, None], [1.0, 1.0])):
        r = diagnose(_rows(train, [0.5, 0.5], val, [0.5, 0.5]), 10, 100, "constant")
        assert r["verdict"] == "unstable" and r["evidence"] == ["the loss became NaN/inf"]
        assert r["advice"] == ADVICE["unstable"]
        assert r["context"] == {"num_classes": 10, "val_images": 100, "schedule": "constant", "label_smoothing": 0.0}


def test_a_loss_above_an_untrained_model_is_a_blowup():
    r = diagnose(_rows([2.0, 3.6, 1.0, 0.5], [0.3, 0.2, 0.7, 0.9]), 10)
    assert r["verdict"] == "unstable"
    assert r["evidence"][0] == f"train_loss reached 3.60, above {1.5 * LN10:.2f} (1.5 × the ln(C) of an untrained model)"
    r = diagnose(_rows([2.0, 3.4, 1.0, 0.5], [0.3, 0.2, 0.7, 0.9], lr=[0.1, 1.0, 0.1, 0.01]), 10)
    assert not any("reached" in e for e in r["evidence"])  # 3.4 < 3.45
    r = diagnose(_rows([2.0, 7.5, 1.0, 0.5], [0.3, 0.2, 0.7, 0.9]))  # unknown class count: the 7.0 bar
    assert r["evidence"][0].startswith("train_loss reached 7.50, above 7.00")
    r = diagnose(_rows([2.0, 6.9, 1.0, 0.5], [0.3, 0.2, 0.7, 0.9], lr=[0.1, 1.0, 0.1, 0.01]))
    assert not any("reached" in e for e in r["evidence"])
    r = diagnose(_rows([2.0, 2.5, 1.0, 0.5], [0.3, 0.2, 0.7, 0.9]), 1)  # one class: also the 7.0 bar
    assert not any("reached" in e for e in r["evidence"])


def test_steps_that_keep_the_loss_above_ln_c_are_unstable():
    train = [2.3, 2.4, 2.5, 2.45]  # above ln 10 = 2.303 (× 1.02 = 2.348) and above epoch 1, never well below
    r = diagnose(_rows(train, [0.1] * 4, lr=[1.0] * 4), 10)
    assert r["verdict"] == "unstable"
    assert r["evidence"][0] == (f"train_loss 2.400 at epoch 2 at a constant lr is above ln(C) = {LN10:.3f}, what an "
                                "untrained model scores: the steps make the model worse")
    r = diagnose(_rows([2.3, 2.34, 2.2, 2.25], [0.1] * 4, lr=[1.0] * 4), 10)  # never beyond 1.02 × ln C
    assert not any("above ln(C)" in e for e in r["evidence"])
    r = diagnose(_rows([2.5, 2.4, 2.35, 2.36], [0.1] * 4, lr=[1.0] * 4), 10)  # above ln C but never above epoch 1
    assert not any("above ln(C)" in e for e in r["evidence"])
    r = diagnose(_rows([2.3, 2.4, 1.0, 2.1], [0.1, 0.1, 0.7, 0.7], lr=[1.0] * 4), 10)  # ends below 0.95 × ln C
    assert not any("above ln(C)" in e for e in r["evidence"])
    r = diagnose(_rows([2.3, 2.4, 1.0, 2.2], [0.1, 0.1, 0.7, 0.3], lr=[1.0] * 4), 10)  # ends above 0.95 × ln C
    assert any("above ln(C)" in e for e in r["evidence"])
    r = diagnose(_rows([2.4, 2.3, 2.2, 2.2], [0.1] * 4, lr=[1.0] * 4), 10)  # only the first epoch is above
    assert not any("above ln(C)" in e for e in r["evidence"])


def test_a_jump_that_never_comes_back_is_unstable():
    r = diagnose(_rows([1.0, 0.6, 1.2, 1.0, 0.9], [0.6, 0.8, 0.6, 0.65, 0.7], lr=[0.1, 0.3, 1.0, 0.3, 0.1]), 10)
    assert r["verdict"] == "unstable"
    assert r["evidence"] == ["train_loss jumped 0.600 → 1.200 at epoch 3 in the schedule's high-rate phase and never "
                             "came back below its earlier level"]


def test_a_jump_the_run_recovers_from_is_a_note():
    train = [1.0, 0.6, 0.9, 0.6, 0.3]  # +0.3 = 13 % of ln 10: recovered, below the severe bar
    r = diagnose(_rows(train, [0.6, 0.8, 0.7, 0.85, 0.95], lr=[0.1, 0.3, 1.0, 0.3, 0.1]), 10)
    assert r["verdict"] != "unstable"
    assert "train_loss jumped 0.600 → 0.900 at epoch 3 in the schedule's high-rate phase, then fell below its " \
           "earlier level (recovered)" in r["evidence"]
    r = diagnose(_rows([1.0, 0.6, 0.9, 0.61, 0.3], [0.6, 0.8, 0.7, 0.85, 0.95]), 10)
    assert any("(recovered)" in e for e in r["evidence"])  # later epochs below: the minimum of what follows counts
    r = diagnose(_rows([1.0, 0.6, 0.9, 0.6], [0.6, 0.8, 0.7, 0.95]), 10)
    assert any("(recovered)" in e for e in r["evidence"])  # back to exactly the earlier level counts


def test_a_severe_recovered_jump_says_the_peak_rate_is_too_high():
    train = [1.5, 0.5, 1.2, 0.4, 0.2]  # +0.7 = 30 % of ln 10 > 25 %
    rows = _rows(train, [0.5, 0.85, 0.6, 0.9, 0.97], lr=[0.2, 0.6, 1.0, 0.4, 0.05])
    r = diagnose(rows, 10)
    assert r["verdict"] == "unstable"
    assert r["evidence"] == [f"train_loss jumped 0.500 → 1.200 at epoch 3 in the schedule's high-rate phase, a rise "
                             f"of {0.7 / LN10:.0%} of ln(C) (> 25%), then recovered: the peak rate is too high"]
    mild = _rows([1.5, 0.5, 1.0, 0.4, 0.2], [0.5, 0.85, 0.6, 0.9, 0.97], lr=[0.2, 0.6, 1.0, 0.4, 0.05])
    assert diagnose(mild, 10)["verdict"] != "unstable"  # +0.5 = 22 %


def test_a_severe_jump_is_kept_as_evidence_when_the_run_overfits():
    train_loss = [2.0, 0.5, 1.2, 0.3, 0.05, 0.02]
    train_acc = [0.3, 0.85, 0.6, 0.92, 0.99, 1.0]
    val_loss = [2.0, 0.8, 1.3, 0.7, 1.0, 1.3]
    val_acc = [0.3, 0.75, 0.6, 0.78, 0.78, 0.78]
    r = diagnose(_rows(train_loss, train_acc, val_loss, val_acc), 10, 5000)
    assert r["verdict"] == "overfitting"
    assert r["evidence"][-1].startswith("train_loss jumped 0.500 → 1.200 at epoch 3 at a constant lr, a rise of")


def test_a_real_fall_in_val_accuracy_that_stays_is_unstable():
    train_loss = [1.0, 0.5, 0.6, 0.6, 0.55]  # not falling while val accuracy falls
    r = diagnose(_rows(train_loss, [0.7, 0.85, 0.8, 0.8, 0.8], train_loss, [0.7, 0.85, 0.6, 0.6, 0.62]), 10, 1000)
    assert r["verdict"] == "unstable"
    lo, hi = wilson(0.6, 1000)
    assert r["evidence"] == [f"val_acc fell from 0.850 (epoch 2) to 0.600 on 1000 images (95% interval "
                             f"{lo:.3f}–{hi:.3f}) at epoch 3 at a constant lr; it ended at 0.620, still below"]


def test_a_fall_in_val_accuracy_the_run_recovers_from_is_a_note():
    train_loss = [1.0, 0.5, 0.6, 0.3, 0.25]
    r = diagnose(_rows(train_loss, [0.7, 0.85, 0.8, 0.9, 0.92], train_loss, [0.7, 0.85, 0.6, 0.88, 0.9]), 10, 1000)
    assert r["verdict"] != "unstable"
    assert any(e.startswith("val_acc fell from 0.850 (epoch 2) to 0.600") and e.endswith(", and recovered")
               for e in r["evidence"])
    # the same fall while the model fits its training images better than it ever generalised is memorising,
    # not instability: no note
    train_loss = [1.0, 0.5, 0.4, 0.3, 0.25]
    r = diagnose(_rows(train_loss, [0.7, 0.85, 0.95, 0.9, 0.92], train_loss, [0.7, 0.85, 0.6, 0.88, 0.9]), 10, 1000)
    assert not any("val_acc fell" in e for e in r["evidence"])
    # overlapping intervals on 20 images: noise, no note
    train_loss = [1.0, 0.5, 0.6, 0.3, 0.25]
    r = diagnose(_rows(train_loss, [0.7, 0.85, 0.8, 0.9, 0.92], train_loss, [0.7, 0.85, 0.6, 0.88, 0.9]), 10, 20)
    assert not any("val_acc fell" in e for e in r["evidence"])
    # without a val size the intervals are points: no note either way (the check needs the size)
    r = diagnose(_rows(train_loss, [0.7, 0.85, 0.8, 0.9, 0.92], train_loss, [0.7, 0.85, 0.6, 0.88, 0.9]), 10)
    assert not any("val_acc fell" in e for e in r["evidence"])


def test_underfitting_and_too_short_to_tell():
    rows = _rows([2.2, 2.0, 1.9, 1.89], [0.2, 0.3, 0.35, 0.36], [2.2, 2.0, 1.9, 1.9], [0.2, 0.3, 0.35, 0.35])
    r = diagnose(rows, 10, 1000)
    assert r["verdict"] == "underfitting" and r["advice"] == ADVICE["underfitting"]
    skill = (0.36 - 0.1) / 0.9
    assert f"best final accuracy 0.360 is {skill:.0%} of the way from chance to 100% (< 60%): the model does not " \
           "fit its training data" in r["evidence"]
    assert f"final train_loss 1.890 is {1.89 / LN10:.0%} of ln(C) (> 40%): the model is far from fitting its " \
           "training data" in r["evidence"]
    assert r["evidence"][0] == "final train_loss 1.8900, train_acc 0.3600"
    assert r["evidence"][1] == "final val_loss 1.9000, val_acc " + _fmt_interval(0.35, 1000)
    short = diagnose(rows[:2], 10, 1000)
    assert short["verdict"] == "not converged"
    assert short["evidence"][-1] == "only 2 epoch(s): too short to tell a model too small from a run cut short"
    falling = _rows([2.2, 2.0, 1.9, 1.6], [0.2, 0.3, 0.35, 0.45], [2.2, 2.0, 1.9, 1.6], [0.2, 0.3, 0.35, 0.45])
    r = diagnose(falling, 10, 1000)
    assert r["verdict"] == "not converged"
    assert r["evidence"][-1] == ("train_loss still falling fast: 1.9000 → 1.6000 in the last epoch; this run stopped "
                                 "in the middle of learning")


def test_a_loose_fit_with_good_accuracy_is_still_underfitting():
    # skill 78 % but the final loss is 52 % of ln(C): not a fitted model
    rows = _rows([1.4, 1.3, 1.25, 1.2], [0.7, 0.75, 0.78, 0.8], [1.4, 1.3, 1.25, 1.2], [0.7, 0.75, 0.78, 0.8])
    r = diagnose(rows, 10)
    assert r["verdict"] == "underfitting"
    assert not any("of the way from chance" in e for e in r["evidence"]) and any("of ln(C)" in e for e in r["evidence"])
    fit = _rows([1.4, 1.3, 1.25, 1.2], [0.9, 0.92, 0.93, 0.95], [1.4, 1.3, 1.25, 1.2], [0.9, 0.92, 0.93, 0.95])
    assert diagnose(fit, 10)["verdict"] != "underfitting"  # skill 94 %: a calibrated but accurate model
    edge = _rows([0.5, 0.4, 0.38, 0.37], [0.5, 0.6, 0.63, 0.64], lr=[0.1] * 4)  # skill exactly 60 %
    assert diagnose(edge, 10)["verdict"] != "underfitting"


def test_without_validation():
    flat = _rows([0.5, 0.2, 0.1, 0.1], [0.8, 0.95, 0.98, 0.98])
    r = diagnose(flat, 10)
    assert r["verdict"] == "healthy" and r["evidence"][-1] == "no validation split: generalisation not checked"
    assert r["evidence"][0] == "final train_loss 0.1000, train_acc 0.9800" and len(r["evidence"]) == 2
    falling = _rows([0.5, 0.3, 0.2, 0.15], [0.8, 0.95, 0.98, 0.98])
    r = diagnose(falling, 10)
    assert r["verdict"] == "not converged"
    assert r["evidence"][-1] == "train_loss still falling 0.2000 → 0.1500 in the last epoch"


def _overfit(train_acc_at_best=0.95, n_val=2000):
    train_loss = [1.0, 0.3, 0.1, 0.02, 0.01]
    train_acc = [0.7, train_acc_at_best, 0.97, 0.995, 1.0]
    val_loss = [1.0, 0.5, 0.6, 0.8, 1.0]
    val_acc = [0.7, 0.85, 0.85, 0.85, 0.85]
    return _rows(train_loss, train_acc, val_loss, val_acc)


def test_overfitting_names_the_gap_the_turn_and_the_ratio():
    r = diagnose(_overfit(), 10, 2000)
    assert r["verdict"] == "overfitting" and r["advice"] == ADVICE["overfitting"]
    hi = wilson(0.85, 2000)[1]
    assert f"train/val accuracy gap: train_acc 1.000 is {1 - hi:.3f} above the upper end of val_acc's interval" \
        in r["evidence"]
    assert "val_loss rose 100% from its minimum 0.5000 at epoch 2" in r["evidence"]
    assert r["evidence"][-1] == "val_loss / train_loss = 100.0"


def test_overfitting_from_early_memorising_asks_for_a_label_audit():
    r = diagnose(_overfit(train_acc_at_best=0.8), 10, 2000)  # skill 78 % at the best epoch
    assert r["verdict"] == "overfitting" and r["advice"] == [AUDIT] + ADVICE["overfitting"]
    assert r["evidence"][-1] == ("when val_loss was lowest (epoch 2) train_acc was only 0.800 (val_acc 0.850): what "
                                 "was gained since was memorised, not learnt — tiny data, or wrong labels")
    assert diagnose(_overfit(train_acc_at_best=0.83), 10, 2000)["advice"][0] != AUDIT  # skill 81 %


def test_a_gap_without_a_turn_or_a_loss_ratio_is_not_overfitting():
    # val loss never turned and val/train = 1.5: the gap alone is not overfitting
    rows = _rows([1.0, 0.5, 0.3, 0.2], [0.7, 0.9, 0.97, 0.99], [1.0, 0.5, 0.31, 0.3], [0.7, 0.85, 0.9, 0.9])
    assert diagnose(rows, 10, 5000)["verdict"] != "overfitting"
    # the same with val/train = 2: overfitting by the ratio alone
    rows = _rows([1.0, 0.5, 0.3, 0.15], [0.7, 0.9, 0.97, 0.99], [1.0, 0.5, 0.31, 0.3], [0.7, 0.85, 0.9, 0.9])
    r = diagnose(rows, 10, 5000)
    assert r["verdict"] == "overfitting" and not any("rose" in e for e in r["evidence"])
    # a turn too small in absolute terms (0.1 → 0.12: +20 % but 0.02) is no turn
    rows = _rows([1.0, 0.3, 0.1, 0.09], [0.7, 0.9, 0.97, 0.995], [1.0, 0.3, 0.1, 0.12], [0.7, 0.9, 0.95, 0.95])
    assert not any("val_loss rose" in e for e in diagnose(rows, 10, 5000)["evidence"])


def test_a_gap_inside_a_wide_interval_is_not_overfitting():
    rows = _rows([1.0, 0.3, 0.1, 0.02], [0.7, 0.9, 0.97, 1.0], [1.0, 0.5, 0.7, 0.9], [0.6, 0.7, 0.7, 0.7])
    r = diagnose(rows, 10, 10)  # 7 of 10: the interval spans about 0.40–0.89
    assert r["verdict"] == "too little validation data"
    lo, hi = wilson(0.7, 10)
    assert r["evidence"][-1] == (f"the val_acc interval is {hi - lo:.2f} wide: 10 images cannot tell {lo:.0%} from "
                                 f"{hi:.0%}, so generalisation is not established")
    assert r["advice"] == ADVICE["too little validation data"]
    assert diagnose(rows, 10, 1000)["verdict"] == "overfitting"


def test_a_still_falling_validation_loss_is_not_converged():
    rows = _rows([1.0, 0.6, 0.45, 0.35], [0.7, 0.82, 0.87, 0.9], [1.0, 0.6, 0.48, 0.4], [0.7, 0.82, 0.86, 0.88])
    r = diagnose(rows, 10, 1000)
    assert r["verdict"] == "not converged" and r["advice"] == ADVICE["not converged"]
    assert "val_loss still falling 0.4800 → 0.4000 in the last epoch" in r["evidence"]
    # a slower fall counts only with a significant accuracy gain
    slow = _rows([1.0, 0.6, 0.45, 0.42, 0.4, 0.38], [0.7, 0.82, 0.87, 0.88, 0.885, 0.89],
                 [1.0, 0.6, 0.5, 0.48, 0.45, 0.42], [0.6, 0.7, 0.75, 0.8, 0.85, 0.88])
    r = diagnose(slow, 10, 2000)
    assert r["verdict"] == "not converged" and any("more epochs still pay" in e for e in r["evidence"])
    flat_acc = _rows([1.0, 0.6, 0.45, 0.42, 0.4, 0.38], [0.7, 0.82, 0.87, 0.88, 0.885, 0.89],
                     [1.0, 0.6, 0.5, 0.48, 0.45, 0.42], [0.6, 0.7, 0.88, 0.88, 0.88, 0.88])
    assert diagnose(flat_acc, 10, 2000)["verdict"] == "healthy"
    # a fitted model (train_acc ≥ 0.995) is not "still learning" however its val loss moves
    done = _rows([1.0, 0.3, 0.1, 0.05], [0.7, 0.95, 0.99, 0.996], [1.0, 0.6, 0.48, 0.4], [0.7, 0.9, 0.95, 0.99])
    assert diagnose(done, 10, 1000)["verdict"] != "not converged"
    # a bounce back from a bad epoch is not a trend: the last epoch must be the lowest
    bounce = _rows([1.0, 0.6, 0.45, 0.35], [0.7, 0.82, 0.87, 0.9], [1.0, 0.4, 0.6, 0.45], [0.7, 0.86, 0.84, 0.87])
    assert diagnose(bounce, 10, 1000)["verdict"] != "not converged"


def test_healthy_run():
    rows = _rows([1.0, 0.5, 0.3, 0.29], [0.7, 0.85, 0.91, 0.915], [0.9, 0.5, 0.32, 0.315], [0.72, 0.85, 0.9, 0.905])
    r = diagnose(rows, 10, 1000, "cosine")
    assert r["verdict"] == "healthy" and r["advice"] == ADVICE["healthy"]
    hi = wilson(0.905, 1000)[1]
    assert r["evidence"][-1] == (f"train_acc 0.915 within the val interval's reach (gap to its upper end "
                                 f"{0.915 - hi:+.3f}); val_loss within 0% of its minimum")
    assert r["context"] == {"num_classes": 10, "val_images": 1000, "schedule": "cosine", "label_smoothing": 0.0}
    exact = diagnose(rows, 10)  # no val size: the numbers are taken as exact
    assert exact["evidence"][1] == "final val_loss 0.3150, val_acc 0.9050"


def test_label_smoothing_moves_the_training_loss_floor():
    from deeprecipe.train.losses import smoothed_loss_floor
    floor = smoothed_loss_floor(0.1, 10)
    rows = _rows([1.0 + floor, 0.5 + floor, 0.3 + floor, 0.29 + floor], [0.7, 0.85, 0.91, 0.915],
                 [0.9, 0.5, 0.32, 0.315], [0.72, 0.85, 0.9, 0.905])
    r = diagnose(rows, 10, 1000, "cosine", label_smoothing=0.1)
    plain = diagnose(_rows([1.0, 0.5, 0.3, 0.29], [0.7, 0.85, 0.91, 0.915], [0.9, 0.5, 0.32, 0.315],
                           [0.72, 0.85, 0.9, 0.905]), 10, 1000, "cosine")
    assert r["verdict"] == plain["verdict"] == "healthy"
    assert r["evidence"][0] == f"final train_loss {0.29 + floor:.4f}, train_acc 0.9150"
    assert r["evidence"][1] == (f"label smoothing 0.1 puts the training loss's floor at {floor:.3f}; the rules read "
                                "the 0.2900 above it")
    assert r["context"]["label_smoothing"] == 0.1 and diagnose([], label_smoothing=0.1)["context"]["label_smoothing"] == 0.1
    assert not any("label smoothing" in e for e in plain["evidence"])


# ------------------------------------------------------------------------------------------ exact boundaries
def test_boundaries_are_where_the_docstrings_put_them():
    """Each bar at its exact value, and the pieces that only show in the evidence's text."""
    # one image already gives a real interval (only n <= 0 means "no information")
    centre, half = (1 + 1.96 ** 2 / 2) / (1 + 1.96 ** 2), 1.96 / (1 + 1.96 ** 2) * math.sqrt(1.96 ** 2 / 4)
    assert wilson(1.0, 1) == (pytest.approx(centre - half), 1.0) and wilson(1.0, 1)[0] > 0.2
    # a fall exactly at the absolute floor is not "more than" it
    floor = 0.2 * 0.05 * LN10
    assert not _still_falling([floor, 0.0], LN10) and _still_falling([floor * 1.01, 0.0], LN10)
    # z exactly 1.96 (found by search: these floats hit it to the last bit) is not beyond the bar
    p1, p2, n = 0.5, 0.6360051607035592, 100
    assert (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n) == 1.96
    assert _significant_gain(_Run(_rows([1] * 3, [0.5] * 3, [1] * 3, [0.5, p1, p2]), 10, n, None)) == ""
    # three epochs: the last third is one epoch back; the epoch quoted is the row's own (a resumed run's numbering)
    rows = _rows([1] * 3, [0.5] * 3, [1] * 3, [0.1, 0.5, 0.9])
    for i, row in enumerate(rows):
        row["epoch"] = 11 + i
    assert _significant_gain(_Run(rows, 10, 400, None)).startswith("val_acc rose 0.500 → 0.900 from epoch 12 on")
    assert _Run(rows, 10, 400, None).epoch(0) == 11


def test_underfitting_bars_and_what_the_verdict_quotes():
    ctx = {"num_classes": None, "val_images": None, "schedule": None, "label_smoothing": 0.0}
    # the best final accuracy is the higher of train and val: a high val_acc is fit enough
    fit_on_val = diagnose(_rows([0.3] * 4, [0.3] * 4, [0.3] * 4, [0.95] * 4))
    assert fit_on_val["verdict"] != "underfitting" and "best final accuracy" not in str(fit_on_val["evidence"])
    assert diagnose(_rows([0.3] * 4, [0.3] * 4))["verdict"] == "underfitting"  # no val: train accuracy alone
    # skill exactly 0.9 (no class count: chance 0) is not "loose" however high the loss
    assert diagnose(_rows([1.5] * 4, [0.9] * 4))["verdict"] == "healthy"
    # a loss exactly at 40 % of ln 10 is not above it
    assert diagnose(_rows([0.4 * LN10] * 4, [0.8] * 4))["verdict"] == "healthy"
    # skill exactly 0.6 is not below the bar: only the loss makes this run underfit
    at_bar = diagnose(_rows([1.5] * 4, [0.6] * 4))
    assert at_bar["verdict"] == "underfitting" and not any("best final accuracy" in e for e in at_bar["evidence"])
    # three flat epochs are enough to call underfitting; two are not
    assert diagnose(_rows([2.0] * 3, [0.2] * 3))["verdict"] == "underfitting"
    short = diagnose(_rows([2.0] * 2, [0.2] * 2))
    assert short["verdict"] == "not converged" and short["context"] == ctx
    # still falling fast: the evidence quotes the last two losses, and the run's context is kept
    falling = diagnose(_rows([2.3, 2.25, 2.2, 2.1, 1.5], [0.2] * 5))
    assert falling["verdict"] == "not converged" and falling["context"] == ctx
    assert any(e.startswith("train_loss still falling fast: 2.1000 → 1.5000") for e in falling["evidence"])
    no_val_falling = diagnose(_rows([0.5, 0.4], [0.95] * 2))
    assert no_val_falling["verdict"] == "not converged" and no_val_falling["context"] == ctx


def test_each_verdict_keeps_the_context_and_quotes_the_last_two_losses():
    ctx = {"num_classes": None, "val_images": None, "schedule": None, "label_smoothing": 0.0}
    assert diagnose(_rows([2.0] * 3, [0.2] * 3)) == {**diagnose(_rows([2.0] * 3, [0.2] * 3)), "context": ctx}
    healthy = diagnose(_rows([0.3] * 4, [0.95] * 4))
    assert healthy["verdict"] == "healthy" and healthy["context"] == ctx
    falling = diagnose(_rows([0.5, 0.45, 0.4, 0.3, 0.2], [0.95] * 5))  # no val split, still falling
    assert falling["evidence"][-1] == "train_loss still falling 0.3000 → 0.2000 in the last epoch"


def _gap_run(val_loss, train_loss=(1.0, 0.6, 0.5, 0.45), train_acc=(0.7, 0.9, 0.97, 0.99), val_acc=0.9):
    """Four epochs with a train/val accuracy gap (0.09 with exact val numbers): whether it is overfitting
    depends on the val_loss turn or on the val/train loss ratio alone."""
    return _rows(list(train_loss), list(train_acc), list(val_loss), [0.7, 0.85] + [val_acc] * 2)


def test_the_turn_of_the_validation_loss_exactly():
    floor = 0.05 * LN10  # an absolute rise must pass 5 % of ln(C)
    assert diagnose(_gap_run([1.0, 0.5, 0.5, 0.7]))["verdict"] == "overfitting"  # +0.2 from the (first) minimum
    assert diagnose(_gap_run([1.0, 0.5, 0.55, 0.6]))["verdict"] != "overfitting"  # +20 % but only 0.1
    assert diagnose(_gap_run([1.0, 0.0, 0.05, floor]))["verdict"] != "overfitting"  # exactly the floor: no turn
    assert diagnose(_gap_run([1.0, 0.0, 0.05, floor * 1.01]))["verdict"] == "overfitting"
    # no turn, val/train exactly 1.8: not beyond the ratio
    assert 0.9 / 0.5 == 1.8
    assert diagnose(_gap_run([1.0, 0.95, 0.92, 0.9], train_loss=(1.0, 0.7, 0.6, 0.5)))["verdict"] != "overfitting"
    assert diagnose(_gap_run([1.0, 0.95, 0.92, 0.91], train_loss=(1.0, 0.7, 0.6, 0.5)))["verdict"] == "overfitting"


def test_the_width_of_the_validation_interval_exactly():
    p = 0.5931937144474124  # found by search: on 89 images its interval is 0.2 wide to the last bit
    lo, hi = wilson(p, 89)
    assert hi - lo == 0.2
    rows = _rows([0.5, 0.4, 0.35, 0.3], [0.7] * 4, [0.5] * 4, [p] * 4)
    assert diagnose(rows, None, 89)["verdict"] == "healthy"  # not wider than 0.2
    assert diagnose(rows, None, 88)["verdict"] == "too little validation data"


def test_a_gap_is_weighed_against_half_the_interval_only_when_the_interval_is_wide():
    overfit = dict(train_loss=(1.0, 0.3, 0.1, 0.05))
    val_loss = [1.0, 0.5, 0.7, 0.9]
    # 200 images: the interval (≈ 0.10 wide) is narrow, so a gap of 0.037 (< half of it) still counts
    rows = _gap_run(val_loss, train_acc=(0.7, 0.9, 0.92, 0.93), val_acc=0.85, **overfit)
    assert wilson(0.85, 200)[1] - wilson(0.85, 200)[0] < 0.2 and diagnose(rows, None, 200)["verdict"] == "overfitting"
    # 10 images at 0.3: an interval 0.49 wide; a gap must reach half of it (0.2475)
    lo, hi = wilson(0.3, 10)
    verdicts = [diagnose(_gap_run(val_loss, train_acc=(0.7, 0.9, 0.9, hi + gap), val_acc=0.3, **overfit), None, 10)
                ["verdict"] for gap in (0.2, 0.3)]
    assert verdicts == ["too little validation data", "overfitting"]
    # exactly half the interval counts (found by search: 0.8561538839240573 − hi is (hi − lo) / 2 to the last bit)
    lo, hi = wilson(0.305, 10)
    assert 0.8561538839240573 - hi == (hi - lo) / 2
    rows = _gap_run(val_loss, train_acc=(0.7, 0.9, 0.9, 0.8561538839240573), val_acc=0.305, **overfit)
    assert diagnose(rows, None, 10)["verdict"] == "overfitting"


def test_memorising_is_judged_below_a_skill_of_exactly_0_8():
    # no class count: chance 0, skill = accuracy; 0.8 at the best epoch is not below the bar
    assert diagnose(_overfit(train_acc_at_best=0.8), None, 2000)["advice"][0] != AUDIT
    assert diagnose(_overfit(train_acc_at_best=0.79), None, 2000)["advice"][0] == AUDIT


# ------------------------------------------------------------------------------------------ rules chosen on seeds 0-4
def test_a_first_epoch_above_the_blowup_bar_counts_only_when_the_run_never_fitted():
    # Epoch 1's mean starts from the initialisation's loss: a wide net on raw pixels starts far above ln C.
    r = diagnose(_rows([3.5, 1.0, 0.5, 0.3], [0.3, 0.7, 0.9, 0.95]), 10)
    assert not any("reached" in e for e in r["evidence"]) and r["verdict"] != "unstable"
    assert (f"train_loss averaged 3.50 in epoch 1, above {1.5 * LN10:.2f}, from the initialisation's start; the run "
            "then fitted its training data (final 0.300)") in r["evidence"]
    # never fitted: a final loss of exactly 40 % of ln C is not below the bar
    stuck = 0.4 * LN10
    assert UNDERFIT_LOSS == 0.4
    r = diagnose(_rows([3.5, 2.0, 1.5, stuck], [0.3, 0.4, 0.5, 0.5]), 10)
    assert r["verdict"] == "unstable"
    assert r["evidence"][0] == f"train_loss reached 3.50, above {1.5 * LN10:.2f} (1.5 × the ln(C) of an untrained model)"
    r = diagnose(_rows([3.5, 2.0, 1.5, stuck * 0.999], [0.3, 0.4, 0.5, 0.5]), 10)
    assert not any("reached" in e for e in r["evidence"]) and any("averaged 3.50" in e for e in r["evidence"])
    r = diagnose(_rows([3.4, 2.0, 1.5, 1.2], [0.3, 0.4, 0.5, 0.5]), 10)  # 3.4 < 3.45: neither
    assert not any("reached" in e or "averaged" in e for e in r["evidence"])


def _chance_rows(train_loss, val_acc):
    n = len(train_loss)
    return _rows(train_loss, [0.1] * n, [2.3] * n, val_acc)


def _at_chance(raw, val_acc=None, classes=10, n_val=1000):
    """Diagnosis with label smoothing 0.1: the older above-ln(C) check reads the loss above the floor and stays out."""
    return diagnose(_chance_rows(raw, val_acc or [0.1] * len(raw)), classes, n_val, label_smoothing=0.1)


def test_a_run_thrown_back_to_chance_is_unstable_not_underfitting():
    raw = [2.2, 2.4, 2.31, 2.31]  # rose above ln C in epoch 2, then predicting uniform, at chance on 1,000 images
    r = _at_chance(raw)
    assert r["verdict"] == "unstable"
    assert r["evidence"] == [
        f"val_acc ended at {_fmt_interval(0.1, 1000)}, which holds chance (1/10), and train_loss at 2.310 against "
        f"ln(C) = {LN10:.3f}: the model predicts no better than uniform, after train_loss rose to 2.400 at epoch 2 "
        "at a constant lr, above what an untrained model scores: steps too large threw the model off"]
    # learnt something first: quoted with its interval
    r = _at_chance(raw, [0.3, 0.1, 0.1, 0.1])
    assert r["evidence"][0].endswith(f"; it had reached {_fmt_interval(0.3, 1000)} at epoch 1, above chance: steps "
                                     "too large threw the model off")
    # the loss is read raw: label smoothing does not lift what a uniform prediction scores, nor does its absence
    assert diagnose(_chance_rows(raw, [0.1] * 4), 10, 1000)["verdict"] == "unstable"


def test_back_at_chance_bars_exactly():
    at_bar = 0.98 * LN10
    assert AT_LN_C == 0.98
    assert _at_chance([2.2, 2.4, 2.31, at_bar])["verdict"] == "unstable"
    assert _at_chance([2.2, 2.4, 2.31, at_bar * 0.999])["verdict"] == "underfitting"  # learns a little, no more
    # an epoch after the first whose loss rose beyond 1.02 × ln C
    assert _at_chance([2.2, LN10 * 1.02, 2.3, 2.3])["verdict"] == "underfitting"
    assert _at_chance([2.2, LN10 * 1.021, 2.3, 2.3])["verdict"] == "unstable"
    # falling towards ln C from an initialisation above it is a model learning slowly (a real width-2 convnet's
    # curve on 100 validation images), and so is epoch 1 alone above it
    assert _at_chance([2.391, 2.352, 2.337], n_val=100)["verdict"] == "underfitting"
    assert _at_chance([2.5, 2.4, 2.4, 2.31])["verdict"] == "underfitting"
    assert _at_chance([2.5, 2.4, 2.41, 2.31])["verdict"] == "unstable"
    # not at chance: 0.2 on 1,000 images excludes 0.1
    assert not any("holds chance" in e for e in _at_chance([2.2, 2.4, 2.31, 2.31], [0.1, 0.1, 0.1, 0.2])["evidence"])
    # too short (three epochs are enough), or nothing to judge chance with
    assert _at_chance([2.2, 2.4])["verdict"] != "unstable"
    assert _at_chance([2.2, 2.4, 2.31])["verdict"] == "unstable"
    assert _at_chance([2.2, 2.4, 2.31, 2.31], n_val=None)["verdict"] != "unstable"
    assert _at_chance([2.2, 2.4, 2.31, 2.31], classes=None)["verdict"] != "unstable"
    run = _Run(_chance_rows([3.0] * 3, [0.1, 0.115, 0.12]), 10, 1000, None)
    lo = wilson(0.115, 1000)[0]
    assert lo < 0.1 < wilson(0.12, 1000)[0] and run.at_chance(0) and run.at_chance(1) and not run.at_chance(2)
    assert not _Run(_chance_rows([3.0] * 3, [0.1] * 3), None, 1000, None).at_chance(0)


def test_a_fall_in_val_accuracy_is_memorising_only_above_the_best_interval():
    hi = wilson(0.85, 1000)[1]
    train_loss = [1.0, 0.5, 0.4, 0.3, 0.25]
    for train_acc_then, counted in ((hi, True), (hi + 0.001, False)):
        rows = _rows(train_loss, [0.7, 0.85, train_acc_then, 0.9, 0.92], train_loss, [0.7, 0.85, 0.6, 0.88, 0.9])
        assert any("val_acc fell" in e for e in diagnose(rows, 10, 1000)["evidence"]) == counted
    # above the interval but with the train loss thrown up by > 10 % and > 5 % of ln C: the steps, not memorising
    for rise, counted in ((0.3 + 0.12, True), (0.3 + 0.11, False)):
        loss = [1.0, 0.3, rise, 0.2, 0.15]
        rows = _rows(loss, [0.7, 0.85, 0.95, 0.9, 0.92], loss, [0.7, 0.85, 0.6, 0.88, 0.9])
        assert any("val_acc fell" in e for e in diagnose(rows, 10, 1000)["evidence"]) == counted


def test_a_train_loss_thrown_back_again_and_again_is_unstable():
    train = [2.3, 0.8, 1.0, 0.6, 0.8, 0.3]  # +25 % / +0.2 and +33 % / +0.2, each recovered
    r = diagnose(_rows(train, [0.3, 0.8, 0.7, 0.85, 0.8, 0.95]), 10)
    assert r["verdict"] == "unstable"
    assert r["evidence"][0] == ("train_loss rose in 2 epochs (by > 10% and > 5% of ln(C) each): 0.800 → 1.000 at epoch "
                                "3 at a constant lr, 0.600 → 0.800 at epoch 5 at a constant lr; the steps keep "
                                "throwing the model back")
    once = diagnose(_rows([2.3, 0.8, 1.0, 0.6, 0.5, 0.3], [0.3, 0.8, 0.7, 0.85, 0.9, 0.95]), 10)
    assert once["verdict"] != "unstable" and not any("rose in" in e for e in once["evidence"])
    # exactly +10 % (2.0 → 2.2) is not more than 10 %; exactly 5 % of ln C from 0 is not more than that
    edge = 0.05 * LN10
    for train, rises in (([2.3, 2.0, 2.2, 1.5, 1.8, 1.0], 1), ([2.3, 2.0, 2.21, 1.5, 1.8, 1.0], 2),
                         ([1.0, 0.0, edge, 0.0, edge, 0.0], 0), ([1.0, 0.0, edge * 1.001, 0.0, edge * 1.001, 0.0], 2)):
        r = diagnose(_rows(train, [0.3, 0.8, 0.7, 0.85, 0.8, 0.95]), 10)
        assert any("rose in" in e for e in r["evidence"]) == (rises >= 2), train


def test_repeated_rises_yield_to_overfitting_and_to_harder_evidence():
    train_loss = [2.0, 0.5, 0.7, 0.3, 0.5, 0.05, 0.02]  # two rises of 0.2
    train_acc = [0.3, 0.85, 0.8, 0.92, 0.9, 0.99, 1.0]
    val_loss = [2.0, 0.8, 0.9, 0.7, 0.9, 1.0, 1.3]
    val_acc = [0.3, 0.75, 0.74, 0.78, 0.77, 0.78, 0.78]
    r = diagnose(_rows(train_loss, train_acc, val_loss, val_acc), 10, 5000)
    assert r["verdict"] == "overfitting"
    assert r["evidence"][-1].startswith("train_loss rose in 2 epochs")
    # a severe recovered jump is the evidence then; the rises are not added to it
    r = diagnose(_rows([1.5, 0.5, 1.2, 0.4, 0.6, 0.2], [0.5, 0.85, 0.6, 0.9, 0.88, 0.97]), 10)
    assert r["verdict"] == "unstable" and not any("rose in" in e for e in r["evidence"])


# ------------------------------------------------------------------------------------------ rules chosen on seeds 0-7
def _memorised(val_loss, train_acc_end=1.0):
    n = len(val_loss)
    train_loss = [1.0 * 0.5 ** i for i in range(n)]
    train_acc = [min(train_acc_end, 0.8 + 0.05 * i) for i in range(n)]
    return _rows(train_loss, train_acc, val_loss, [0.985] * n)


def test_a_memorised_training_set_with_a_val_loss_that_stays_up_is_overfitting():
    # 175 images at 98.5 %: no accuracy gap beyond the interval; the val loss bottomed at epoch 3 and stayed up.
    up = [0.5, 0.3, 0.2, 0.21, 0.22, 0.23, 0.24, 0.25, 0.25, 0.26, 0.27, 0.27]
    r = diagnose(_memorised(up), 10, 175)
    assert r["verdict"] == "overfitting", r
    assert r["evidence"][-1] == ("val_loss bottomed at 0.2000 (epoch 3) and stayed 30%+ above it over the last 3 epochs "
                                 "(now 0.2700) while train_acc reached 1.000: the model memorises its training images; "
                                 "early stopping would keep epoch 3")
    # the same curves with one epoch of the last quarter back within 10 % of the minimum: no lasting turn
    assert diagnose(_memorised(up[:-2] + [0.215, 0.27]), 10, 175)["verdict"] != "overfitting"
    # a training set not memorised (99 %), or a minimum in the second half, or a run under 8 epochs: not this rule
    assert diagnose(_memorised(up, train_acc_end=0.99), 10, 175)["verdict"] != "overfitting"
    late = [0.5, 0.4, 0.35, 0.3, 0.28, 0.26, 0.25, 0.2, 0.23, 0.23, 0.24, 0.24]
    assert diagnose(_memorised(late), 10, 175)["verdict"] != "overfitting"
    assert diagnose(_memorised(up[:7]), 10, 175)["verdict"] != "overfitting"


def test_without_a_turn_a_gap_must_be_material():
    # val_loss 2 × the training loss, train_acc 0.975 against 0.919 on 160 images: beyond the interval, 5.6 points
    n = 6
    rows = _rows([1.0, 0.5, 0.3, 0.2, 0.17, 0.16], [0.7, 0.9, 0.95, 0.97, 0.975, 0.975],
                 [0.9, 0.45, 0.35, 0.33, 0.325, 0.32], [0.7, 0.85, 0.9, 0.91, 0.919, 0.919], [0.1] * n)
    assert wilson(0.919, 160)[1] < 0.975 - 0.02
    assert diagnose(rows, 10, 160)["verdict"] != "overfitting"
    # 8.5 points apart is material
    rows[-1]["val_acc"] = 0.89
    assert diagnose(rows, 10, 160)["verdict"] == "overfitting"


def test_a_loss_thrown_above_ln_c_in_epoch_1_then_a_stalled_run_is_a_rate_too_high():
    stalled = [0.4, 0.6, 0.7, 0.75, 0.78, 0.8]
    r = diagnose(_rows([3.0, 1.2, 1.0, 0.95, 0.9, 0.88], stalled), 10)
    assert r["verdict"] == "unstable", r
    assert r["evidence"][0].startswith(f"epoch 1's mean train_loss 3.000 is above ln(C) = {LN10:.3f}")
    assert "set optim.lr lower" in r["advice"][0]
    # a slow start (epoch 2 above two thirds of epoch 1) is a rate too low or a model too small
    assert diagnose(_rows([2.4, 2.0, 1.5, 1.2, 1.1, 1.05], stalled), 10)["verdict"] != "unstable"
    # epoch 1 at ln C or below, or a run that fitted its training data (skill 0.9: 0.91 for 10 classes): not this rule
    assert diagnose(_rows([2.3, 1.2, 1.0, 0.95, 0.9, 0.88], stalled), 10)["verdict"] != "unstable"
    fitted = diagnose(_rows([3.0, 1.2, 1.0, 0.95, 0.9, 0.3], stalled[:-1] + [0.91]), 10)
    assert not any("epoch 1's mean" in e for e in fitted["evidence"])


def test_a_bounce_back_to_an_earlier_low_is_not_still_falling():
    # A constant-rate run: val loss 0.169 at epoch 3, thrown up, back to 0.166 (-35 % on the epoch before, -2 % on
    # the earlier low). Measured from the earlier low it is no trend; a fall of > 10 % (and 1 % of ln C) below it is.
    train_loss, train_acc = [1.0, 0.6, 0.45, 0.4, 0.38, 0.36], [0.7, 0.85, 0.9, 0.91, 0.92, 0.93]
    val_acc = [0.8, 0.88, 0.93, 0.9, 0.92, 0.935]
    bounce = diagnose(_rows(train_loss, train_acc, [0.5, 0.3, 0.169, 0.426, 0.256, 0.166], val_acc), 10, 5000)
    assert bounce["verdict"] != "not converged", bounce
    falling = diagnose(_rows(train_loss, train_acc, [0.5, 0.3, 0.169, 0.426, 0.256, 0.140], val_acc), 10, 5000)
    assert falling["verdict"] == "not converged"
    assert "val_loss still falling 0.1690 → 0.1400 in the last epoch (from its lowest before)" in falling["evidence"]


def test_a_val_loss_blown_up_while_the_training_batches_fit_is_named_as_eval_mode_going_astray():
    from deeprecipe.train.diagnose import diagnose
    # The final run of a real recipe on 160 camera photos (4 classes, 16 validation images, resnet18 at 64 px,
    # one-cycle peak 0.01): the training loss stayed under ln 4 while the validation loss reached 17,359.
    train = [1.162, 0.811, 0.855, 1.286, 2.115, 0.736, 0.572, 0.495, 0.431, 0.45, 0.461, 0.421, 0.422, 0.403, 0.398, 0.398]
    val = [15.4, 62.6, 646.0, 17358.6, 6185.8, 1749.4, 226.4, 59.5, 25.4, 10.4, 4.76, 2.2, 0.917, 0.393, 0.161, 0.073]
    acc = [0.375, 0.25, 0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.688, 0.812, 0.938, 1.0]
    lr = [0.001, 0.003, 0.007, 0.01, 0.01, 0.01, 0.009, 0.008, 0.007, 0.006, 0.004, 0.003, 0.002, 0.001, 0.0, 0.0]
    history = [dict(epoch=i + 1, train_loss=t, train_acc=0.9, val_loss=v, val_acc=a, lr=r)
               for i, (t, v, a, r) in enumerate(zip(train, val, acc, lr))]
    result = diagnose(history, num_classes=4, val_images=16, schedule="onecycle", label_smoothing=0.1)
    notes = [e for e in result["evidence"] if "evaluation mode" in e]
    assert len(notes) == 1 and "17,359 at epoch 4" in notes[0] and "(9 epoch(s) like it)" in notes[0], result["evidence"]
    # A validation loss that never leaves an untrained model's reach gets no such note.
    calm = [dict(row, val_loss=min(row["val_loss"], 1.0)) for row in history]
    assert not any("evaluation mode" in e for e in diagnose(calm, num_classes=4, val_images=16, schedule="onecycle",
                                                             label_smoothing=0.1)["evidence"])
