"""Does pretraining help when labels are few? Pretrain on digits 0–4, transfer to digits 5–9.

A small ConvNet is trained on every 0–4 image of builtin:mnist5k. On 5–9 it is then trained with
10, 20 and 50 labelled images per class three ways — from scratch, a linear probe on the frozen
pretrained body, and fine-tuning everything from the pretrained weights — over several seeds, and
tested on a fixed held-out set of 5–9 images that no run trains on.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..api import train
from ..config import build_config
from ..data.sources import ImageSet, load_source
from ..plots import pyplot, save_png
from ..progress import track
from ..session import PreparedData, Session
from ..utils import note, write_json
from .registry import ExperimentResult, register_experiment

METHODS = {  # name -> (uses pretrained weights, transfer section, lr multiplier)
    "scratch": (False, {"strategy": "finetune_all"}, 1.0),
    "linear_probe": (True, {"strategy": "linear_probe"}, 5.0),  # a head on fixed features takes a larger lr
    "finetune": (True, {"strategy": "finetune_all"}, 1.0),
    "gradual": (True, {"strategy": "gradual"}, 1.0),  # head first, one more stage each epoch (ULMFiT-style)
}
SOURCE_CLASSES, TARGET_CLASSES = range(0, 5), range(5, 10)


@dataclass
class StudySettings:
    labels_per_class: list[int] = field(default_factory=lambda: [10, 20, 50])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    model: dict = field(default_factory=lambda: {"name": "convnet", "widths": [16, 32, 64], "convs": 1})
    pretrain_epochs: int = 8
    pretrain_batch: int = 64
    pretrain_lr: float = 5e-3     # the source's peak rate, pinned: the numbers in docs/transfer.md were measured at it
    # Optimizer steps per target run, whatever its size: the same short budget for every method. Given
    # 150 steps, from-scratch catches up (91% vs 92% at 20/class, docs/transfer.md); the gap is a
    # head start, measured at a fixed budget.
    steps: int = 60
    test_per_class: int = 200
    lr: float = 1e-2              # best of 5e-3/1e-2 for both scratch and fine-tuning at 30–60 steps
    # Normalise pretrained runs' inputs by the source's mean/std (as `train` with model.pretrained does)
    # rather than by the target's own training split.
    pretrained_stats: bool = False


def _subset(images: torch.Tensor, labels: torch.Tensor, classes: range):
    keep = torch.isin(labels, torch.tensor(list(classes)))
    return ImageSet(images[keep], labels[keep] - classes[0], [str(c) for c in classes])


def _read_key(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pretrain(source, out: Path, s: StudySettings) -> Path:
    """Train the source model with the ordinary `train` path; its run folder is model.pretrained later."""
    path = out / "data" / "source.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=source.images[:, 0].numpy(), y=source.labels.numpy(), classes=np.array(source.classes))
    cfg = {"data": {"spec": f"npz:{path}", "test_fraction": 0.1, "val_fraction": 0.1},
           "model": dict(s.model), "optim": {"lr": s.pretrain_lr},
           "train": {"epochs": s.pretrain_epochs, "batch_size": s.pretrain_batch, "seed": 0, "threads": 1}}
    run = out / "pretrain"
    key = {"model": cfg["model"], "optim": cfg["optim"], "train": cfg["train"], "images": len(source), "classes": list(source.classes)}
    if (run / "summary.json").is_file() and _read_key(run / "source_key.json") == key:
        return run  # reuse: the expensive part, identical every time with the same settings
    summary = train(cfg, out=run, show_progress=False, write_report=False)
    write_json(run / "source_key.json", key)
    note(f"pretrained on {len(source)} images of classes {', '.join(source.classes)}: test_acc {summary['test_acc']:.4f}")
    return run


def target_splits(labels: np.ndarray, k: int, test_per_class: int, seed: int) -> dict[str, np.ndarray]:
    """The first `test_per_class` images of each class form a fixed test set; k others (by seed) train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(idx[:test_per_class])
        train.append(rng.choice(idx[test_per_class:], size=k, replace=False))
    return {"train": np.sort(np.concatenate(train)), "val": np.array([], dtype=np.int64), "test": np.concatenate(test)}


def train_target(target, method: str, k: int, seed: int, pretrained: Path, s: StudySettings) -> float:
    splits = target_splits(target.labels.numpy(), k, s.test_per_class, seed)
    n = len(splits["train"])
    batch = min(32, n)
    epochs = max(1, math.ceil(s.steps / math.ceil(n / batch)))
    uses_pretrained, transfer, lr_mult = METHODS[method]
    cfg = build_config({"model": {**s.model, "pretrained": str(pretrained) if uses_pretrained else None},
                        "transfer": transfer, "optim": {"lr": s.lr * lr_mult},
                        "train": {"epochs": epochs, "batch_size": batch, "seed": seed, "threads": 1}},
                       source="experiment transfer")
    stats_from = str(pretrained) if uses_pretrained and s.pretrained_stats else None
    session = Session.create(cfg, PreparedData.from_splits(target, splits, pretrained=stats_from))
    with contextlib.redirect_stderr(io.StringIO()):  # silence the per-run "pretrained: …" note
        trainer = session.make_trainer(None, show_progress=False)
    trainer.fit()
    return trainer.evaluate(session.data.loader("test", cfg, session.device))["acc"]


def run_study(out: Path, s: StudySettings) -> list[dict]:
    """Every (method, labels per class) cell: mean and std of test accuracy over the seeds."""
    full = load_source("builtin:mnist5k")
    run = pretrain(_subset(full.images, full.labels, SOURCE_CLASSES), out, s)
    target = _subset(full.images, full.labels, TARGET_CLASSES)
    jobs = [(m, k, seed) for k in s.labels_per_class for m in s.methods for seed in s.seeds]
    accs: dict[tuple[str, int], list[float]] = {}
    for m, k, seed in track(jobs, "transfer runs"):
        accs.setdefault((m, k), []).append(train_target(target, m, k, seed, run, s))
    return [{"method": m, "labels_per_class": k, "mean_acc": float(np.mean(a)), "std_acc": float(np.std(a)),
             "seeds": len(a), "accs": [round(x, 4) for x in a]} for (m, k), a in accs.items()]


def conclusion(rows: list[dict]) -> str:
    """One paragraph read off the numbers."""
    cell = {(r["method"], r["labels_per_class"]): r["mean_acc"] for r in rows}
    ks = sorted({r["labels_per_class"] for r in rows})
    lines = []
    if all(("finetune", k) in cell and ("scratch", k) in cell for k in ks):
        gaps = {k: 100 * (cell[("finetune", k)] - cell[("scratch", k)]) for k in ks}
        lines.append("Fine-tuning vs from scratch: " + ", ".join(f"{gaps[k]:+.1f} points at {k}/class" for k in ks) + ".")
        if len(ks) > 1:
            trend = "shrinks" if abs(gaps[ks[-1]]) < abs(gaps[ks[0]]) else "does not shrink"
            lines.append(f"The gap {trend} as labels grow from {ks[0]} to {ks[-1]} per class.")
    if all(("linear_probe", k) in cell and ("finetune", k) in cell for k in ks):
        probe_wins = [k for k in ks if cell[("linear_probe", k)] > cell[("finetune", k)]]
        lines.append("A linear probe on frozen features " + (f"beats fine-tuning at {', '.join(map(str, probe_wins))}/class"
                     if probe_wins else "trails fine-tuning at every size") + ".")
    if all(("gradual", k) in cell and ("finetune", k) in cell for k in ks):
        diffs = ", ".join(f"{100 * (cell[('gradual', k)] - cell[('finetune', k)]):+.1f} at {k}/class" for k in ks)
        lines.append(f"Gradual unfreezing vs fine-tuning everything at once: {diffs}.")
    best = {k: max((m for m, kk in cell if kk == k), key=lambda m: cell[(m, k)]) for k in ks}
    lines.append("Best method: " + ", ".join(f"{best[k]} at {k}/class" for k in ks) + ".")
    return " ".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["labels_per_class"])
        ax.errorbar([r["labels_per_class"] for r in rs], [100 * r["mean_acc"] for r in rs],
                    yerr=[100 * r["std_acc"] for r in rs], marker="o", capsize=3, label=m.replace("_", " "))
    ax.set_xscale("log")
    ax.minorticks_off()  # only the measured sizes are labelled
    ax.set_xticks(sorted({r["labels_per_class"] for r in rows}), labels=[str(k) for k in sorted({r["labels_per_class"] for r in rows})])
    ax.set_xlabel("labelled images per class (digits 5–9)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Transfer from digits 0–4")
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, out / "transfer.png", dpi=120)


@register_experiment("transfer", "With few labels, fine-tuning a network pretrained on related data beats training from scratch")
def transfer_experiment(quick: bool, out: Path) -> ExperimentResult:
    s = StudySettings(pretrain_epochs=4, seeds=[0, 1], labels_per_class=[10, 20]) if quick else StudySettings()
    rows = run_study(out, s)
    plot(rows, out)
    cell = {(r["method"], r["labels_per_class"]): r["mean_acc"] for r in rows}
    checks = {}
    tuned = [cell[(m, 20)] for m in ("finetune", "gradual") if (m, 20) in cell]  # either way of fine-tuning
    if tuned and ("scratch", 20) in cell:
        checks["fine-tuning beats scratch by ≥ 10 points at 20 labels/class"] = max(tuned) - cell[("scratch", 20)] >= 0.10
    return ExperimentResult(rows, conclusion(rows), [out / "transfer.png"], checks)
