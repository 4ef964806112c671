"""Exact resume: a run killed for real (SIGKILL) mid-epoch and resumed ends exactly like an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deeprecipe.train.checkpoint import load_checkpoint
from deeprecipe.utils import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"seconds", "images_per_second", "train_seconds"}  # wall-clock fields differ between any two runs
STEPS_PER_EPOCH = 9  # 280 training images at batch 32


@pytest.fixture(scope="module")
def tiny_npz(mnist_npz):
    return mnist_npz(40)


def train_cmd(npz: str, out: Path) -> list[str]:
    sets = ["data.val_fraction=0.2", "data.test_fraction=0.1", "data.augment=[translate:2]", "model.widths=[8,16]",
            "model.convs=1", "model.dropout=0.2", "train.threads=1", "log.steps_every=1", "regularize.ema=0.9",
            "schedule.name=cosine", "schedule.warmup_epochs=0.5"]
    cmd = [sys.executable, "-m", "deeprecipe", "train", "--deterministic", "--data", npz, "--epochs", "3",
           "--batch-size", "32", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-1000:]
    return err


def kill_mid_second_epoch(cmd: list[str], out: Path) -> None:
    """Start training; SIGKILL it once epoch 1's last.pt exists and epoch 2 has taken a few steps."""
    proc = start(cmd)
    last, steps = out / "checkpoints" / "last.pt", out / "steps.jsonl"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"training ended before it could be killed: {proc.stderr.read()[-500:]}")
            if last.exists() and steps.exists() and len(steps.read_text().splitlines()) > STEPS_PER_EPOCH + 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        else:
            pytest.fail("epoch 2 never started")
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    assert load_checkpoint(last)["state"]["epoch"] == 1


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING}


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tiny_npz, tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    reference = start(train_cmd(tiny_npz, ref))  # the uninterrupted run, alongside (one thread each)
    kill_mid_second_epoch(train_cmd(tiny_npz, cut), cut)
    resumed = finish(start([sys.executable, "-m", "deeprecipe", "train", "--resume", str(cut)]))
    assert "resuming" in resumed
    finish(reference)

    ref_rows, cut_rows = read_jsonl(ref / "metrics.jsonl"), read_jsonl(cut / "metrics.jsonl")
    assert [r["epoch"] for r in cut_rows] == [1, 2, 3]
    assert [without_timing(r) for r in cut_rows] == [without_timing(r) for r in ref_rows]
    assert read_jsonl(cut / "steps.jsonl") == read_jsonl(ref / "steps.jsonl")  # every step once, same values
    ref_summary = json.loads((ref / "summary.json").read_text())
    cut_summary = json.loads((cut / "summary.json").read_text())
    assert without_timing(cut_summary) == without_timing(ref_summary)
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(d / "checkpoints" / name)["model"] for d in (ref, cut))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_kfold_run_cut_off_mid_fold_resumes_where_it_stopped(tiny_npz, tmp_path, monkeypatch):
    """A 3-fold run dies during fold 2's second epoch: --resume keeps fold 1, continues fold 2 from its
    last.pt and trains fold 3 — ending with the numbers of a run that never stopped."""
    from deeprecipe.api import train
    from deeprecipe.cli import main
    from deeprecipe.train.trainer import Trainer
    sets = [f"data.spec={tiny_npz}", "data.folds=3", "train.epochs=2", "train.checkpoint_every=1",
            "train.deterministic=true", "train.threads=1", "model.widths=[8,16]", "model.convs=1"]
    whole = train(None, out=tmp_path / "whole", overrides=sets, show_progress=False)

    real_epoch, calls = Trainer._run_epoch, []

    def power_cut(self):
        calls.append(self.run_dir.name)
        if calls.count("fold2") == 2:
            raise RuntimeError("power cut")
        return real_epoch(self)

    monkeypatch.setattr(Trainer, "_run_epoch", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        train(None, out=tmp_path / "cut", overrides=sets, show_progress=False)
    monkeypatch.setattr(Trainer, "_run_epoch", real_epoch)
    cut = tmp_path / "cut"
    assert (cut / "fold1" / "summary.json").is_file() and not (cut / "fold2" / "summary.json").exists()
    fold1_log = (cut / "fold1" / "metrics.jsonl").read_text()

    assert main(["train", "--resume", str(cut)]) == 0
    resumed = json.loads((cut / "summary.json").read_text())
    assert (cut / "fold1" / "metrics.jsonl").read_text() == fold1_log          # fold 1 was not trained again
    assert len(read_jsonl(cut / "fold2" / "metrics.jsonl")) == 2                 # epoch 1 kept, epoch 2 added
    assert resumed["metrics"]["test_acc"]["values"] == whole["metrics"]["test_acc"]["values"]
    assert [r["run"] for r in resumed["runs"]] == ["fold1", "fold2", "fold3"]
