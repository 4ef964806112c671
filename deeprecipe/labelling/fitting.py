"""Train a model of a run's recipe on any chosen subset of an ImageSet, and score images with it.

Audit folds and pseudo-label rounds both need "train on these indices, predict those": this is the
one place that builds the PreparedData/Session for such a subset, through the public API.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..config import Config
from ..data.sources import ImageSet
from ..session import PreparedData, Session


def subset_data(ds: ImageSet, train_idx: np.ndarray, held_idx: np.ndarray | None = None) -> PreparedData:
    """A PreparedData whose train split is `train_idx` (stats from it alone) and test split `held_idx`."""
    train_idx = np.asarray(train_idx, dtype=np.int64)
    held = np.asarray(held_idx if held_idx is not None else [], dtype=np.int64)
    return PreparedData.from_splits(ds, {"train": train_idx, "val": np.array([], dtype=np.int64), "test": held})


def fit_subset(cfg: Config, data: PreparedData, session: Session | None = None):
    """Train a fresh model of `cfg` on data's train split, without writing a run folder; returns the trainer."""
    session = dataclasses.replace(session, cfg=cfg, data=data) if session else Session.create(cfg, data)
    trainer = session.make_trainer(None, show_progress=False)
    trainer.fit()
    return trainer


@torch.no_grad()
def predict_probs(trainer, data: PreparedData, part: str = "test") -> np.ndarray:
    """Softmax probabilities of a trained trainer's model over one split of `data`."""
    loader = data.loader(part, trainer.cfg, trainer.device)
    logits, _ = trainer.predict(loader)
    return torch.softmax(logits, 1).numpy() if logits.numel() else np.zeros((0, len(data.classes)), np.float32)


def with_epochs(cfg: Config, epochs: int | None) -> Config:
    """The same recipe with fewer (or more) epochs: audits may afford less than the full run."""
    if not epochs:
        return cfg
    data = cfg.to_dict()
    data["train"]["epochs"] = int(epochs)
    return Config.model_validate(data)
