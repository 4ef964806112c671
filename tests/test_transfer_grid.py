"""The transfer table (similar/different target × little/much data): its targets, its verdicts, its runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deeprecipe.experiments.registry import run_experiment
from deeprecipe.experiments.transfer import target_splits
from deeprecipe.experiments.transfer_grid import grid_checks, probe_shortfall, winners
from deeprecipe.experiments.transfer_targets import PHOTOS, photo_patches, similar_digits


# ------------------------------------------------------------------------------------------ targets
def test_similar_target_is_scikit_learns_digits_framed_like_mnist():
    ds = similar_digits(test_per_class=60)
    assert ds.images.shape == (1797, 1, 28, 28) and ds.images.dtype == torch.uint8
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:24, 4:24] = False
    assert ds.images[:, 0, border].max() == 0 and ds.images.float().mean() > 10  # ink only inside the 20×20 box
    splits = target_splits(ds.labels.numpy(), 100, 60, seed=0)
    assert len(splits["test"]) == 600 and len(set(splits["test"]) & set(splits["train"])) == 0
    assert np.bincount(ds.labels[splits["train"]].numpy()).tolist() == [100] * 10


def test_photo_patch_target_keeps_test_and_training_patches_apart():
    ds = photo_patches(test_per_class=5, train_per_class=7, seed=0)
    assert ds.images.shape == (120, 1, 28, 28) and ds.classes == PHOTOS
    labels = ds.labels.numpy()
    assert labels[:50].tolist() == sorted(labels[:50].tolist()) and np.bincount(labels).tolist() == [12] * 10
    assert np.bincount(labels[:50]).tolist() == [5] * 10  # the first 5 per class form the test set
    # Different photos give different patches: the class means are far apart relative to the noise.
    means = torch.stack([ds.images[ds.labels == c].float().mean(0) for c in range(10)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 100


# ------------------------------------------------------------------------------------------ verdicts
def _rows(accs: dict[tuple[str, str], dict[str, float]]) -> list[dict]:
    return [{"target": t, "data": d, "method": m, "mean_acc": a} for (t, d), ms in accs.items() for m, a in ms.items()]


def test_checks_follow_the_numbers_not_the_lectures():
    lectures = _rows({("similar", "little"): {"scratch": 0.80, "linear_probe": 0.90, "finetune": 0.85},
                      ("similar", "much"): {"scratch": 0.93, "linear_probe": 0.90, "finetune": 0.97},
                      ("different", "little"): {"scratch": 0.60, "linear_probe": 0.40, "finetune": 0.75},
                      ("different", "much"): {"scratch": 0.85, "linear_probe": 0.60, "finetune": 0.80}})
    checks = grid_checks(lectures)
    assert winners(lectures)[("different", "much")] == "scratch"
    assert all(checks.values()) and len(checks) == 5
    contrary = _rows({("similar", "little"): {"scratch": 0.80, "linear_probe": 0.70, "finetune": 0.85},
                      ("similar", "much"): {"scratch": 0.98, "linear_probe": 0.90, "finetune": 0.97},
                      ("different", "little"): {"scratch": 0.90, "linear_probe": 0.40, "finetune": 0.95},
                      ("different", "much"): {"scratch": 0.85, "linear_probe": 0.88, "finetune": 0.80}})
    assert not any(grid_checks(contrary).values())


# ------------------------------------------------------------------------------------------ the experiment
def test_transfer_grid_quick(tmp_path):
    """Seconds: a weak source (83% on its digits), one seed. What must hold even so: pretraining on digits helps
    the digit target more than the photo target (measured: +27 vs +7 points at 10/class)."""
    result, out = run_experiment("transfer-grid", quick=True, out=tmp_path)
    cells = {(r["target"], r["data"]): {} for r in result.rows}
    for r in result.rows:
        cells[(r["target"], r["data"])][r["method"]] = r["mean_acc"]
    assert sorted(cells) == [("different", "little"), ("different", "much"), ("similar", "little"), ("similar", "much")]
    assert all(sorted(c) == ["finetune", "linear_probe", "scratch"] for c in cells.values())
    gain = {t: cells[(t, "little")]["finetune"] - cells[(t, "little")]["scratch"] for t in ("similar", "different")}
    assert gain["similar"] > gain["different"] + 0.05, gain
    assert cells[("similar", "little")]["finetune"] > max(cells[("similar", "little")].values()) - 1e-9
    source = out / "pretrain"  # a deeprecipe run, cached for the next call, without the report it does not need
    assert (source / "checkpoints" / "best.pt").is_file() and not (source / "report.html").exists()
    saved = json.loads((out / "results.json").read_text())
    assert saved["checks"] == result.checks and (out / "transfer_grid.png").stat().st_size > 10_000
    assert "reproduced here" in result.conclusion


@pytest.mark.slow
def test_transfer_grid_full_reproduces_three_cells(tmp_path):
    """The full table (8-epoch source, 3 seeds, 100 steps a run; docs/transfer.md has the numbers)."""
    result, _ = run_experiment("transfer-grid", quick=False, out=tmp_path)
    checks = result.checks
    # Reproduced (margins measured: fine-tune +1.3 over scratch; the hardest cell 70.6% vs 74.6% next;
    # the probe 19 points behind with much different data).
    assert checks["much similar data: fine-tuning wins"]
    assert checks["little different data is the hardest cell"]
    assert checks["much different data: fine-tuning or scratch wins"]
    # Transfer pays on the similar target, not on the different one; frozen digit features fit photos poorly.
    cells = {(r["target"], r["data"], r["method"]): r["mean_acc"] for r in result.rows}
    gain = {t: cells[(t, "little", "finetune")] - cells[(t, "little", "scratch")] for t in ("similar", "different")}
    assert gain["similar"] > 0.01 and gain["similar"] > gain["different"], gain
    behind = probe_shortfall(result.rows)
    # Measured 18.1 vs 7.1 points, and 10.0 vs 7.8 in a second run whose source came out at 97.4% (not 97.2%).
    assert behind["different"] > behind["similar"] > 0.03, behind
    # Not reproduced, and asserted as found: fine-tuning beats the probe even with little similar data, and is
    # nowhere near 10 points above scratch with little different data (measured −0.3).
    assert not checks["little similar data: the linear probe wins"]
    assert not checks["fine-tuning beats scratch by ≥ 10 points with little different data"]
