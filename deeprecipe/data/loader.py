"""TensorLoader: the whole uint8 split in memory (on the device), batches cut by index.

No per-image Python: a batch is one gather, one convert, one normalise, and batched augmentation
with per-sample random parameters. The epoch's order and augmentation randomness come from a
generator seeded by (seed, epoch), so resuming at an epoch boundary replays exactly.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import torch

from .resize import random_resized_crop

if TYPE_CHECKING:  # augment imports data.batchops; a runtime import here would be circular
    from ..augment import AugmentPipeline


class Normalizer:
    """uint8-scaled float batch → per-channel normalised, in channels_last when asked (the model's input)."""

    def __init__(self, mean, std, channels: int, device: torch.device, channels_last: bool = False):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, channels, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, channels, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class BatchLoader:
    """What every loader shares: the iteration contract (set_epoch, len, normalised (x, y) batches),
    the per-epoch seeded generator, and turning a uint8 batch into an augmented, normalised one."""

    def __init__(self, labels: torch.Tensor, batch_size: int, mean, std, channels: int,
                 shuffle: bool = False, augment: "AugmentPipeline | None" = None, device: str | torch.device = "cpu",
                 seed: int = 0, drop_last: bool = False, channels_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.device = torch.device(device)
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        self.normalize = Normalizer(mean, std, channels, self.device, channels_last)
        self.crop = None  # (float batch, generator) → cropped batch, before the augmentations (CropLoader)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        n = self.labels.shape[0]
        return n // self.world_size if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _generator(self, rank: int | None = None) -> torch.Generator:
        # Ranks draw their own augmentation parameters (rank offset) but share one permutation (rank 0's seed).
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1_000_003 + self.epoch + 7_919 * (self.rank if rank is None else rank))
        return g

    def order(self, g: torch.Generator) -> torch.Tensor:
        n = self.labels.shape[0]
        if self.world_size > 1:
            g = self._generator(rank=0)  # every rank must cut its shard from the same permutation
        idx = torch.randperm(n, generator=g, device=self.device) if self.shuffle else torch.arange(n, device=self.device)
        if self.world_size > 1:  # each rank takes its own equal-length shard of this epoch's order
            per = n // self.world_size
            idx = idx[self.rank * per:(self.rank + 1) * per]
        return idx

    def finish_batch(self, images_uint8: torch.Tensor, y: torch.Tensor, g: torch.Generator):
        """uint8 batch on the device → augmented (per-sample random), normalised float batch."""
        x = images_uint8.float().div_(255.0)
        if self.crop is not None:
            x = self.crop(x, g)
        if self.augment is not None:
            x, y = self.augment(x, y, g)
        return self.normalize(x), y


class TensorLoader(BatchLoader):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, mean, std, **kw):
        super().__init__(labels.to(torch.device(kw.get("device", "cpu"))), batch_size, mean, std, images.shape[1], **kw)
        self.images = images.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        idx = self.order(g)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            b = idx[start:start + self.batch_size]
            yield self.finish_batch(self.images[b], self.labels[b], g)


class CropLoader(BatchLoader):
    """Training batches of per-sample random-resized crops (data.resize=crop) drawn from the stored squares of
    a photo folder: one gather of uint8 rows, then one batched crop-and-resize — no per-image Python.
    `stored` stays where it is (in memory, or memory-mapped); only each batch's rows are read."""

    def __init__(self, stored: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, batch_size: int, mean, std,
                 size: int, scale: tuple[float, float], ratio: tuple[float, float], **kw):
        super().__init__(labels.to(torch.device(kw.get("device", "cpu"))), batch_size, mean, std, stored.shape[1], **kw)
        self.stored, self.rows = stored, rows.cpu()
        self.crop = lambda x, g: random_resized_crop(x, size, scale, ratio, g)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        idx = self.order(g)
        idx_cpu = idx.cpu()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            b = idx_cpu[start:start + self.batch_size]
            x = self.stored[self.rows[b]].to(self.device, non_blocking=True)
            yield self.finish_batch(x, self.labels[idx[start:start + self.batch_size]], g)
