"""The plain-PyTorch reference: the usual tutorial pipeline, written out by hand.

PIL images, torchvision per-image transforms (RandomCrop with padding, ToTensor, Normalize), a
DataLoader, fp32 NCHW; the same model, optimizer (AdamW, no decay on bias/norm), one-cycle schedule
(torch.optim.lr_scheduler.OneCycleLR), label smoothing, batch size, epochs and split as `deeprecipe train`'s
default (its numbers are read from deeprecipe's config defaults, so the two cannot drift apart).
Only the data source, the split indices and the model builder come from deeprecipe, so that both
sides train the same network on the same images.

    python benchmarks/reference.py --epochs 8 --json out.json

Timing: `seconds` counts training plus the per-epoch validation pass (as a tutorial does); the
per-epoch test evaluation that measures time-to-accuracy is excluded from the clock.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.common import emit, limit_parts, timed_epoch  # noqa: E402
from deeprecipe.config import resolve_config  # noqa: E402
from deeprecipe.data.sources import load_source
from deeprecipe.data.split import split_indices
from deeprecipe.models import create_model
from deeprecipe.train.budget import auto_batch_size


class DigitImages(Dataset):
    """A list of PIL images and their labels, transformed one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images = [Image.fromarray(a) for a in images]
        self.labels = [int(v) for v in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def build_loaders(batch_size: int | None, workers: int, limit: int | None, seed: int, epochs: int):
    ds = load_source("builtin:mnist5k")
    x, y = ds.images[:, 0].numpy(), ds.labels.numpy()
    parts = split_indices(y, 0.1, 0.2, seed)  # the default split: 3500 / 500 / 1000, stratified
    parts = limit_parts(parts, limit)
    batch_size = batch_size or auto_batch_size(len(parts["train"]), epochs)  # deeprecipe's default for this split
    train_x = x[parts["train"]].astype(np.float64) / 255.0
    mean, std = float(train_x.mean()), float(train_x.std())
    normalize = transforms.Normalize((mean,), (std,))
    train_tf = transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.ToTensor(), normalize])
    eval_tf = transforms.Compose([transforms.ToTensor(), normalize])
    make = lambda part, tf, shuffle, bs: DataLoader(  # noqa: E731
        DigitImages(x[parts[part]], y[parts[part]], tf), batch_size=bs, shuffle=shuffle, num_workers=workers,
        persistent_workers=workers > 0)
    return make("train", train_tf, True, batch_size), make("val", eval_tf, False, 512), make("test", eval_tf, False, 512)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train()
    return correct / max(1, total)


DEFAULTS = resolve_config(None, [])


def train(epochs: int = DEFAULTS.train.epochs, batch_size: int | None = DEFAULTS.train.batch_size,
          lr: float = DEFAULTS.optim.lr, weight_decay: float = DEFAULTS.optim.weight_decay, seed: int = 0,
          workers: int = 0, limit: int | None = None, threads: int | None = None, eval_test_every_epoch: bool = True,
          label_smoothing: float = DEFAULTS.regularize.label_smoothing) -> dict:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    train_loader, val_loader, test_loader = build_loaders(batch_size, workers, limit, seed, epochs)
    model = create_model("convnet", num_classes=10, in_chans=1)
    optimizer = build_optimizer(model, lr, weight_decay)
    # deeprecipe's one-cycle: rise 1/25 → 1 over the first 25% (cosine), fall to 1/(25·1e4); no momentum cycling.
    total_steps = epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                    pct_start=max(0.25, 2.5 / total_steps),  # ≥ 2 rising steps (smoke runs)
                                                    div_factor=25.0, final_div_factor=1e4, cycle_momentum=False)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def step(x, y):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    history, clock, data_seconds, step_seconds, seen = [], 0.0, 0.0, 0.0, 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        images, fetching, stepping = timed_epoch(train_loader, step)
        seen, data_seconds, step_seconds = seen + images, data_seconds + fetching, step_seconds + stepping
        val_acc = accuracy(model, val_loader)
        clock += time.perf_counter() - t0
        row = {"epoch": epoch + 1, "seconds": clock, "val_acc": val_acc}
        if eval_test_every_epoch:
            row["test_acc"] = accuracy(model, test_loader)  # off the clock
        history.append(row)
    return {"pipeline": "reference", "test_acc": accuracy(model, test_loader), "seconds": clock, "history": history,
            "train_images": seen, "train_images_per_second": seen / max(step_seconds, 1e-9),
            "data_seconds": data_seconds, "step_seconds": step_seconds, "threads": torch.get_num_threads(),
            "workers": workers, "precision": "fp32", "channels_last": False}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=DEFAULTS.train.epochs)
    ap.add_argument("--batch-size", type=int, default=DEFAULTS.train.batch_size, help="default: deeprecipe's for the split")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (smoke tests)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)
    result = train(args.epochs, args.batch_size, seed=args.seed, workers=args.workers, limit=args.limit,
                   threads=args.threads)
    emit(result, args.json)


if __name__ == "__main__":
    main()
