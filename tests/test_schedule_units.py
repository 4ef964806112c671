"""Schedule edge cases: one step per epoch, milestones at and above 1, one-cycle's ends, Plateau's defaults.

The broad shapes are checked against PyTorch's schedulers in test_trainer.py; these pin the boundaries where an
off-by-one or a swapped comparison would still give a plausible curve. Pure functions: milliseconds.
"""
from __future__ import annotations

import math
import typing

import pytest

from deeprecipe.config import ScheduleConfig
from deeprecipe.errors import DeepRecipeError
from deeprecipe.train.schedule import Plateau, lr_factor, schedule_curve

ONECYCLE_END = 1 / 25 / 1e4  # PyTorch's OneCycleLR: max_lr / div_factor / final_div_factor


def test_one_step_per_epoch_counts_epochs_in_steps():
    # step decay: epoch = step when an epoch is one step
    step = ScheduleConfig(name="step", step_size=1, gamma=0.5)
    assert schedule_curve(step, 5, 1) == [1.0, 0.5, 0.25, 0.125, 0.0625]
    # multistep fractions are of the run's epochs: 10 one-step epochs, halfway = step 5
    multi = ScheduleConfig(name="multistep", milestones=[0.5], gamma=0.1)
    assert schedule_curve(multi, 10, 1) == pytest.approx([1.0] * 5 + [0.1] * 5)


@pytest.mark.parametrize("milestone, first_cut", [(1, 10), (1.5, 15), (0.25, 25)])
def test_milestones_from_one_up_are_epochs_below_one_fractions(milestone, first_cut):
    # 100 steps of 10 per epoch: milestone 1 is epoch 1 (step 10), 1.5 is step 15, 0.25 a quarter of the run
    cfg = ScheduleConfig(name="multistep", milestones=[milestone], gamma=0.1)
    curve = schedule_curve(cfg, 100, 10)
    assert curve == pytest.approx([1.0] * first_cut + [0.1] * (100 - first_cut))


def test_onecycle_rises_as_a_half_cosine_and_ends_at_its_floor():
    cfg = ScheduleConfig(name="onecycle", pct_start=0.3)
    curve = schedule_curve(cfg, 100, 10)
    start = 1 / 25
    for s in (0, 10, 15, 29):  # the rise: 1/25 + (1 - 1/25)·(1 - cos(π·s/30))/2
        assert curve[s] == pytest.approx(start + (1 - start) * 0.5 * (1 - math.cos(math.pi * s / 30)), rel=1e-12)
    assert curve[15] == pytest.approx(0.52)
    # at the planned end and past it (a run extended on resume) the factor stays at the floor
    for step in (100, 130, 200):
        assert lr_factor(step, 100, 10, cfg) == pytest.approx(ONECYCLE_END, rel=1e-9)


def test_onecycle_with_a_one_step_rise_or_fall():
    # 10 steps, pct_start 0.1: the rise is one step, the peak is reached at step 1
    curve = schedule_curve(ScheduleConfig(name="onecycle", pct_start=0.1), 10, 5)
    assert curve[0] == pytest.approx(1 / 25) and curve[1] == pytest.approx(1.0)
    # 4 steps, pct_start 0.75: the fall is one step, so the step after the last is the floor
    cfg = ScheduleConfig(name="onecycle", pct_start=0.75)
    assert lr_factor(3, 4, 2, cfg) == pytest.approx(1.0)
    assert lr_factor(4, 4, 2, cfg) == pytest.approx(ONECYCLE_END, rel=1e-9)


def test_cosine_after_warmup_with_a_single_step_left():
    # warmup takes 10 of 11 steps: the one cosine step goes from the top to the floor in one go
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1)
    assert lr_factor(10, 11, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(11, 11, 10, cfg) == pytest.approx(0.1)


def test_one_step_warmup_is_full_rate_from_the_start():
    cfg = ScheduleConfig(name="constant", warmup_epochs=0.1)  # one step of ten
    assert schedule_curve(cfg, 3, 10) == [1.0, 1.0, 1.0]
    half = ScheduleConfig(name="constant", warmup_epochs=0.2)  # two steps
    assert schedule_curve(half, 3, 10) == [0.5, 1.0, 1.0]


def test_unknown_schedule_fix_lists_every_schedule():
    from types import SimpleNamespace
    with pytest.raises(DeepRecipeError) as err:
        lr_factor(0, 10, 5, SimpleNamespace(name="nope", warmup_epochs=0))
    names = typing.get_args(ScheduleConfig.model_fields["name"].annotation)
    fix = err.value.fix
    assert fix.startswith("use ") and all(n in fix for n in names), fix


def test_plateau_defaults_watch_a_loss_from_a_clean_state():
    pl = Plateau(gamma=0.5, patience=1)
    # nothing seen yet: no best, no bad epochs, full rate (what a checkpoint before the first epoch stores)
    assert pl.state_dict() == {"best": None, "bad_epochs": 0, "factor": 1.0}
    for v in [1.0, 0.9, 0.95]:
        pl.step(v)
    assert (pl.best, pl.bad_epochs, pl.factor) == (0.9, 1, 1.0)  # lower is better by default


@pytest.mark.parametrize("mode", ["min", "max"])
def test_plateau_an_equal_value_is_no_improvement(mode):
    pl = Plateau(gamma=0.5, patience=1, mode=mode)
    for v in [0.5, 0.5, 0.5]:
        pl.step(v)
    assert pl.factor == 0.5 and pl.bad_epochs == 0  # two epochs without gain > patience 1: cut, count reset
