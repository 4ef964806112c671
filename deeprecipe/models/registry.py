"""One registry of model builders: register_model / create_model / list_models (after timm).

A builder is a plain function ``name(num_classes=…, in_chans=…, **knobs) -> nn.Module``. Its
signature is the contract: keyword arguments it does not declare are errors, never ignored.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from ..errors import DeepRecipeError, did_you_mean
from .timm_models import build_timm

TIMM = "timm:"  # model names with this prefix are built by timm (timm_models.py), not registered here
_MODELS: dict[str, Callable[..., nn.Module]] = {}
_FAMILY: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name} registered twice")
    _MODELS[name] = fn
    _FAMILY[name] = fn.__module__.rsplit(".", 1)[-1]
    return fn


def list_models(family: str | None = None) -> list[str]:
    return sorted(n for n in _MODELS if family is None or _FAMILY[n] == family)


def model_family(name: str) -> str:
    if name.startswith(TIMM):
        return "timm"
    return _FAMILY[name]


def model_knobs(name: str) -> list[str]:
    """The keyword arguments a model accepts beyond num_classes/in_chans."""
    if name.startswith(TIMM):
        return ["dropout", "drop_path", "init"]
    fn = get_builder(name)
    return [p for p in inspect.signature(fn).parameters if p not in ("num_classes", "in_chans", "input_size")]


def get_builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise DeepRecipeError(f"unknown model {name!r}", did_you_mean(name, _MODELS, "run `deeprecipe models` for the list"))
    return _MODELS[name]


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None,
                 **knobs: Any) -> nn.Module:
    """Build a registered model. `input_size` reaches builders that need it (flattening heads);
    for the others it does not matter. Every other keyword must be one the builder declares.
    `timm:NAME` builds timm's NAME (timm_models.py)."""
    if name.startswith(TIMM):
        return build_timm(name[len(TIMM):], num_classes, in_chans, input_size, **knobs)
    fn = get_builder(name)
    accepted = inspect.signature(fn).parameters
    if input_size is not None and "input_size" in accepted:
        knobs["input_size"] = input_size
    unknown = [k for k in knobs if k not in accepted]
    refused = getattr(fn, "refused", {})
    for k in unknown:
        if k in refused:  # a knob the architecture rules out, with the reason
            raise DeepRecipeError(f"model {name!r} does not take {k!r}: {refused[k]}",
                                  f"its knobs are: {', '.join(model_knobs(name)) or 'none'}")
    if unknown:
        ok = ", ".join(model_knobs(name)) or "none"
        raise DeepRecipeError(f"model {name!r} does not take {', '.join(repr(u) for u in unknown)}",
                              f"its knobs are: {ok}")
    try:
        return fn(num_classes=num_classes, in_chans=in_chans, **knobs)
    except (ValueError, TypeError) as err:
        raise DeepRecipeError(f"model {name!r}: {err}", f"its knobs are: {', '.join(model_knobs(name))}") from None
