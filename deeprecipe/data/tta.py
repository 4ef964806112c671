"""Test-time augmentation: average the softmax over several views of each test image.

Views are built on whole uint8 batches; `LoadedRun.logits` resizes each view to the run's input
size, so crops are zoomed back up like at training time.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import DeepRecipeError

View = Callable[[torch.Tensor], torch.Tensor]
CROP_FRACTION = 0.875  # 28 of 32 pixels: the usual crop for 5/10-crop on small images


def _crop(top: float, left: float, frac: float) -> View:
    """A view cropping `frac` of each side at relative position (top, left) in 0..1."""
    def view(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
        y0, x0 = round((h - ch) * top), round((w - cw) * left)
        return x[..., y0:y0 + ch, x0:x0 + cw]
    return view


def _flipped(view: View) -> View:
    return lambda x: view(x).flip(-1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


FIVE_CROPS = [_crop(0, 0, CROP_FRACTION), _crop(0, 1, CROP_FRACTION), _crop(1, 0, CROP_FRACTION),
              _crop(1, 1, CROP_FRACTION), _crop(0.5, 0.5, CROP_FRACTION)]

TTA_VIEWS: dict[str, list[View]] = {
    "flip": [_identity, lambda x: x.flip(-1)],
    "5crop": FIVE_CROPS,
    "10crop": FIVE_CROPS + [_flipped(v) for v in FIVE_CROPS],
    # Centre crops at several zooms (each resized back to the input size), plus the whole image.
    "multiscale": [_identity, _crop(0.5, 0.5, 0.9), _crop(0.5, 0.5, 0.8)],
}


def tta_logits(loaded_run, images_uint8: torch.Tensor, name: str) -> torch.Tensor:
    """Log of the mean softmax over the views named by `name` (flip, 5crop, 10crop, multiscale)."""
    key = (name or "").strip().lower()
    if key not in TTA_VIEWS:
        raise DeepRecipeError(f"unknown test-time augmentation {name!r}", f"use one of: {', '.join(TTA_VIEWS)}")
    probs = None
    for view in TTA_VIEWS[key]:
        p = torch.softmax(loaded_run.logits(view(images_uint8).contiguous()), 1)
        probs = p if probs is None else probs + p
    return torch.log(probs / len(TTA_VIEWS[key]) + 1e-12)
