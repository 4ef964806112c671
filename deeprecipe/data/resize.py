"""Resize policies: how images of any size become the model's square input.

crop (photos, as torchvision/timm train ImageNet): training takes a random-resized crop of
``image_size`` (area ``crop_scale``, aspect ``crop_ratio``) per sample; evaluation resizes the short side
to ``image_size / crop_pct`` and takes the centre ``image_size`` crop. pad: the whole image letterboxed.
squash: stretched to ``image_size`` (right for same-size small images such as digits).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .batchops import uniform

PHOTO_DEFAULT_SIZE = 224   # image_size under crop/pad when unset: the field's usual input
SMALL_SIDE = 64            # auto: folders of same-size images up to this side are squashed (digits, CIFAR)
HEADER_SAMPLE = 64         # files whose headers decide auto


def stored_size(image_size: int, crop_pct: float, policy: str) -> int:
    """Side of the cached square: the evaluation resize (image_size / crop_pct, floored as timm does)."""
    return int(math.floor(image_size / crop_pct)) if policy == "crop" else image_size


def photo_image_size(data_cfg) -> int:
    return int(data_cfg.image_size or PHOTO_DEFAULT_SIZE)


def resolve_policy(data_cfg, files: list[Path] | None = None) -> str:
    """crop/squash/pad as configured; auto → crop for folders of photos, squash for everything else."""
    if data_cfg.resize != "auto":
        return data_cfg.resize
    if files is None:
        return "squash"
    from PIL import Image
    step = max(1, len(files) // HEADER_SAMPLE)
    sizes = set()
    for f in files[::step][:HEADER_SAMPLE]:
        try:
            with Image.open(f) as im:  # reads the header only
                sizes.add(im.size)
        except Exception:  # unreadable files are skipped later, by name
            continue
    small_and_same = len(sizes) <= 1 and all(max(s) <= SMALL_SIDE for s in sizes)
    return "squash" if small_and_same else "crop"


def centre_view(stored: torch.Tensor, image_size: int) -> torch.Tensor:
    """The evaluation centre crops of a (N, C, S, S) store, as a view (no copy)."""
    s = stored.shape[-1]
    o = int(round((s - image_size) / 2.0))
    return stored[:, :, o:o + image_size, o:o + image_size]


def random_resized_crop(x: torch.Tensor, size: int | tuple[int, int], scale: tuple[float, float], ratio: tuple[float, float],
                        g: torch.Generator) -> torch.Tensor:
    """Per-sample random-resized crops of a float batch (B, C, S, S) to (B, C, size, size): one affine_grid
    and one grid_sample for the batch. Area fraction ∈ scale, aspect (w/h) log-uniform in ratio, clipped to the
    image, position uniform over where the crop fits — torchvision's RandomResizedCrop without its retry loop."""
    b, dev = x.shape[0], x.device
    area = uniform(*scale, b, g, dev)
    r = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1]), b, g, dev))
    w = torch.sqrt(area * r).clamp(max=1.0)        # fractions of the side
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=g, device=dev) * 2 - 1) * (1 - h)
    zero = torch.zeros(b, device=dev)
    theta = torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    out_h, out_w = (size, size) if isinstance(size, int) else size
    grid = F.affine_grid(theta.to(x.dtype), [b, x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
