"""`deeprecipe data inspect` and `deeprecipe augment preview`: look at a dataset before training on it."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import encode_png
from torchvision.utils import make_grid

from ..augment import build_pipeline
from ..errors import DeepRecipeError
from ..utils import atomic_write_bytes
from .leakage import leak_report
from .sources import ImageSet, load_source
from .stats import channel_stats

PREVIEW_MIN_SIDE = 64  # small images (MNIST, CIFAR) are enlarged, pixel for pixel, to stay visible


def save_grid(images_uint8: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Write a uint8 (N, C, H, W) batch as one PNG grid (torchvision's make_grid), atomically."""
    x = images_uint8
    if x.shape[-1] < PREVIEW_MIN_SIDE:
        factor = -(-PREVIEW_MIN_SIDE // x.shape[-1])
        x = F.interpolate(x.float(), scale_factor=factor, mode="nearest").to(torch.uint8)
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=128)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DeepRecipeError(f"{path}: the preview is a PNG file", "give --out a path ending in .png")
    atomic_write_bytes(path, encode_png(grid.contiguous()).numpy().tobytes())
    return path


def one_per_class(ds: ImageSet, count: int) -> torch.Tensor:
    """Indices of `count` images cycling through the classes, so every class shows up."""
    per_class = [np.flatnonzero(ds.labels.numpy() == c) for c in range(ds.num_classes)]
    picks: list[int] = []
    for k in range(max((len(p) for p in per_class), default=0)):
        for p in per_class:
            if k < len(p) and len(picks) < count:
                picks.append(int(p[k]))
    return torch.tensor(picks, dtype=torch.long)


def folder_histograms(paths: list[str]) -> dict:
    """Original image sizes and modes, read from file headers only (PIL opens lazily)."""
    sizes, modes = Counter(), Counter()
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes[f"{im.size[0]}x{im.size[1]}"] += 1
                modes[im.mode] += 1
        except Exception:  # unreadable: already listed under 'skipped'
            continue
    return {"sizes": dict(sizes.most_common(20)), "modes": dict(modes.most_common())}


def inspect_dataset(spec: str, out_dir: str | Path | None = None, grid: int = 40) -> dict:
    ds = load_source(spec)
    mean, std = channel_stats(ds.images)
    counts = torch.bincount(ds.labels, minlength=len(ds.classes)).tolist()
    present = [c for c in counts if c]
    out = {"spec": spec, "images": len(ds), "classes": len(ds.classes), "shape": list(ds.shape),
           "class_counts": dict(zip(ds.classes, counts)),
           "imbalance": max(present) / min(present) if present else None,  # largest / smallest class
           "mean": mean, "std": std,
           "skipped": [{"file": f, "reason": r} for f, r in ds.skipped]}
    if ds.splits:
        out["given_split"] = {k: int(len(v)) for k, v in ds.splits.items()}
    if ds.paths:
        out["files"] = folder_histograms(ds.paths)
    out["duplicates"] = leak_report(ds.images, ds.splits)
    if out_dir:
        out["sample_grid"] = str(save_grid(ds.images[one_per_class(ds, grid)], Path(out_dir) / "samples.png",
                                           nrow=min(len(ds.classes), 10)))
    return out


def augment_preview(spec: str, augs: list[str], out: str | Path = "augment_preview.png", count: int = 8,
                    copies: int = 4, seed: int = 0) -> Path:
    """A grid: the first row holds `count` originals, each further row one augmented copy of them."""
    ds = load_source(spec)
    pipeline = build_pipeline(augs, ds.num_classes, fit_images=ds.images)
    if pipeline is None:
        raise DeepRecipeError("no augmentation given", "add --aug OP, e.g. --aug crop --aug jitter")
    idx = one_per_class(ds, count)
    originals, labels = ds.images[idx], ds.labels[idx]
    g = torch.Generator().manual_seed(seed)
    rows = [originals]
    for _ in range(copies):
        x, _ = pipeline(originals.float() / 255, labels, g)
        rows.append((x * 255).round().clamp(0, 255).to(torch.uint8))
    return save_grid(torch.cat(rows), out, nrow=len(idx))
