"""Functional image ops on whole float batches (B, C, H, W) in 0..1, one parameter per sample.

Every parameter is a (B,) tensor on the batch's device, so a batch is transformed with a handful of
tensor ops and no Python loop over images. Augmentation ops and RandAugment are built on these.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)


def per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def uniform(lo: float, hi: float, n: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def random_sign(n: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g, device=device).float() * 2 - 1


def gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB batches; gray batches are returned as they are."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


# ------------------------------------------------------------------------------------------ geometry
def affine_theta(angle_deg: torch.Tensor, shear_x: torch.Tensor | None = None, shear_y: torch.Tensor | None = None,
                 tx: torch.Tensor | None = None, ty: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2, 3) sampling matrices for affine_grid: rotation, shear, translation (fractions of the
    size) and zoom per sample. The forward map is inverted because grid_sample pulls pixels."""
    b, dev = angle_deg.shape[0], angle_deg.device
    zero = torch.zeros(b, device=dev)
    shear_x = zero if shear_x is None else shear_x
    shear_y = zero if shear_y is None else shear_y
    tx = zero if tx is None else tx
    ty = zero if ty is None else ty
    scale = torch.ones(b, device=dev) if scale is None else scale
    a = angle_deg * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    one = torch.ones(b, device=dev)
    rot = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1),
                       torch.stack([zero, zero, one], 1)], 1)
    shear = torch.stack([torch.stack([one, shear_x, zero], 1), torch.stack([shear_y, one, zero], 1),
                         torch.stack([zero, zero, one], 1)], 1)
    move = torch.stack([torch.stack([scale, zero, 2 * tx], 1), torch.stack([zero, scale, 2 * ty], 1),
                        torch.stack([zero, zero, one], 1)], 1)
    forward = move @ rot @ shear
    return torch.linalg.inv(forward)[:, :2, :]


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample each image through its own (2, 3) matrix; outside pixels are black."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def box_masks(h: int, w: int, cy: torch.Tensor, cx: torch.Tensor, bh: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool masks of axis-aligned boxes centred at (cy, cx) pixels, clipped to the image."""
    rows = torch.arange(h, device=cy.device).view(1, h, 1)
    cols = torch.arange(w, device=cy.device).view(1, 1, w)
    top, left = (cy - bh / 2).view(-1, 1, 1), (cx - bw / 2).view(-1, 1, 1)
    bottom, right = (cy + bh / 2).view(-1, 1, 1), (cx + bw / 2).view(-1, 1, 1)
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return inside.unsqueeze(1)


# ------------------------------------------------------------------------------------------ colour
def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * per_sample(f)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    m = gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * per_sample(f) + m).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:  # a gray image has no saturation to change
        return x
    g = gray(x)
    return ((x - g) * per_sample(f) + g).clamp(0, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma plane of YIQ by `shift` turns (−0.5..0.5): a hue shift as one 3×3 matrix per sample."""
    if x.shape[1] == 1:
        return x
    rgb2yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                           dtype=x.dtype, device=x.device)
    yiq2rgb = torch.linalg.inv(rgb2yiq)
    a = shift * (2 * math.pi)
    cos, sin = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                       torch.stack([zero, sin, cos], 1)], 1)
    m = yiq2rgb @ rot @ rgb2yiq                                     # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) normalised 1-D Gaussian kernels, one sigma per sample."""
    r = torch.arange(size, device=sigma.device, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    return k / k.sum(1, keepdim=True)


def blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma: one grouped conv per axis for the whole batch."""
    b, c, h, w = x.shape
    k = gaussian_kernels(sigma, size).to(x.dtype).repeat_interleave(c, 0)  # (B·C, size)
    pad = size // 2
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect" if w > pad else "replicate"),
                    k.view(b * c, 1, 1, size), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect" if h > pad else "replicate"),
                    k.view(b * c, 1, size, 1), groups=b * c)
    return flat.view(b, c, h, w)


def adjust_sharpness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with a smoothed copy: f < 1 blurs, f > 1 sharpens (PIL's ImageEnhance.Sharpness)."""
    smooth = blur(x, torch.full((x.shape[0],), 0.8, device=x.device), 3)
    return (smooth + (x - smooth) * per_sample(f)).clamp(0, 1)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= per_sample(threshold), 1 - x, x)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    levels = per_sample(2.0 ** bits)
    return torch.floor(x * levels).clamp(max=levels - 1) / (levels - 1).clamp(min=1)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 1e-6, (x - lo) / span.clamp(min=1e-6), x)
