"""Per-channel mean/std, computed from the TRAINING split only (no peeking at val/test)."""
from __future__ import annotations

import torch


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and std per channel of uint8 (N, C, H, W) images, on the 0..1 scale, in float64 chunks."""
    if hasattr(images, "stats_sample"):  # a streamed set: an evenly spaced decoded subsample
        images = images.stats_sample()
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        return [0.5] * c, [0.25] * c
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    std = var.sqrt().clamp_min(1e-3)  # a constant channel must not divide by zero
    return mean.tolist(), std.tolist()
