"""torchvision's own networks re-seated in deeprecipe's head API: named stages → pool → classifier.

A family file builds the network with its `torchvision.models` builder (weights=None) and hands its
modules — the same objects, not copies — to `TorchvisionNet` grouped into stages. Because the modules
are torchvision's, the torchvision state-dict key of every tensor is known by identity at build time
(`torchvision_keys`), so a torchvision `.pth` loads by renaming only (torchvision_compat.py).

Knobs act on the built network without moving any module (state-dict paths stay put):
  * in_chans: the stem convolution is replaced by one with that many input channels;
  * norm: every BatchNorm2d becomes `layers.norm2d(norm, C)`;
  * activation: every activation module (ReLU, ReLU6, Hardswish, SiLU, GELU) becomes `layers.activation`;
  * init: `layers.init_weights` (unset keeps torchvision's own initialisation, unless the activation is swapped:
    then the init matched to the new activation);
  * dropout: the rate before the final linear layer (torchvision's `dropout` argument where it has one).
A family whose design rules a knob out leaves it out of its signature and says why in `refused`.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from .base import Classifier
from .layers import activation as make_act, check_dropout, init_weights, norm2d
from .registry import register_model

ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU)


class TorchvisionNet(Classifier):
    """A torchvision network as body stages → pool → classifier. `torchvision_keys` maps torchvision's
    state-dict keys to this model's; `aux_prefixes` name auxiliary heads (treated like the head when
    pretrained weights load)."""

    aux_weight: float = 0.0

    def __init__(self, source: nn.Module, stages: "OrderedDict[str, nn.Module]", pool: nn.Module,
                 classifier: nn.Module):
        super().__init__(OrderedDict(stages), pool, classifier)
        ours = {id(t): k for k, t in self.state_dict(keep_vars=True).items()}
        self.torchvision_keys = {k: ours[id(t)] for k, t in source.state_dict(keep_vars=True).items() if id(t) in ours}

    @property
    def aux_prefixes(self) -> list[str]:
        return [name + "." for name, m in self.named_modules() if isinstance(m, AuxTap)]

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for m in self.modules():
            if isinstance(m, AuxTap):
                m.reset(num_classes)

    def aux_outputs(self) -> list[torch.Tensor]:
        """Logits of the auxiliary heads from the last forward in training mode (empty when there are none)."""
        return [m.logits for m in self.modules() if isinstance(m, AuxTap) and m.logits is not None]


class AuxTap(nn.Module):
    """Passes its input through; in training mode also runs an auxiliary classifier on it (GoogLeNet's
    and Inception's side heads) and keeps the logits for the trainer's weighted auxiliary loss."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head
        self.logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.logits = self.head(x) if self.training else None
        return x

    def reset(self, num_classes: int) -> None:
        name, old = [(n, m) for n, m in self.head.named_children() if isinstance(m, nn.Linear)][-1]
        setattr(self.head, name, nn.Linear(old.in_features, num_classes).to(device=old.weight.device,
                                                                            dtype=old.weight.dtype))


def seq(*named: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(named))


def children(module: nn.Module, *names: str) -> list[tuple[str, nn.Module]]:
    return [(n, getattr(module, n)) for n in names]


def dropout_head(fc: nn.Linear, dropout: float) -> nn.Sequential:
    """The classifier slot for networks that have no dropout of their own: the same layout whatever the rate."""
    return seq(("dropout", nn.Dropout(dropout) if dropout else nn.Identity()), ("fc", fc))


def stride_of(module: nn.Module) -> int:
    """How much a block shrinks its input (product of its convolution and pooling strides)."""
    s = 1
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            st = m.stride
            s *= st[0] if isinstance(st, tuple) else st
    return s


def group_by_resolution(features: nn.Sequential) -> "OrderedDict[str, nn.Module]":
    """Split a flat list of blocks (MobileNet, EfficientNet) into stages that end where the resolution
    halves: stem (the first strided conv and what follows at its resolution), stage1, stage2, …"""
    groups: list[list[tuple[str, nn.Module]]] = []
    for name, block in features.named_children():
        if not groups or stride_of(block) > 1:
            groups.append([])
        groups[-1].append((name, block))
    names = ["stem"] + [f"stage{i}" for i in range(1, len(groups))]
    return OrderedDict((n, nn.Sequential(OrderedDict(g))) for n, g in zip(names, groups))


# ------------------------------------------------------------------------------------------ knobs
def _set_child(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def replace_stem(model: nn.Module, in_chans: int) -> None:
    """A stem convolution for `in_chans` input channels (the first Conv2d the network registers)."""
    if in_chans < 1:
        raise ValueError("in_chans must be ≥ 1")
    path, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_chans:
        return
    new = type(conv)(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     conv.groups, conv.bias is not None, conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    _set_child(model, path, new)


def swap_modules(model: nn.Module, kinds: tuple[type, ...], make: Callable[[nn.Module], nn.Module]) -> None:
    for path, m in list(model.named_modules()):
        if path and isinstance(m, kinds):
            _set_child(model, path, make(m))


def apply_knobs(model: TorchvisionNet, in_chans: int, norm: str | None = None, activation: str | None = None,
                init: str | None = None) -> TorchvisionNet:
    replace_stem(model, in_chans)
    if norm not in (None, "batch"):
        swap_modules(model, (nn.BatchNorm2d,), lambda bn: norm2d(norm, bn.num_features))
    if activation is not None:
        make_act(activation)  # validates the name before anything changes
        swap_modules(model, ACTIVATION_MODULES, lambda _m: make_act(activation))
        for m in model.modules():  # sigmoid/tanh backward needs their output: no in-place dropout after them
            if isinstance(m, nn.Dropout):
                m.inplace = False
    if init is None and activation is not None:
        init = "auto"  # torchvision's init suits its own activation; a swapped one gets the init matched to it
    if init is not None:
        init_weights(model, init)
    return model


def register_tv(name: str, build: Callable[..., TorchvisionNet], knobs: tuple[str, ...], refused: dict[str, str],
                doc: str, extra: dict | None = None):
    """Register `name` with the shared knobs it accepts; `build(num_classes, input_size, dropout, **extra)`
    returns the wrapped network before knobs are applied."""
    extra = extra or {}

    def builder(num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None, **kw) -> TorchvisionNet:
        # create_model has already refused keywords outside the signature below
        dropout = kw.pop("dropout", None)
        dropout = None if dropout is None else check_dropout(dropout)
        shared = {k: kw.pop(k, None) for k in ("norm", "activation", "init")}
        params = {**extra, **kw}
        model = build(num_classes, input_size, dropout, **params)
        return apply_knobs(model, in_chans, **shared)

    # The registry reads the signature to know the knobs; give the closure an explicit one.
    P = inspect.Parameter
    sig = [P("num_classes", P.POSITIONAL_OR_KEYWORD, default=1000), P("in_chans", P.POSITIONAL_OR_KEYWORD, default=3),
           P("input_size", P.POSITIONAL_OR_KEYWORD, default=None)]
    sig += [P(k, P.KEYWORD_ONLY, default=None) for k in knobs]
    sig += [P(k, P.KEYWORD_ONLY, default=v) for k, v in extra.items()]
    builder.__signature__ = inspect.Signature(sig)
    builder.__name__ = builder.__qualname__ = name
    builder.__module__ = build.__module__
    builder.__doc__ = doc
    builder.refused = refused
    return register_model(builder)
