"""Parameter counts, FLOPs per image and per-layer tables, for `deeprecipe models`.

FLOPs come from torch.utils.flop_counter.FlopCounterMode (a multiply-add counts as 2 FLOPs;
convolutions, matmuls and the like, not activations or norms). Everything is measured on the
meta device, so even vgg19 at 224 px is sized without allocating or initialising its weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import DeepRecipeError
from .registry import create_model, list_models, model_family


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int


@dataclass
class ModelRow:
    name: str
    family: str
    params: int | None
    flops: int | None
    note: str = ""


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_on_meta(name: str, num_classes: int, in_chans: int, input_size: int, **knobs) -> nn.Module:
    """The model with shapes but no storage: free to build, enough to count and trace shapes."""
    with torch.device("meta"):
        return create_model(name, num_classes=num_classes, in_chans=in_chans, input_size=input_size, **knobs).eval()


def _dummy(model: nn.Module, in_chans: int, input_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.empty(1, in_chans, input_size, input_size, device=device)


def count_flops(model: nn.Module, in_chans: int, input_size: int) -> int:
    """Forward FLOPs for one image of in_chans × input_size × input_size (eval mode)."""
    flops, _ = _trace(model, in_chans, input_size, per_layer=False)
    return flops


def _trace(model: nn.Module, in_chans: int, input_size: int, per_layer: bool):
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    if per_layer:
        for name, module in model.named_modules():
            if name and not list(module.children()):
                handles.append(module.register_forward_hook(
                    lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(_dummy(model, in_chans, input_size))
    except RuntimeError as err:
        raise DeepRecipeError(f"{type(model).__name__} cannot run on {in_chans}×{input_size}×{input_size} input: "
                              f"{str(err).splitlines()[0]}", "try a larger --input-size") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return counter.get_total_flops(), (shapes, counter.get_flop_counts())


def layer_table(model: nn.Module, in_chans: int, input_size: int) -> list[LayerRow]:
    """One row per leaf module that ran, in execution order: output shape (per image), own params, FLOPs."""
    _, (shapes, flop_counts) = _trace(model, in_chans, input_size, per_layer=True)
    modules = dict(model.named_modules())
    prefix = type(model).__name__ + "."
    rows = []
    for name, shape in shapes.items():
        module = modules[name]
        flops = sum(flop_counts.get(prefix + name, {}).values())
        rows.append(LayerRow(name, type(module).__name__, shape,
                             sum(p.numel() for p in module.parameters(recurse=False)), int(flops)))
    return rows


def model_rows(num_classes: int, in_chans: int, input_size: int, family: str | None = None) -> list[ModelRow]:
    """Parameter count and FLOPs per image for every registered model (a note where one cannot run)."""
    rows = []
    for name in list_models(family):
        try:
            model = build_on_meta(name, num_classes, in_chans, input_size)
            rows.append(ModelRow(name, model_family(name), count_params(model), count_flops(model, in_chans, input_size)))
        except DeepRecipeError as err:
            rows.append(ModelRow(name, model_family(name), None, None, err.message))
    return rows


def human(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def format_models(rows: list[ModelRow], in_chans: int, input_size: int) -> str:
    nw = max([len(r.name) for r in rows] + [14])
    fw = max([len(r.family) for r in rows] + [8])
    lines = [f"{'model':<{nw}} {'family':<{fw}} {'params':>10} {'FLOPs/img':>10}   (at {in_chans}×{input_size}×{input_size})"]
    for r in rows:
        note = f"   {r.note}" if r.note else ""
        lines.append(f"{r.name:<{nw}} {r.family:<{fw}} {human(r.params):>10} {human(r.flops):>10}{note}")
    return "\n".join(lines)


def format_layers(rows: list[LayerRow], model: nn.Module, in_chans: int, input_size: int) -> str:
    width = max([len(r.name) for r in rows] + [5])
    kind_w = max([len(r.kind) for r in rows] + [4])
    lines = [f"{'layer':<{width}}  {'type':<{kind_w}}  {'output':>16}  {'params':>10}  {'FLOPs':>9}"]
    for r in rows:
        shape = "×".join(map(str, r.output_shape))
        lines.append(f"{r.name:<{width}}  {r.kind:<{kind_w}}  {shape:>16}  {r.params:>10,}  {human(r.flops):>9}")
    total_flops = count_flops(model, in_chans, input_size)
    lines.append(f"total: {count_params(model):,} parameters, {human(total_flops)} FLOPs per "
                 f"{in_chans}×{input_size}×{input_size} image; stages: {', '.join(model.stage_names)}")
    return "\n".join(lines)
