"""Optimizer registry over torch.optim, with parameter groups that spare biases and norms from decay."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import DeepRecipeError

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {}


def register_optimizer(name: str):
    def deco(fn):
        _OPTIMIZERS[name] = fn
        return fn
    return deco


def list_optimizers() -> list[str]:
    return sorted(_OPTIMIZERS)


@register_optimizer("sgd")
def _sgd(params, cfg):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@register_optimizer("nesterov")
def _nesterov(params, cfg):
    if cfg.momentum <= 0:
        raise DeepRecipeError("optim.name=nesterov needs optim.momentum > 0", "set optim.momentum=0.9")
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)


@register_optimizer("rmsprop")
def _rmsprop(params, cfg):
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)


def _adam_family(cls):
    # Adam/NAdam/Adamax take weight_decay as coupled L2 (added to the gradient); AdamW's is decoupled.
    def build(params, cfg):
        return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    return build


for _name, _cls in {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "nadam": torch.optim.NAdam,
                    "adamax": torch.optim.Adamax}.items():
    register_optimizer(_name)(_adam_family(_cls))


def param_groups(model: nn.Module, weight_decay: float, no_decay_bias_norm: bool = True,
                 lr_scale: dict[str, float] | None = None) -> list[dict]:
    """Split trainable parameters into decay / no-decay groups.

    Biases and normalisation weights (every parameter with ≤ 1 dimension) get no weight decay: decaying
    them only fights the normalisation and rarely helps. `lr_scale` maps a parameter-name prefix to an
    lr multiplier (discriminative learning rates for transfer learning).
    """
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (no_decay_bias_norm and p.ndim <= 1)
        scale = 1.0
        for prefix, s in (lr_scale or {}).items():
            if name.startswith(prefix):
                scale = s
        groups.setdefault((decay, scale), []).append(p)
    out = []
    for (decay, scale), params in groups.items():
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale})
    return out


def build_optimizer(model: nn.Module, cfg, lr_scale: dict[str, float] | None = None) -> torch.optim.Optimizer:
    if cfg.name not in _OPTIMIZERS:
        raise DeepRecipeError(f"unknown optimizer {cfg.name!r}", f"use one of {', '.join(list_optimizers())}")
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_bias_norm, lr_scale)
    if not groups:
        raise DeepRecipeError("the model has no trainable parameters", "unfreeze at least the head")
    opt = _OPTIMIZERS[cfg.name](groups, cfg)
    for g in opt.param_groups:
        g["base_lr"] = cfg.lr * g.get("lr_scale", 1.0)
    return opt
