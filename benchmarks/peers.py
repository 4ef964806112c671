"""Recipes people copy, written out plainly, on deeprecipe's default split of the built-in MNIST subset.

- `pytorch-example`: the PyTorch examples' MNIST recipe (examples/mnist/main.py): two 3×3 convs (32, 64),
  max-pool, dropout 0.25, a 9216→128 layer, dropout 0.5; Adadelta at lr 1.0; StepLR(step 1, γ 0.7);
  batch 64; 14 epochs; Normalize((0.1307,), (0.3081,)); no augmentation.
- `fastai-style`: fastai's `fit_one_cycle` defaults on deeprecipe's default ConvNet: Adam(β 0.9/0.99,
  eps 1e-5) with true weight decay 0.01, lr_max 1e-3, warm-up over 25% from lr/25 and cosine down to
  lr/(25·1e5), momentum cycled 0.95 → 0.85 → 0.95; batch 64; 5 epochs; the training split's mean/std.

Both use PIL images, per-image torchvision transforms and a DataLoader, as their authors' code does, fp32.
Test accuracy after every epoch is measured off the clock, so `benchmarks/run.py` can report the time
deeprecipe takes to reach each peer's final accuracy against the peer's own time to it.

    python benchmarks/peers.py --recipe pytorch-example --json out.json [--epochs N] [--limit N] [--threads N]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.common import emit, limit_parts, timed_epoch  # noqa: E402
from benchmarks.reference import DigitImages, accuracy  # noqa: E402
from deeprecipe.data.sources import load_source  # noqa: E402
from deeprecipe.data.split import split_indices  # noqa: E402
from deeprecipe.models import create_model  # noqa: E402


class ExampleNet(nn.Module):
    """The network of the PyTorch examples' MNIST script."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        return self.fc2(self.dropout2(F.relu(self.fc1(x))))


class FastaiOneCycle:
    """fastai's fit_one_cycle schedule for lr and Adam's β1, stepped once per batch."""

    def __init__(self, optimizer, lr_max: float, total: int, pct_start=0.25, div=25.0, div_final=1e5,
                 moms=(0.95, 0.85, 0.95)):
        self.opt, self.lr_max, self.total, self.pct, self.div, self.div_final, self.moms = (
            optimizer, lr_max, total, pct_start, div, div_final, moms)
        self.step_num = 0
        self.step()

    @staticmethod
    def _cos(start, end, pos):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pos))

    def step(self):
        pos = min(self.step_num / max(1, self.total - 1), 1.0)
        if pos < self.pct:
            p = pos / self.pct
            lr, mom = self._cos(self.lr_max / self.div, self.lr_max, p), self._cos(self.moms[0], self.moms[1], p)
        else:
            p = (pos - self.pct) / (1 - self.pct)
            lr = self._cos(self.lr_max, self.lr_max / (self.div * self.div_final), p)
            mom = self._cos(self.moms[1], self.moms[2], p)
        for g in self.opt.param_groups:
            g["lr"] = lr
            g["betas"] = (mom, g["betas"][1])
        self.step_num += 1


RECIPES = {
    "pytorch-example": {"epochs": 14, "batch_size": 64, "normalize": ((0.1307,), (0.3081,))},
    "fastai-style": {"epochs": 5, "batch_size": 64, "normalize": None},
}


def build_loaders(recipe: dict, limit: int | None, seed: int):
    ds = load_source("builtin:mnist5k")
    x, y = ds.images[:, 0].numpy(), ds.labels.numpy()
    parts = limit_parts(split_indices(y, 0.1, 0.2, seed), limit)  # the default split: 3500 / 500 / 1000
    if recipe["normalize"]:
        mean, std = recipe["normalize"]
    else:
        train_x = x[parts["train"]].astype(np.float64) / 255.0
        mean, std = (float(train_x.mean()),), (float(train_x.std()),)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    loader = lambda part, shuffle, bs: torch.utils.data.DataLoader(  # noqa: E731
        DigitImages(x[parts[part]], y[parts[part]], tf), batch_size=bs, shuffle=shuffle)
    return loader("train", True, recipe["batch_size"]), loader("test", False, 1000)


def build(name: str, steps_per_epoch: int, epochs: int):
    if name == "pytorch-example":
        model = ExampleNet()
        opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
        return model, opt, None, sched  # stepped per epoch
    model = create_model("convnet", num_classes=10, in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    return model, opt, FastaiOneCycle(opt, 1e-3, epochs * steps_per_epoch), None  # stepped per batch


def train(name: str, epochs: int | None = None, limit: int | None = None, threads: int | None = None,
          seed: int = 0) -> dict:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    recipe = RECIPES[name]
    epochs = epochs or recipe["epochs"]
    train_loader, test_loader = build_loaders(recipe, limit, seed)
    model, opt, per_batch, per_epoch = build(name, len(train_loader), epochs)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if per_batch:
            per_batch.step()

    history, clock, seen, step_seconds, data_seconds = [], 0.0, 0, 0.0, 0.0
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        images, fetching, stepping = timed_epoch(train_loader, step)
        seen, data_seconds, step_seconds = seen + images, data_seconds + fetching, step_seconds + stepping
        if per_epoch:
            per_epoch.step()
        clock += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "seconds": clock, "test_acc": accuracy(model, test_loader)})  # off the clock
    return {"pipeline": name, "test_acc": history[-1]["test_acc"], "seconds": clock, "history": history,
            "train_images": seen, "train_images_per_second": seen / max(step_seconds, 1e-9),
            "data_seconds": data_seconds, "step_seconds": step_seconds, "threads": torch.get_num_threads(),
            "precision": "fp32", "channels_last": False}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), required=True)
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's own")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (smoke tests)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)
    emit(train(args.recipe, args.epochs, args.limit, args.threads, args.seed), args.json)


if __name__ == "__main__":
    main()
