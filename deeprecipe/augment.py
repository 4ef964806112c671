"""Batched augmentation with per-sample random parameters, and a registry of ops.

An op takes a float batch (B, C, H, W) in 0..1 and a torch.Generator and returns a batch of the same
shape; every sample draws its own parameters. Mixing ops (MixUp, CutMix) also take the labels and
return soft targets. Ops are written as strings: ``"hflip"``, ``"translate:4"``,
``"hflip:p=0.5"``, ``"cutout:size=8,p=0.5"`` — a bare value sets the op's first parameter.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import DeepRecipeError

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

    Equivalent to zero-padding by `pad` and taking a random crop of the original size, done for the
    whole batch with one gather instead of a Python loop over images.
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
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device).view(1, h))          # (b, h)
        cols = (dx.view(b, 1) + torch.arange(w, device=x.device).view(1, w))          # (b, w)
        bi = torch.arange(b, device=x.device).view(b, 1, 1)
        out = padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]  # (b, h, w, c)
        return out.permute(0, 3, 1, 2)


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
        import difflib
        close = difflib.get_close_matches(name, list(_OPS), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(list_augments())}"
        raise DeepRecipeError(f"unknown augmentation {name!r} in data.augment", hint)
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


def build_pipeline(specs: list[str] | None, num_classes: int) -> AugmentPipeline | None:
    ops = [parse_op(s) for s in (specs or []) if s and s.strip() and s.strip().lower() != "none"]
    return AugmentPipeline(ops, num_classes) if ops else None
