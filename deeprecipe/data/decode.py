"""Decode one photo at reduced size, upright, as uint8 — never holding the full-resolution bitmap.

JPEGs are decoded with PIL's ``Image.draft``: libjpeg scales by 1/2, 1/4 or 1/8 in the DCT domain, so a
12-megapixel photo wanted at 146 px short side costs a 1/8-size decode. The EXIF orientation tag is
applied (phones store portrait photos sideways), then the image is resized with PIL's bilinear filter —
the filter torchvision's ``Resize`` uses on PIL images — so evaluation crops match torchvision's.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Decoded files, counted so tests (and curious users) can see that a cached folder is not decoded again.
DECODE_COUNT = {"files": 0}


def resized_size(w: int, h: int, short: int) -> tuple[int, int]:
    """(w, h) with the short side `short`, as torchvision's Resize(int) computes it."""
    if w <= h:
        return short, int(short * h / w)
    return int(short * w / h), short


def centre_offset(length: int, crop: int) -> int:
    """Top/left offset of a centre crop, rounded like torchvision's CenterCrop."""
    return int(round((length - crop) / 2.0))


def _to_array(im: Image.Image, channels: int) -> np.ndarray:
    """Any PIL mode (CMYK, palette, alpha, 16-bit gray, …) → uint8 (H, W, channels)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit/32-bit gray PNG and TIFF
        a = np.asarray(im, dtype=np.int64)
        top = 65535 if im.mode != "I" or a.max() > 255 else 255
        a = (a * 255 // max(1, top)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(a, mode="L")
    elif im.mode == "F":
        im = Image.fromarray(np.asarray(im).clip(0, 255).astype(np.uint8), mode="L")
    im = im.convert("RGB" if channels == 3 else "L")
    a = np.array(im, dtype=np.uint8)  # a writable copy: torch refuses read-only arrays
    return a[:, :, None] if a.ndim == 2 else a


def decode_reduced(path: str | Path, size: int, policy: str = "crop", channels: int = 3,
                   centre_crop: int | None = None) -> np.ndarray:
    """The photo at `path` as uint8 (size, size, channels), upright.

    crop: short side resized to `size`, then the centre `size`×`size` square (placed so a later centre crop
    of `centre_crop` pixels equals torchvision's Resize(size) + CenterCrop(centre_crop) of the whole photo);
    pad: long side resized to `size`, letterboxed with black; squash: stretched to size×size.
    Raises on unreadable files (callers skip and name them)."""
    with Image.open(path) as im:
        w, h = im.size
        if (im.getexif() or {}).get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w  # the draft request is in stored orientation, the target in upright orientation
        k = size / (max(w, h) if policy == "pad" else min(w, h))
        if im.format == "JPEG" and k < 1:
            want = (math.ceil(im.size[0] * k), math.ceil(im.size[1] * k))
            im.draft("RGB" if channels == 3 and im.mode not in ("L",) else im.mode, want)
        im = ImageOps.exif_transpose(im)
        im.load()
        DECODE_COUNT["files"] += 1
        if policy == "squash":
            out = im.resize((size, size), Image.BILINEAR) if im.size != (size, size) else im
            return _to_array(out, channels)
        if policy == "pad":
            nw, nh = max(1, round(w * k)), max(1, round(h * k))
            small = _to_array(im.resize((nw, nh), Image.BILINEAR), channels)
            out = np.zeros((size, size, channels), dtype=np.uint8)
            top, left = (size - nh) // 2, (size - nw) // 2
            out[top:top + nh, left:left + nw] = small
            return out
        nw, nh = resized_size(w, h, size)
        im = im.resize((nw, nh), Image.BILINEAR)
        inner = centre_crop or size
        # offset chosen so that the centre crop of the stored square is exactly torchvision's centre crop
        top = min(max(0, centre_offset(nh, inner) - centre_offset(size, inner)), nh - size)
        left = min(max(0, centre_offset(nw, inner) - centre_offset(size, inner)), nw - size)
        return _to_array(im.crop((left, top, left + size, top + size)), channels)
