"""Shared pieces for experiments: a subset of the built-in digits and a quiet one-call training run."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..config import resolve_config
from ..data.sources import ImageSet, load_source
from ..models.summary import count_params
from ..session import Session, prepare_data


def digits_subset(per_class: int | None = None, classes: list[int] | None = None, seed: int = 0) -> ImageSet:
    """builtin:mnist5k, optionally `per_class` images of each of `classes` (labels re-indexed)."""
    ds = load_source("builtin:mnist5k")
    labels = ds.labels.numpy()
    keep_classes = classes if classes is not None else list(range(10))
    rng = np.random.default_rng(seed)
    idx = []
    for c in keep_classes:
        pool = np.flatnonzero(labels == c)
        idx.append(pool if per_class is None else rng.choice(pool, size=min(per_class, len(pool)), replace=False))
    idx = np.sort(np.concatenate(idx))
    remap = {c: i for i, c in enumerate(keep_classes)}
    return ImageSet(images=ds.images[idx], labels=torch.tensor([remap[int(l)] for l in labels[idx]]),
                    classes=[str(c) for c in keep_classes], name="builtin:mnist5k subset")


def per_class_split(train: int, val: int, test: int, seed: int = 0) -> ImageSet:
    """builtin:mnist5k with a given split of exactly `train`/`val`/`test` images per class, drawn by `seed`
    (the rest of the digits unused): few training images, and held-out sets large enough to measure a gap."""
    ds = load_source("builtin:mnist5k")
    labels = ds.labels.numpy()
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for c in range(len(ds.classes)):
        pool = rng.permutation(np.flatnonzero(labels == c))
        if len(pool) < train + val + test:
            raise ValueError(f"class {c} has {len(pool)} images, fewer than {train + val + test}")
        for name, (lo, hi) in (("train", (0, train)), ("val", (train, train + val)), ("test", (train + val, train + val + test))):
            parts[name].append(pool[lo:hi])
    splits = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    return ImageSet(ds.images, ds.labels, ds.classes, splits=splits,
                    name=f"builtin:mnist5k, {train}/{val}/{test} per class")


def downsampled(ds: ImageSet, side: int) -> ImageSet:
    """The same set with each image averaged down to side × side pixels (area interpolation, uint8):
    fewer pixels make the quick versions of the conv experiments cheaper per step."""
    small = F.interpolate(ds.images.float(), size=(side, side), mode="area").round().clamp(0, 255).to(torch.uint8)
    return ImageSet(small, ds.labels, ds.classes, splits=ds.splits, name=f"{ds.name}, {side}×{side}")


def evaluate_clean(res: dict, split: str = "train") -> dict[str, float]:
    """Accuracy and cross-entropy of the trained net on a split seen without augmentation (dropout off): the
    honest training numbers, not the running ones measured while the net trained on augmented, dropped-out
    batches (and with label smoothing in the loss)."""
    session, trainer = res["session"], res["trainer"]
    loader = session.data.loader(split, session.cfg, session.device, augment=False, channels_last=session.channels_last)
    return trainer.evaluate(loader)


# One thread unless the caller says otherwise: these nets are small, and on a few shared cores one thread
# per run is usually fastest (no oversubscription).
DEFAULTS = ["train.threads=1"]


def train_quietly(ds: ImageSet, overrides: list[str], hooks: dict | None = None) -> dict:
    """Train once with the given overrides; returns history, final test accuracy, parameter count and seconds."""
    cfg = resolve_config(None, DEFAULTS + overrides)
    session = Session.create(cfg, prepare_data(cfg, ds))
    trainer = session.make_trainer(None, show_progress=False)
    for name, fns in (hooks or {}).items():
        trainer.hooks[name].extend(fns)
    t0 = time.perf_counter()
    state = trainer.fit()
    seconds = time.perf_counter() - t0
    test = trainer.evaluate(session.data.loader("test", cfg, session.device, channels_last=session.channels_last))
    n_train = session.data.sizes()["train"]
    return {"history": state.history, "test_acc": test.get("acc"), "seconds": seconds,
            "params": count_params(trainer.model), "train_images": n_train,
            "steps_per_epoch": len(trainer.train_loader), "trainer": trainer, "session": session}
