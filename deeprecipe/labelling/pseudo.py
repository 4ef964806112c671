"""Semi-supervised training with pseudo-labels: a teacher–student loop (after Lee 2013 and noisy student).

Round 0 trains a teacher on the labelled training split. Each later round the teacher labels the
unlabelled images; those it is at least `pseudo.threshold` sure of join the training set with its
label, and a fresh student trains on both — and becomes the next round's teacher. Labels that ship
with the unlabelled spec are never trained on; they only measure how right the pseudo-labels were.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..data.loader import TensorLoader
from ..data.sources import ImageSet, conform, from_arrays, load_source
from ..session import PreparedData, Session
from ..utils import note, write_json
from .consistency import ConsistencyTrainer


def load_unlabeled(spec: str, shape) -> tuple[torch.Tensor, np.ndarray | None]:
    """Images of the unlabelled spec in the labelled set's shape, and their true labels when it has any.

    An npz with `x` alone is accepted (truly unlabelled); any other spec is read as usual.
    """
    images, truth = _read_x_only(spec)
    if images is None:
        ds = load_source(spec)
        images, truth = ds.images, ds.labels.numpy()
    c, h, w = shape
    if tuple(images.shape[1:]) != (c, h, w):
        images = conform(images, c, (h, w))
    return images, truth


def _read_x_only(spec: str) -> tuple[torch.Tensor | None, None]:
    if not spec.startswith("npz:"):
        return None, None
    p = Path(spec[4:]).expanduser()
    try:
        with np.load(p, allow_pickle=False) as d:
            if "y" in d.files or "x" not in d.files:
                return None, None
            x = d["x"]
    except (OSError, ValueError):
        return None, None  # load_source reports the problem properly
    ds = from_arrays(x, np.zeros(len(x), np.int64), ["?"], str(p))
    return ds.images, None


def with_pseudo_labels(data: PreparedData, images: torch.Tensor, labels: np.ndarray) -> PreparedData:
    """The labelled data plus pseudo-labelled images appended to the train split (stats unchanged)."""
    ds = data.ds
    n = len(ds)
    merged = ImageSet(torch.cat([ds.images, images]), torch.cat([ds.labels, torch.from_numpy(labels).long()]),
                      ds.classes, name=ds.name)
    splits = dict(data.splits)
    splits["train"] = np.concatenate([data.splits["train"], n + np.arange(len(labels))])
    return PreparedData(merged, splits, data.mean, data.std)


@torch.no_grad()
def teacher_probs(trainer, data: PreparedData, images: torch.Tensor) -> np.ndarray:
    loader = TensorLoader(images, torch.zeros(len(images), dtype=torch.long), trainer.cfg.train.eval_batch_size,
                          data.mean, data.std, device=trainer.device)
    logits, _ = trainer.predict(loader)
    return torch.softmax(logits, 1).numpy()


def score_pseudo_labels(probs: np.ndarray, threshold: float, truth: np.ndarray | None) -> dict:
    """How many unlabelled images the model is sure enough of, and (with true labels) how right it is."""
    sure = probs.max(1) >= threshold
    guess = probs.argmax(1)
    row = {"unlabeled": int(len(probs)), "taken": int(sure.sum()), "threshold": threshold}
    if truth is not None:
        row["pseudo_acc"] = float((guess[sure] == truth[sure]).mean()) if sure.any() else None
        row["unlabeled_acc"] = float((guess == truth).mean())
    return row


def fit_with_pseudo_labels(session: Session, run_dir: Path | None, show_progress: bool = True):
    """Run the teacher–student rounds; returns (the last student's trainer, one stats dict per round)."""
    cfg = session.cfg
    settings = cfg.pseudo
    images, truth = load_unlabeled(cfg.data.unlabeled, session.data.input_shape)
    if truth is not None and len(truth) and int(truth.max()) >= len(session.data.classes):
        truth = None  # labels of another class list cannot score the pseudo-labels
    if settings.method == "online":
        return _fit_online(session, run_dir, images, truth, show_progress)
    rounds: list[dict] = []
    data = session.data
    trainer = session.make_trainer(run_dir if settings.rounds == 0 else None, show_progress=show_progress)
    trainer.fit()
    for r in range(1, settings.rounds + 1):
        probs = teacher_probs(trainer, session.data, images)
        taken = np.flatnonzero(probs.max(1) >= settings.threshold)
        labels = probs.argmax(1)[taken]
        row = {"round": r, **score_pseudo_labels(probs, settings.threshold, truth)}
        rounds.append(row)
        if show_progress:
            acc = f", {row['pseudo_acc']:.4f} of them right" if row.get("pseudo_acc") is not None else ""
            note(f"pseudo-label round {r}/{settings.rounds}: took {len(taken)} of {len(images)} unlabelled images{acc}")
        data = with_pseudo_labels(session.data, images[torch.from_numpy(taken)], labels)
        student = dataclasses.replace(session, data=data)
        trainer = student.make_trainer(run_dir if r == settings.rounds else None, show_progress=show_progress)
        trainer.fit()
    if run_dir:
        write_json(Path(run_dir) / "pseudo_labels.json", rounds)
    return trainer, rounds


def _fit_online(session: Session, run_dir: Path | None, images: torch.Tensor, truth: np.ndarray | None,
                show_progress: bool):
    """One trainer whose every step also learns the unlabelled images (labelling/consistency.py); the
    returned row scores the final model's pseudo-labels the way a round's row does."""
    settings = session.cfg.pseudo
    trainer = session.make_trainer(run_dir, show_progress=show_progress, trainer_cls=ConsistencyTrainer,
                                   unlabeled=images)
    trainer.fit()
    probs = teacher_probs(trainer, session.data, images)
    row = {"round": 1, "method": "online", **score_pseudo_labels(probs, settings.threshold, truth),
           "views_taken_share": trainer.taken / max(1, trainer.drawn)}  # over the whole run, not just the end
    if show_progress:
        acc = f", {row['pseudo_acc']:.4f} of them right" if row.get("pseudo_acc") is not None else ""
        note(f"online pseudo-labels: the final model is sure of {row['taken']} of {len(images)} unlabelled images{acc}")
    if run_dir:
        write_json(Path(run_dir) / "pseudo_labels.json", [row])
    return trainer, [row]
