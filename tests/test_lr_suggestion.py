"""The LR range test's suggestion on synthetic curves whose steepest point and minimum are known, its loop (defaults,
smoothing, stop rules) on a stand-in trainer whose loss is a function of the lr, and one short real range test
checked for its lr ladder and smoothing (about a second)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeprecipe.config import resolve_config
from deeprecipe.recipe.lr_find import LRFindResult, run_lr_find, suggest_lr
from deeprecipe.session import Session
from deeprecipe.train.trainer import NonFiniteLoss


def _curve(centre=-3.0, n=60, rise_at=0.1):
    """A loss falling fastest (in log lr) at 10**centre and rising again past `rise_at`."""
    lrs = np.logspace(-6, 0, n)
    loss = 2.3 - 2.0 / (1 + np.exp(-(np.log10(lrs) - centre) * 3)) + 20 * np.clip(lrs - rise_at, 0, None)
    return list(lrs), list(loss)


def test_steepest_point_minimum_and_suggestion():
    lrs, loss = _curve()
    suggestion, min_lr, steep = suggest_lr(lrs, loss)
    i_min = int(np.argmin(loss))
    assert min_lr == lrs[i_min]
    assert abs(math.log10(steep) - (-3.0)) <= 0.11  # within one grid step of the true steepest point
    assert suggestion == min_lr / 2  # half the minimum, wherever the steepest point lies


def test_suggestion_is_half_the_minimum_when_the_steepest_point_is_close_to_it():
    lrs, loss = _curve(centre=-1.3, rise_at=0.1)
    suggestion, min_lr, steep = suggest_lr(lrs, loss)
    assert steep >= min_lr / 10 and suggestion == min_lr / 2


def test_burn_in_ignores_the_first_tenth():
    lrs, loss = _curve()
    loss[0] = -5.0  # a freak first value below everything
    _, min_lr, _ = suggest_lr(lrs, loss)
    assert min_lr == lrs[int(np.argmin(loss[6:])) + 6]
    loss[6] = -5.0  # the first value after the burn-in of 6 counts
    assert suggest_lr(lrs, loss) == (lrs[6] / 2, lrs[6], None)
    short = [1.0, -9.0, 0.5, 0.4, 0.3, 0.2, 0.1]  # 7 points: burn-in is at least one point
    assert suggest_lr(list(np.logspace(-3, 0, 7)), short)[1] == pytest.approx(np.logspace(-3, 0, 7)[1])
    lrs, loss = _curve()
    assert suggest_lr(lrs, loss, burn_in=0.5)[1] == suggest_lr(lrs, loss)[1]
    early = list(loss)
    early[20] = -1.0
    assert suggest_lr(lrs, early, burn_in=0.5)[1] == lrs[int(np.argmin(loss))]  # index 20 < 30: burnt in


def test_too_short_curves_and_a_minimum_right_after_the_burn_in():
    assert suggest_lr([1e-3, 1e-2, 1e-1, 1.0], [1, 0.5, 0.4, 0.3]) == (None, None, None)
    lrs = list(np.logspace(-4, 0, 5))
    assert suggest_lr(lrs, [3.0, 2.0, 1.0, 1.5, 2.0]) == (lrs[2] / 2, lrs[2], None)
    lrs = list(np.logspace(-4, 0, 20))  # burn-in 2; a minimum at index 4 (< 3 past it): no steepest point
    loss = [3.0, 2.9, 2.5, 2.0, 1.0] + [1.5 + 0.1 * i for i in range(15)]
    assert suggest_lr(lrs, loss) == (lrs[4] / 2, lrs[4], None)
    loss = [3.0, 2.9, 2.8, 2.6, 2.0, 1.0] + [1.5 + 0.1 * i for i in range(14)]  # minimum at index 5: 3 past
    suggestion, min_lr, steep = suggest_lr(lrs, loss)
    assert min_lr == lrs[5] and steep is not None and lrs[2] <= steep <= lrs[3]


def test_steepest_search_stops_before_the_minimum():
    lrs = list(np.logspace(-4, 0, 30))
    loss = [2.0] * 30
    loss[10:20] = list(np.linspace(2.0, 1.9, 10))   # gentle fall
    loss[20] = 0.2                                   # a cliff into the minimum
    loss[21:] = [3.0] * 9
    _, min_lr, steep = suggest_lr(lrs, loss)
    assert min_lr == lrs[20] and steep < lrs[19]  # the last step into the minimum is not searched


@pytest.fixture(scope="module")
def short_range_test(mnist_npz):
    session = Session.create(resolve_config(None, [f"data.spec={mnist_npz(30)}", "model.widths=[8]", "model.convs=1",
                                                   "train.batch_size=32", "optim.name=sgd", "optim.momentum=0"]))
    return run_lr_find(session, start_lr=1e-4, end_lr=10.0, steps=12, beta=0.8, diverge=1e9)


def test_a_short_range_test_climbs_the_ladder_and_smooths(short_range_test):
    r = short_range_test
    assert isinstance(r, LRFindResult) and r.diverged_at is None and len(r.lrs) == 12
    assert r.lrs[0] == pytest.approx(1e-4) and r.lrs[-1] == pytest.approx(10.0)
    assert np.allclose(np.diff(np.log(r.lrs)), math.log(1e5) / 11)
    avg = 0.0
    for i, (value, smooth) in enumerate(zip(r.losses, r.smoothed)):
        avg = 0.8 * avg + 0.2 * value
        assert smooth == pytest.approx(avg / (1 - 0.8 ** (i + 1)))
    assert r.losses[0] == pytest.approx(math.log(10), abs=0.3)  # the first loss is an untrained model's
    assert (r.suggestion, r.min_loss_lr, r.steepest_lr) == suggest_lr(r.lrs, r.smoothed)
    assert set(r.to_dict()) == {"lrs", "losses", "smoothed", "suggestion", "min_loss_lr", "steepest_lr", "diverged_at"}


def test_a_range_test_stops_once_the_smoothed_loss_runs_away(mnist_npz):
    session = Session.create(resolve_config(None, [f"data.spec={mnist_npz(30)}", "model.widths=[8]", "model.convs=1",
                                                   "train.batch_size=32", "optim.name=sgd", "optim.momentum=0"]))
    r = run_lr_find(session, start_lr=1e-3, end_lr=1e3, steps=40, diverge=1.3)
    assert r.diverged_at is not None and 6 < len(r.lrs) < 40
    by_rule = r.diverged_at == pytest.approx(r.lrs[-1])  # else a non-finite loss stopped it, one lr further
    assert by_rule or r.diverged_at > r.lrs[-1]
    kept = r.smoothed[:-1] if by_rule else r.smoothed
    for i, s in enumerate(kept):  # no earlier step met the rule (it is checked from step 6 on)
        assert i <= 5 or s <= 1.3 * min(r.smoothed[:i + 1])
    if by_rule:
        assert r.smoothed[-1] > 1.3 * min(r.smoothed)


class _FakeTrainer:
    """Just enough of a Trainer for the range test's loop: the loss is a function of the lr it was given."""

    def __init__(self, loss_of_lr, batches=3):
        self.loss_of_lr, self.batches, self.steps, self.epochs = loss_of_lr, batches, 0, []
        self.model = torch.nn.Linear(1, 1)
        self.model.eval()
        outer = self

        class Loader:
            def set_epoch(self, epoch):
                outer.epochs.append(epoch)

            def __iter__(self):
                return iter([(torch.zeros(1), torch.zeros(1))] * outer.batches)

        self.train_loader = Loader()

    def train_step(self, x, y):
        self.value = self.loss_of_lr(self.lr_at(self.steps))
        self.steps += 1
        if not math.isfinite(self.value):
            raise NonFiniteLoss(self.value, 0, self.steps, self.lr_at(self.steps - 1))

    def read_losses(self):
        return self.value


class _FakeSession:
    def __init__(self, trainer):
        self.trainer = trainer

    def make_trainer(self, resume, show_progress=True):
        assert resume is None and not show_progress
        return self.trainer


def test_the_default_range_test_spans_1e_6_to_1_in_100_steps_cycling_the_loader():
    fake = _FakeTrainer(lambda lr: 2.0)
    r = run_lr_find(_FakeSession(fake))
    assert fake.model.training  # the range test trains
    assert len(r.lrs) == 100 and r.lrs[0] == pytest.approx(1e-6) and r.lrs[-1] == pytest.approx(1.0)
    assert r.lrs[1] == pytest.approx(1e-6 * 1e6 ** (1 / 99)) and r.diverged_at is None
    assert fake.epochs == list(range(34))  # 3 batches an epoch: the loader restarts with a new epoch number
    assert r.smoothed == pytest.approx([2.0] * 100)  # bias-corrected from the first step


def test_the_default_smoothing_and_stop_rule():
    # loss 1 until lr 1e-3, then 10: the 0.9-smoothed loss passes 4 × its minimum on the 4th step at 10
    fake = _FakeTrainer(lambda lr: 1.0 if lr < 1e-3 else 10.0)
    r = run_lr_find(_FakeSession(fake))
    jump = next(i for i, lr in enumerate(r.lrs) if lr >= 1e-3)
    avg = 0.0
    for i, v in enumerate(r.losses):
        avg = 0.9 * avg + 0.1 * v
        assert r.smoothed[i] == pytest.approx(avg / (1 - 0.9 ** (i + 1)))
    assert max(r.smoothed[:-1]) <= 4.0 and r.smoothed[-1] > 4.0 and r.diverged_at == r.lrs[-1]
    assert len(r.lrs) == jump + 4  # 1 → 1 + 9·(1 − 0.9^k) passes 4 first at k = 4 (bias correction ~1 here)


def test_a_non_finite_loss_stops_the_range_test_at_its_lr():
    fake = _FakeTrainer(lambda lr: 1.0 if lr < 1e-2 else float("nan"))
    r = run_lr_find(_FakeSession(fake), start_lr=1e-4, end_lr=1.0, steps=5)
    assert r.lrs == pytest.approx([1e-4, 1e-3]) and r.diverged_at == pytest.approx(1e-2)
    assert len(r.losses) == len(r.smoothed) == 2 and r.suggestion is None  # too short to suggest


def test_the_stop_rule_starts_at_step_6_and_needs_more_than_diverge_times_the_minimum(monkeypatch):
    import deeprecipe.recipe.lr_find as lr_find
    labels = []
    monkeypatch.setattr(lr_find, "track", lambda it, label: labels.append(label) or it)
    late = run_lr_find(_FakeSession(_FakeTrainer(lambda lr: 1.0 if lr < 0.05 else 100.0)), 1e-6, 1.0, steps=7)
    assert late.lrs[5] == pytest.approx(0.1)  # ×10 a step: the loss is far above 4x from step 5 on ...
    assert len(late.lrs) == 7 and late.diverged_at == late.lrs[-1]  # ... and the rule stops the test at step 6
    assert labels == ["lr-find"]  # the progress bar is named
    # without smoothing (beta 0) the smoothed loss is the loss: exactly 4x the minimum is not beyond it
    at = run_lr_find(_FakeSession(_FakeTrainer(lambda lr: 1.0 if lr < 1e-3 else 4.0)), 1e-4, 1e-1, steps=10, beta=0.0)
    assert at.smoothed == at.losses and len(at.lrs) == 10 and at.diverged_at is None
    past = run_lr_find(_FakeSession(_FakeTrainer(lambda lr: 1.0 if lr < 1e-3 else 4.01)), 1e-4, 1e-1, steps=10, beta=0.0)
    assert len(past.lrs) == 7 and past.diverged_at == past.lrs[-1]  # lr 1e-3 is step 3; the rule waits for step 6
    two = run_lr_find(_FakeSession(_FakeTrainer(lambda lr: 1.0)), 1e-3, 1e-1, steps=2)
    assert two.lrs == pytest.approx([1e-3, 1e-1])  # two steps span the whole range


def test_stored_calibration_reads_the_same_with_the_current_code():
    """docs/recipe.md's learning-rate tables come from benchmarks/results/lr_calibration.json: the short-runs
    suggestions stored there are the current vertex reading of the stored final losses, the stop past the minimum
    would have tried no further candidate, and every stored range curve gives a reading."""
    import json
    from pathlib import Path
    from deeprecipe.recipe.lr_methods import above_the_top, candidate_lrs, past_the_minimum, vertex_lr
    results = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "lr_calibration.json").read_text())
    assert len(results) >= 10
    went_above = 0
    for key, r in results.items():
        lo, hi = r["band"]
        assert 0 < lo <= hi and str(lo) in map(str, map(float, r["accs"]))
        for s in r["suggestions"]:
            runs = s["curves"]["short-runs"]
            finals = [math.inf if f is None else f for f in runs["finals"]]
            assert vertex_lr(runs["lrs"], finals) == pytest.approx(s["short-runs"]), key
            assert runs["lrs"] == sorted(runs["lrs"], reverse=True)
            start = min(runs.get("start_loss") or math.inf, runs.get("chance_loss") or math.inf)
            above = sum(lr > candidate_lrs()[0] * 1.001 for lr in runs["lrs"])  # tried after the list, upwards
            went_above += above > 0
            listed, listed_finals = runs["lrs"][above:], finals[above:]
            assert listed == pytest.approx(candidate_lrs()[:len(listed)]), key  # the current candidates
            assert (len(listed) == len(candidate_lrs()) or past_the_minimum(listed_finals, start)
                    and not past_the_minimum(listed_finals[:-1], start)), key
            for k in range(above, 0, -1):  # each rate above the list is the one the rates below it asked for
                assert above_the_top(runs["lrs"][k:], finals[k:]) == pytest.approx(runs["lrs"][k - 1]), key
            assert above_the_top(runs["lrs"], finals) is None, key
            assert suggest_lr(s["curves"]["range"]["lrs"], s["curves"]["range"]["smoothed"])[0] is not None
    assert went_above  # the batch-normalised convnets under SGD are best at the list's top


def test_the_one_seed_ceiling_reads_each_seeds_own_best_full_run():
    from benchmarks.lr_readings import one_seed_grid
    accs = {"0.01": [0.90, 0.80, 0.95], "0.1": [0.85, 0.90, 0.95], "1.0": [0.10, 0.10]}
    assert one_seed_grid(accs) == [0.01, 0.1]  # seed 2 is missing at 1.0: only the seeds every rate has
    assert one_seed_grid({"0.01": [0.9], "0.1": [0.9]}) == [0.1]  # a tie goes to the higher rate


def test_the_one_seed_vertex_ceiling_reads_between_the_best_rate_and_its_better_neighbour():
    from benchmarks.lr_readings import one_seed_grid_vertex
    accs = {"0.001": [0.80, 0.80], "0.01": [0.90, 0.90], "0.1": [0.88, 0.80]}
    lean_up, centred = one_seed_grid_vertex(accs)
    assert 0.01 < lean_up < 0.1**0.5 * 0.01**0.5  # 0.1 nearly as good: the vertex leans towards it, under half-way
    assert centred == pytest.approx(0.01)  # both neighbours equally worse: the best rate itself


def test_a_suggestion_is_in_the_band_when_it_rounds_to_a_band_rate():
    from benchmarks.lr_calibration import band_edges, in_band
    grid = [0.01, 0.03, 0.1, 0.3]
    low, high = band_edges(grid, (0.03, 0.03))
    assert low == pytest.approx(math.sqrt(0.01 * 0.03)) and high == pytest.approx(math.sqrt(0.03 * 0.1))
    assert in_band(0.052, grid, (0.03, 0.03)) and not in_band(0.056, grid, (0.03, 0.03))  # 0.056 is nearer 0.1
    top_low, top_high = band_edges(grid, (0.3, 0.3))  # past the grid's end: half the last step
    assert top_high == pytest.approx(0.3 * math.sqrt(3)) and top_low == pytest.approx(math.sqrt(0.1 * 0.3))
    refined = [0.01, 0.03, 0.055, 0.1, 0.3]
    assert not in_band(0.052, refined, (0.1, 0.1)) and in_band(0.08, refined, (0.1, 0.1))


def test_refining_a_grid_adds_rates_beside_the_band_until_a_quarter_decade_apart():
    from benchmarks.lr_calibration import best_band, refine_grid
    truth = lambda lr: 0.9 - 0.1 * abs(math.log10(lr) - math.log10(0.07))  # best near 0.07, between grid rates
    trained = []
    run = lambda lr, seed: trained.append(lr) or truth(lr) + 0.001 * seed
    accs = {lr: [run(lr, s) for s in range(3)] for lr in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)}
    trained.clear()
    refine_grid(accs, run, seeds=3)
    added = sorted(set(trained))
    assert added and all(len(accs[lr]) == 3 for lr in added) and 0.055 in added
    lo, hi = best_band(accs)
    grid = sorted(accs)
    for edge in (lo, hi):  # every band rate's neighbours are now at most a quarter decade away
        i = grid.index(edge)
        assert all(max(edge, grid[j]) / min(edge, grid[j]) <= 10 ** 0.26 for j in (i - 1, i + 1) if 0 <= j < len(grid))
    assert 0.001 not in added and len(added) <= 4  # only beside the band


def test_the_refined_grids_keep_every_stored_rate_and_their_bands_follow_from_them():
    """benchmarks/results/lr_calibration-refined.json (docs/recipe.md's finer-grid table) holds the stored grids
    with rates added, the same suggestions, and bands that are the one-standard-error bands of its grids."""
    import json
    from pathlib import Path
    from benchmarks.lr_calibration import best_band
    results = Path(__file__).parents[1] / "benchmarks" / "results"
    coarse = json.loads((results / "lr_calibration.json").read_text())
    fine = json.loads((results / "lr_calibration-refined.json").read_text())
    assert set(fine) == set(coarse)
    for key, r in fine.items():
        assert set(coarse[key]["accs"]) < set(r["accs"]), key
        assert r["suggestions"] == coarse[key]["suggestions"]
        assert tuple(r["band"]) == best_band({float(k): v for k, v in r["accs"].items()})


def test_the_stored_starts_replay_the_calibrations_short_runs():
    """benchmarks/results/lr_starts.json (every candidate from three starts a seed; docs/recipe.md's "How
    reproducible the band is") read the product's way: each seed's first start — the calibration's own seed —
    gives back the suggestions (short runs and range test) stored in lr_calibration.json, and the replicate grids
    hold the calibration's rates."""
    import json
    from pathlib import Path
    from benchmarks.lr_starts import range_reading, replay
    results = Path(__file__).parents[1] / "benchmarks" / "results"
    calibration = json.loads((results / "lr_calibration.json").read_text())
    starts = json.loads((results / "lr_starts.json").read_text())
    replicate = json.loads((results / "lr_band_replicate.json").read_text())
    assert set(starts) == set(calibration) == set(replicate)
    for key, per_seed in starts.items():
        stored = [s["short-runs"] for s in calibration[key]["suggestions"]]
        assert [replay([tests[0]])[0] for tests in per_seed] == pytest.approx(stored), key
        stored_range = [suggest_lr(s["curves"]["range"]["lrs"], s["curves"]["range"]["smoothed"])[0]
                        for s in calibration[key]["suggestions"]]
        assert [range_reading(tests[0]) for tests in per_seed] == pytest.approx(stored_range), key  # the range test too
        assert [t["seed"] for t in per_seed[1]] == [1, 11, 21]
        assert set(replicate[key]["accs"]) == set(calibration[key]["accs"]) and replicate[key]["seeds"] == [30, 31, 32]
