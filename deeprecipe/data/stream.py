"""StreamLoader: image folders too large for memory, decoded in DataLoader workers (torchvision.io).

A streamed set is an ImageSet whose `images` is a FileImages: the file paths plus the target
(C, H, W). It indexes like the uint8 tensor it stands for, so splitting works unchanged; batches are
decoded by workers, collated as uint8, moved to the device, then augmented and normalised exactly as
TensorLoader does (same per-epoch generator, so the same order and augmentation randomness).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DeepRecipeError
from ..utils import note
from .loader import BatchLoader
from .sources import ImageSet, _check_usable, conform, decode_image_file, scan_folder

SIZE_SAMPLE = 32        # files decoded to estimate the decoded size of a folder
STATS_SAMPLE = 2000     # images decoded for mean/std (and PCA lighting) of a streamed training split


class FileImages:
    """Stand-in for a uint8 (N, C, H, W) tensor held as files; each decodes to (C, H, W)."""

    def __init__(self, paths: list[str], channels: int, size: tuple[int, int]):
        self.paths = list(paths)
        self.channels = channels
        self.size = tuple(size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.channels, *self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx) -> "FileImages":
        if isinstance(idx, slice):
            chosen = self.paths[idx]
        else:
            chosen = [self.paths[int(i)] for i in np.asarray(idx).reshape(-1)]
        return FileImages(chosen, self.channels, self.size)

    def decode(self, i: int) -> torch.Tensor:
        try:
            img = decode_image_file(Path(self.paths[i]))
        except DeepRecipeError as err:  # the folder changed since it was scanned, or the file is broken
            raise DeepRecipeError(f"{self.paths[i]}: {err.message.partition(': ')[2]}",
                                  "remove or replace the file, or use data.loader=memory to skip unreadable files") from None
        return conform(img[None], self.channels, self.size)[0]

    def decode_all(self) -> torch.Tensor:
        """Every image as one uint8 tensor: for a split small enough to hold (evaluation)."""
        return self.stats_sample(limit=max(1, len(self)))

    def stats_sample(self, limit: int = STATS_SAMPLE) -> torch.Tensor:
        """An evenly spaced decoded subsample: enough for mean/std and colour statistics."""
        step = max(1, len(self) // limit)
        return torch.stack([self.decode(i) for i in range(0, len(self), step)]) if len(self) else \
            torch.empty((0, *self.shape[1:]), dtype=torch.uint8)


def estimate_decoded_bytes(files: list[Path], sample: int = SIZE_SAMPLE) -> tuple[int, int, tuple[int, int]]:
    """(bytes the decoded set would take, channels, commonest size), from a few decoded files."""
    step = max(1, len(files) // sample)
    shapes = []
    for f in files[::step][:sample]:
        try:
            shapes.append(tuple(decode_image_file(f).shape))
        except Exception:  # unreadable samples do not count towards the estimate
            continue
    if not shapes:
        raise DeepRecipeError(f"none of {min(sample, len(files))} sampled files could be decoded", "check the image folder")
    mean_numel = float(np.mean([c * h * w for c, h, w in shapes]))
    channels = 3 if any(s[0] == 3 for s in shapes) else 1
    size = Counter(s[1:] for s in shapes).most_common(1)[0][0]
    return int(mean_numel * len(files)), channels, size


def open_streamed(data_cfg) -> ImageSet | None:
    """A streamed ImageSet when data.loader asks for it (stream, or auto with a folder whose decoded
    size exceeds data.memory_limit_mb); None means: read the set into memory as usual."""
    spec = str(data_cfg.spec).strip()
    is_folder = Path(spec).expanduser().is_dir()
    if data_cfg.loader == "memory" or (data_cfg.loader == "auto" and not is_folder):
        return None
    if not is_folder:
        raise DeepRecipeError(f"data.loader=stream needs an image folder, but {spec!r} is not one",
                              "use data.loader=auto or memory for this spec")
    scan = scan_folder(spec)
    nbytes, channels, size = estimate_decoded_bytes(scan.files)
    if data_cfg.loader == "auto" and nbytes <= data_cfg.memory_limit_mb * 2**20:
        return None
    channels = data_cfg.channels or channels
    size = (data_cfg.image_size,) * 2 if data_cfg.image_size else size
    note(f"note: streaming {len(scan.files)} images from {scan.root} (≈{nbytes / 2**20:,.0f} MB decoded"
         f"{'' if data_cfg.loader == 'stream' else f' > data.memory_limit_mb={data_cfg.memory_limit_mb:g}'})")
    ds = ImageSet(images=FileImages([str(f) for f in scan.files], channels, size),  # type: ignore[arg-type]
                  labels=torch.tensor(scan.labels, dtype=torch.int64), classes=scan.classes,
                  splits=scan.given_splits(), paths=[str(f) for f in scan.files], name=str(scan.root))
    _check_usable(ds, spec)
    return ds


class _FileDataset(Dataset):
    def __init__(self, images: FileImages, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images.decode(i), self.labels[i]


class StreamLoader(BatchLoader):
    """Same contract as TensorLoader (set_epoch, len, normalised (x, y)); decoding happens in workers."""

    def __init__(self, images: FileImages, labels: torch.Tensor, batch_size: int, mean, std, workers: int = 0, **kw):
        super().__init__(labels.cpu(), batch_size, mean, std, images.channels, **kw)
        self.dataset = _FileDataset(images, self.labels)
        self.workers = workers

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()
        order = self.order(g).cpu()[: len(self) * self.batch_size].tolist()
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=order, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", drop_last=self.drop_last,
                            persistent_workers=False)
        for x, y in loader:
            yield self.finish_batch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), g)
