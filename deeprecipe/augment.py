"""Batched augmentation with per-sample random parameters, and a registry of ops.

An op takes a float batch (B, C, H, W) in 0..1 and a torch.Generator and returns a batch of the same
shape; every sample draws its own parameters. Mixing ops (MixUp, CutMix) also take the labels and
return soft targets. Ops are written as strings: ``"hflip"``, ``"translate:4"``,
``"hflip:p=0.5"``, ``"cutout:size=8,p=0.5"`` — a bare value sets the op's first parameter.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data.batchops import (adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, adjust_sharpness,
                            affine_theta, autocontrast, blur, box_masks, per_sample, posterize, random_sign,
                            solarize, uniform, warp)
from .data.resize import random_resized_crop
from .errors import DeepRecipeError, did_you_mean

_OPS: dict[str, Callable[..., "Op"]] = {}


def register_augment(name: str):
    def deco(cls):
        _OPS[name] = cls
        cls.op_name = name
        return cls
    return deco


def list_augments() -> list[str]:
    return sorted(_OPS)


class Op:
    """Base for per-sample ops. Subclasses implement `apply(x, g)`; `p` is the chance per sample."""
    op_name = "op"
    mixes_labels = False
    needs_fit = False  # True: the op learns from the train images (fit(images_uint8)) before use

    def __init__(self, p: float = 1.0):
        if not 0.0 <= p <= 1.0:
            raise DeepRecipeError(f"augmentation {self.op_name}: p={p} is not a probability", "use 0 ≤ p ≤ 1")
        self.p = p

    def chosen(self, n: int, g: torch.Generator, device) -> torch.Tensor:
        """Bool mask (n,) of the samples this op applies to."""
        if self.p >= 1.0:
            return torch.ones(n, dtype=torch.bool, device=device)
        return torch.rand(n, generator=g, device=device) < self.p

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        mask = self.chosen(x.shape[0], g, x.device)
        out = self.apply(x, g)
        return torch.where(mask.view(-1, 1, 1, 1), out, x)

    def apply(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.op_name}({', '.join(f'{k}={v}' for k, v in vars(self).items())})"


@register_augment("hflip")
class HFlip(Op):
    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def apply(self, x, g):
        return x.flip(-1)


@register_augment("vflip")
class VFlip(Op):
    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def apply(self, x, g):
        return x.flip(-2)


@register_augment("translate")
class Translate(Op):
    """Shift each image by its own random (dx, dy) in [-pad, pad] pixels, filling with zeros.

    Equivalent to zero-padding by `pad` and taking a random crop of the original size: one pad for the batch,
    then one window per image stacked in one copy — at 224 px 7× faster on a CPU than one advanced-indexing
    gather over every pixel (1.2 vs 0.18 ms an image), and no slower at 28 px.
    """

    def __init__(self, pad: int = 4, p: float = 1.0):
        super().__init__(p)
        if pad < 0:
            raise DeepRecipeError(f"augmentation translate: pad={pad} is negative", "use pad ≥ 0")
        self.pad = int(pad)

    def apply(self, x, g):
        if self.pad == 0:
            return x
        b, c, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        dx = torch.randint(0, 2 * p + 1, (b,), generator=g, device=x.device)
        dy = torch.randint(0, 2 * p + 1, (b,), generator=g, device=x.device)
        return torch.stack([padded[i, :, top:top + h, left:left + w]
                            for i, (left, top) in enumerate(zip(dx.tolist(), dy.tolist()))])


def _pair(value, name: str, lo_default: float | None = None) -> tuple[float, float]:
    """A range parameter: (lo, hi) as given, or a single v meaning (lo_default or −v, v)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] > value[1]:
            raise DeepRecipeError(f"augmentation {name}: range {value} is not lo-hi", "write a range as lo-hi, e.g. 0.08-1")
        return float(value[0]), float(value[1])
    v = float(value)
    return (lo_default if lo_default is not None else -v, v)


def _factor_range(value, name: str) -> tuple[float, float]:
    """Jitter strength s → factors in [max(0, 1−s), 1+s], as torchvision's ColorJitter."""
    if isinstance(value, (tuple, list)):
        return _pair(value, name)
    s = float(value)
    if s < 0:
        raise DeepRecipeError(f"augmentation {name}: strength {s} is negative", "use a strength ≥ 0")
    return max(0.0, 1 - s), 1 + s


@register_augment("crop")
class RandomResizedCrop(Op):
    """Crop a random area fraction (`scale`) and aspect ratio (`ratio`) per sample and resize it back
    to the batch's size (`data.resize.random_resized_crop`)."""

    def __init__(self, scale=(0.35, 1.0), ratio=(0.75, 1.3333), p: float = 1.0):
        super().__init__(p)
        self.scale = _pair(scale, "crop scale", 0.0)
        self.ratio = _pair(ratio, "crop ratio", 1.0)
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or self.ratio[0] <= 0:
            raise DeepRecipeError(f"augmentation crop: scale={scale} ratio={ratio}", "use 0 < scale ≤ 1 and ratio > 0")

    def apply(self, x, g):
        return random_resized_crop(x, tuple(x.shape[-2:]), self.scale, self.ratio, g)


@register_augment("affine")
class RandomAffine(Op):
    """Rotation (±degrees), translation (± fraction of the size), zoom (scale range) and shear per sample."""

    def __init__(self, degrees: float = 15.0, translate: float = 0.1, scale=(0.9, 1.1), shear: float = 0.1,
                 p: float = 1.0):
        super().__init__(p)
        self.degrees, self.translate, self.shear = float(degrees), float(translate), float(shear)
        self.scale = _pair(scale, "affine scale", 1.0)

    def apply(self, x, g):
        b, dev = x.shape[0], x.device
        theta = affine_theta(uniform(-self.degrees, self.degrees, b, g, dev),
                             uniform(-self.shear, self.shear, b, g, dev), uniform(-self.shear, self.shear, b, g, dev),
                             uniform(-self.translate, self.translate, b, g, dev),
                             uniform(-self.translate, self.translate, b, g, dev), uniform(*self.scale, b, g, dev))
        return warp(x, theta)


@register_augment("rotate")
class RandomRotate(RandomAffine):
    def __init__(self, degrees: float = 15.0, p: float = 1.0):
        super().__init__(degrees=degrees, translate=0.0, scale=(1.0, 1.0), shear=0.0, p=p)


@register_augment("shear")
class RandomShear(RandomAffine):
    def __init__(self, shear: float = 0.2, p: float = 1.0):
        super().__init__(degrees=0.0, translate=0.0, scale=(1.0, 1.0), shear=shear, p=p)


class _ColourOp(Op):
    """Scales one colour property by a random factor per sample."""
    adjust = staticmethod(adjust_brightness)

    def __init__(self, strength=0.4, p: float = 1.0):
        super().__init__(p)
        self.range = _factor_range(strength, self.op_name)

    def apply(self, x, g):
        return self.adjust(x, uniform(*self.range, x.shape[0], g, x.device))


@register_augment("brightness")
class Brightness(_ColourOp):
    adjust = staticmethod(adjust_brightness)


@register_augment("contrast")
class Contrast(_ColourOp):
    adjust = staticmethod(adjust_contrast)


@register_augment("saturation")
class Saturation(_ColourOp):
    adjust = staticmethod(adjust_saturation)


@register_augment("hue")
class Hue(Op):
    """Hue shift of up to ±`shift` turns (0..0.5); grayscale batches pass through unchanged."""

    def __init__(self, shift: float = 0.05, p: float = 1.0):
        super().__init__(p)
        if not 0 <= shift <= 0.5:
            raise DeepRecipeError(f"augmentation hue: shift={shift}", "use 0 ≤ shift ≤ 0.5 (turns of the colour wheel)")
        self.shift = float(shift)

    def apply(self, x, g):
        return adjust_hue(x, uniform(-self.shift, self.shift, x.shape[0], g, x.device))


@register_augment("jitter")
class ColorJitter(Op):
    """Brightness, contrast, saturation and hue jitter in one op (torchvision's ColorJitter, batched)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0,
                 p: float = 1.0):
        super().__init__(p)
        self.parts = [Brightness(brightness), Contrast(contrast), Saturation(saturation)] + ([Hue(hue)] if hue else [])

    def apply(self, x, g):
        for part in self.parts:
            x = part.apply(x, g)
        return x


@register_augment("lighting")
class PCALighting(Op):
    """AlexNet's PCA colour noise: add Σ αᵢ λᵢ vᵢ with αᵢ ~ N(0, std) along the train set's RGB
    eigenvectors. Gray sets have one 'eigenvector', so it acts as brightness noise."""
    needs_fit = True

    def __init__(self, std: float = 0.1, p: float = 1.0):
        super().__init__(p)
        self.std = float(std)
        self.eigvals: torch.Tensor | None = None
        self.eigvecs: torch.Tensor | None = None

    def fit(self, images_uint8: torch.Tensor, max_pixels: int = 2_000_000) -> "PCALighting":
        if hasattr(images_uint8, "stats_sample"):  # a streamed set: a decoded subsample
            images_uint8 = images_uint8.stats_sample()
        c = images_uint8.shape[1]
        pixels = images_uint8.permute(0, 2, 3, 1).reshape(-1, c)
        if pixels.shape[0] > max_pixels:  # an even subsample is plenty for a 3×3 covariance
            pixels = pixels[:: pixels.shape[0] // max_pixels + 1]
        px = pixels.to(torch.float64) / 255.0
        cov = torch.atleast_2d(torch.cov(px.T))
        vals, vecs = torch.linalg.eigh(cov)
        self.eigvals, self.eigvecs = vals.clamp_min(0).float(), vecs.float()
        return self

    def apply(self, x, g):
        if self.eigvals is None:  # no train images were given: use this batch's colours
            self.fit((x * 255).round().to(torch.uint8).cpu())
        vals, vecs = self.eigvals.to(x.device), self.eigvecs.to(x.device)
        alpha = torch.randn(x.shape[0], vals.numel(), generator=g, device=x.device) * self.std
        shift = (alpha * vals.sqrt()) @ vecs.T               # (B, C); sqrt: λ are variances of 0..1 pixels
        return (x + shift.view(x.shape[0], -1, 1, 1)).clamp(0, 1)


@register_augment("blur")
class GaussianBlur(Op):
    def __init__(self, sigma=(0.1, 1.5), kernel: int = 5, p: float = 0.5):
        super().__init__(p)
        self.sigma = _pair(sigma, "blur sigma", 0.1)
        if kernel < 3 or kernel % 2 == 0:
            raise DeepRecipeError(f"augmentation blur: kernel={kernel}", "use an odd kernel size ≥ 3")
        if self.sigma[0] <= 0:
            raise DeepRecipeError(f"augmentation blur: sigma={sigma}", "sigma must be > 0")
        self.kernel = int(kernel)

    def apply(self, x, g):
        return blur(x, uniform(*self.sigma, x.shape[0], g, x.device), self.kernel)


@register_augment("cutout")
class Cutout(Op):
    """Black out one size×size square per sample, centred anywhere in the image (DeVries & Taylor)."""

    def __init__(self, size: int = 8, p: float = 1.0):
        super().__init__(p)
        if size < 1:
            raise DeepRecipeError(f"augmentation cutout: size={size}", "use a square size ≥ 1 pixel")
        self.size = int(size)

    def apply(self, x, g):
        b, _, h, w = x.shape
        cy = torch.randint(0, h, (b,), generator=g, device=x.device).float() + 0.5
        cx = torch.randint(0, w, (b,), generator=g, device=x.device).float() + 0.5
        side = torch.full((b,), float(self.size), device=x.device)
        return x.masked_fill(box_masks(h, w, cy, cx, side, side), 0.0)


@register_augment("erase")
class RandomErasing(Op):
    """Replace a random rectangle (area fraction `scale`, aspect `ratio`) with noise (Zhong et al.)."""

    def __init__(self, scale=(0.02, 0.33), ratio=(0.3, 3.3), p: float = 0.5):
        super().__init__(p)
        self.scale = _pair(scale, "erase scale", 0.0)
        self.ratio = _pair(ratio, "erase ratio", 1.0)

    def apply(self, x, g):
        b, _, h, w = x.shape
        dev = x.device
        area = uniform(*self.scale, b, g, dev) * h * w
        r = torch.exp(uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), b, g, dev))
        bh, bw = torch.sqrt(area * r).clamp(max=h), torch.sqrt(area / r).clamp(max=w)
        cy = bh / 2 + torch.rand(b, generator=g, device=dev) * (h - bh)
        cx = bw / 2 + torch.rand(b, generator=g, device=dev) * (w - bw)
        noise = torch.rand(x.shape, generator=g, device=dev, dtype=x.dtype)
        return torch.where(box_masks(h, w, cy, cx, bh, bw), noise, x)


# ------------------------------------------------------------------------------------------ label mixing
def _beta(alpha: float, n: int, g: torch.Generator, device) -> torch.Tensor:
    """Beta(α, α) draws reproducible from the torch generator (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g, device=device).item())
    lam = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.from_numpy(lam).float().to(device)


def soft_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return y.float() if y.ndim == 2 else F.one_hot(y, num_classes).float()


class _Mixer(Op):
    mixes_labels = True

    def __init__(self, alpha: float = 1.0, p: float = 1.0):
        super().__init__(p)
        if alpha <= 0:
            raise DeepRecipeError(f"augmentation {self.op_name}: alpha={alpha}", "alpha must be > 0")
        self.alpha = float(alpha)

    def __call__(self, x, g):  # mixers need labels: they run through mix(), from the pipeline
        raise DeepRecipeError(f"{self.op_name} mixes labels", "use it inside an AugmentPipeline")

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, g: torch.Generator):
        b = x.shape[0]
        partner = torch.randperm(b, generator=g, device=x.device)
        lam = _beta(self.alpha, b, g, x.device)
        lam = torch.where(self.chosen(b, g, x.device), lam, torch.ones_like(lam))
        x, lam = self.blend(x, x[partner], lam, g)
        t = soft_targets(y, num_classes)
        return x, lam.view(-1, 1) * t + (1 - lam.view(-1, 1)) * t[partner]


@register_augment("mixup")
class MixUp(_Mixer):
    """x = λ·x_i + (1−λ)·x_j, targets mixed the same way, λ ~ Beta(α, α) per sample (Zhang et al.)."""

    def __init__(self, alpha: float = 0.2, p: float = 1.0):
        super().__init__(alpha, p)

    def blend(self, x, other, lam, g):
        return per_sample(lam) * x + (1 - per_sample(lam)) * other, lam


@register_augment("cutmix")
class CutMix(_Mixer):
    """Paste a box from a partner image; the target weight is the area actually kept (Yun et al.)."""

    def blend(self, x, other, lam, g):
        b, _, h, w = x.shape
        cut = torch.sqrt(1 - lam)
        cy = torch.rand(b, generator=g, device=x.device) * h
        cx = torch.rand(b, generator=g, device=x.device) * w
        mask = box_masks(h, w, cy, cx, cut * h, cut * w)
        kept = 1 - mask.float().mean(dim=(1, 2, 3))
        return torch.where(mask, other, x), kept


# ------------------------------------------------------------------------------------------ RandAugment
def _ra_affine(kind: str):
    def op(x, m):
        zero = torch.zeros_like(m)
        args = {"rotate": (m * 30, None, None, None, None), "shear_x": (zero, m * 0.3, None, None, None),
                "shear_y": (zero, None, m * 0.3, None, None), "translate_x": (zero, None, None, m * 0.3, None),
                "translate_y": (zero, None, None, None, m * 0.3)}[kind]
        return warp(x, affine_theta(*args))
    return op


# Each takes the batch and a signed magnitude in −1..1 per sample (RandAugment's M/30 with a random sign).
RANDAUGMENT_OPS = {
    "identity": lambda x, m: x,
    "rotate": _ra_affine("rotate"),
    "shear_x": _ra_affine("shear_x"),
    "shear_y": _ra_affine("shear_y"),
    "translate_x": _ra_affine("translate_x"),
    "translate_y": _ra_affine("translate_y"),
    "brightness": lambda x, m: adjust_brightness(x, 1 + 0.9 * m),
    "contrast": lambda x, m: adjust_contrast(x, 1 + 0.9 * m),
    "color": lambda x, m: adjust_saturation(x, 1 + 0.9 * m),
    "sharpness": lambda x, m: adjust_sharpness(x, 1 + 0.9 * m),
    "solarize": lambda x, m: solarize(x, 1 - m.abs()),
    "posterize": lambda x, m: posterize(x, 8 - (4 * m.abs()).round()),
    "autocontrast": lambda x, m: autocontrast(x),
}


@register_augment("randaugment")
class RandAugment(Op):
    """N ops per sample drawn uniformly from RANDAUGMENT_OPS at magnitude M (0..30) (Cubuk et al.).

    Each round draws one op index per sample; each op then runs once on the samples that drew it.
    """

    def __init__(self, n: int = 2, m: float = 9.0, p: float = 1.0):
        super().__init__(p)
        if n < 1 or not 0 <= m <= 30:
            raise DeepRecipeError(f"augmentation randaugment: n={n} m={m}", "use n ≥ 1 and 0 ≤ m ≤ 30")
        self.n, self.m = int(n), float(m)
        self.names = list(RANDAUGMENT_OPS)

    def apply(self, x, g):
        b, dev = x.shape[0], x.device
        x = x.clone()
        for _ in range(self.n):
            pick = torch.randint(0, len(self.names), (b,), generator=g, device=dev)
            mag = random_sign(b, g, dev) * (self.m / 30.0)
            for k, name in enumerate(self.names):
                rows = (pick == k).nonzero().flatten()
                if rows.numel():
                    x[rows] = RANDAUGMENT_OPS[name](x[rows], mag[rows])
        return x


class AugmentPipeline:
    """Ops applied in order; mixing ops (soft targets) come last. Callable as (x, y, g) -> (x, y)."""

    def __init__(self, ops: list[Op], num_classes: int):
        self.ops = [o for o in ops if not o.mixes_labels]
        self.mixers = [o for o in ops if o.mixes_labels]
        self.num_classes = num_classes

    def __call__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator):
        for op in self.ops:
            x = op(x, g)
        for mixer in self.mixers:
            x, y = mixer.mix(x, y, self.num_classes, g)
        return x.clamp_(0.0, 1.0), y

    def __bool__(self) -> bool:
        return bool(self.ops or self.mixers)

    def __repr__(self) -> str:
        return f"AugmentPipeline({self.ops + self.mixers})"


def _coerce(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "-" in text[1:]:  # ranges like 0.08-1
        lo, hi = text.split("-", 1) if not text.startswith("-") else ("-" + text[1:].split("-", 1)[0], text[1:].split("-", 1)[1])
        return (float(lo), float(hi))
    return text


def parse_op(spec: str) -> Op:
    """'translate:4' / 'cutout:size=8,p=0.5' → an Op; unknown names and parameters are errors."""
    name, _, args = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _OPS:
        raise DeepRecipeError(f"unknown augmentation {name!r} in data.augment",
                              did_you_mean(name, _OPS, f"known: {', '.join(list_augments())}"))
    cls = _OPS[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    kwargs = {}
    for i, part in enumerate(a for a in args.split(",") if a.strip()):
        key, eq, value = part.partition("=")
        if not eq:
            if i >= len(params):
                raise DeepRecipeError(f"augmentation {spec!r}: too many values", f"{name} takes {', '.join(params)}")
            key, value = params[i], part
        key = key.strip()
        if key not in params:
            raise DeepRecipeError(f"augmentation {spec!r}: unknown parameter {key!r}", f"{name} takes {', '.join(params)}")
        kwargs[key] = _coerce(value.strip())
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise DeepRecipeError(f"augmentation {spec!r}: {err}", f"{name} takes {', '.join(params)}") from None


def op_from_mapping(item: dict[str, Any]) -> Op:
    """A YAML list entry such as {name: cutout, size: 8, p: 0.5} → an Op."""
    if "name" not in item:
        raise DeepRecipeError(f"augmentation {item}: no 'name' key", "write e.g. {name: cutout, size: 8}")
    args = ",".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                    for k, v in item.items() if k != "name")
    return parse_op(f"{item['name']}:{args}")


def build_pipeline(specs: list[str | dict] | None, num_classes: int,
                   fit_images: torch.Tensor | Callable[[], torch.Tensor] | None = None) -> AugmentPipeline | None:
    """Ops from config strings or mappings; ops that learn from data (lighting) fit on `fit_images`,
    the training split's uint8 images (or a callable returning them, called only when needed)."""
    ops = []
    for s in specs or []:
        if isinstance(s, dict):
            ops.append(op_from_mapping(s))
        elif s and s.strip() and s.strip().lower() != "none":
            ops.append(parse_op(s))
    for op in ops:
        if op.needs_fit and fit_images is not None:
            op.fit(fit_images() if callable(fit_images) else fit_images)
    return AugmentPipeline(ops, num_classes) if ops else None
