"""VGG (Simonyan & Zisserman 2015) and a configurable VGG-like net.

`vgg11/13/16/19` follow torchvision's layout (configs A, B, D, E): 3×3 convolutions in five
blocks, max-pool after each, a 7×7 adaptive average pool and three fully connected layers;
the `_bn` names add batch norm after every convolution. Convolutions keep their bias even with
a norm, as in torchvision, so parameter counts match it exactly (132.9 M for vgg11).

`vgglike` builds `blocks` × `convs` 3×3 convolutions with widths doubling per block (capped at
`max_width`), max-pool between blocks, global average pooling and one linear layer.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier, GlobalAvgPool
from .layers import (activation as make_act, check_dropout, check_dropout_kind, check_input_size, dropout_layer,
                     init_weights, linear, norm2d)
from .registry import register_model

# Conv widths per block; every block ends with a 2×2 max-pool (torchvision's cfgs, split into blocks).
CFGS: dict[str, list[list[int]]] = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}
LAYERS_PER_CONV = 3  # conv, norm (Identity when none), activation: fixed so state-dict keys are predictable


def conv_blocks(cfg: list[list[int]], in_chans: int, norm: str, activation: str | None, pool_last: bool,
                dropout_kind: str, dropout: float) -> tuple["OrderedDict[str, nn.Module]", int]:
    """Blocks named block1…blockN: (conv → norm → act) per width, then max-pool and spatial dropout."""
    stages: "OrderedDict[str, nn.Module]" = OrderedDict()
    c_in = in_chans
    for b, widths in enumerate(cfg):
        layers: list[nn.Module] = []
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1), norm2d(norm, w), make_act(activation)]
            c_in = w
        if pool_last or b < len(cfg) - 1:
            layers.append(nn.MaxPool2d(2))
        layers.append(dropout_layer(dropout_kind, dropout, "features"))
        stages[f"block{b + 1}"] = nn.Sequential(*layers)
    return stages, c_in


class VGG(Classifier):
    """torchvision-style VGG: five pooled blocks, 7×7 adaptive pool, fc → act → drop → fc → act → drop → fc."""

    def __init__(self, cfg: list[list[int]], num_classes: int = 1000, in_chans: int = 3, norm: str = "none",
                 activation: str | None = "relu", dropout: float = 0.5, dropout_kind: str = "standard",
                 init: str | None = "auto", fc_width: int = 4096, pool_size: int = 7):
        if fc_width < 1 or pool_size < 1:
            raise ValueError("fc_width and pool_size must be positive")
        stages, c_out = conv_blocks(cfg, in_chans, norm, activation, True, dropout_kind, dropout)
        classifier = nn.Sequential(
            linear(c_out * pool_size ** 2, fc_width, dropout_kind, dropout), make_act(activation),
            dropout_layer(dropout_kind, dropout, "vector"),
            linear(fc_width, fc_width, dropout_kind, dropout), make_act(activation),
            dropout_layer(dropout_kind, dropout, "vector"),
            nn.Linear(fc_width, num_classes))
        super().__init__(stages, nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten()), classifier)
        init_weights(self, init)


class VGGLike(Classifier):
    """blocks × convs 3×3 convolutions, widths doubling per block, global average pooling, one linear layer."""

    def __init__(self, blocks: int, convs: int, width: int, max_width: int, num_classes: int, in_chans: int,
                 norm: str, activation: str | None, dropout: float, dropout_kind: str, init: str | None):
        if blocks < 1 or convs < 1 or width < 1 or max_width < 1:
            raise ValueError("blocks, convs, width and max_width must be ≥ 1")
        cfg = [[min(width * 2 ** b, max_width)] * convs for b in range(blocks)]
        stages, c_out = conv_blocks(cfg, in_chans, norm, activation, False, dropout_kind, dropout)
        classifier = nn.Sequential(dropout_layer(dropout_kind, dropout, "vector"), nn.Linear(c_out, num_classes))
        super().__init__(stages, GlobalAvgPool(), classifier)
        init_weights(self, init)


def _vgg(name: str, batch_norm: bool, num_classes, in_chans, input_size, width_mult, norm, **knobs) -> VGG:
    check_input_size(name, input_size, 32)
    if width_mult <= 0:
        raise ValueError("width_mult must be positive")
    cfg = [[max(1, round(w * width_mult)) for w in block] for block in CFGS[name.removesuffix("_bn")]]
    norm = norm if norm is not None else ("batch" if batch_norm else "none")
    knobs["dropout"] = check_dropout(knobs["dropout"])
    knobs["dropout_kind"] = check_dropout_kind(knobs["dropout_kind"])
    return VGG(cfg, num_classes, in_chans, norm, **knobs)


def _register_vgg(name: str, batch_norm: bool):
    def builder(num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None, width_mult: float = 1.0,
                fc_width: int = 4096, norm: str | None = None, activation: str | None = "relu",
                dropout: float | None = 0.5, dropout_kind: str | None = "standard", init: str | None = "auto") -> VGG:
        return _vgg(name, batch_norm, num_classes, in_chans, input_size, width_mult, norm, fc_width=fc_width,
                    activation=activation, dropout=dropout, dropout_kind=dropout_kind, init=init)
    builder.__name__ = builder.__qualname__ = name
    builder.__module__ = __name__
    builder.__doc__ = (f"VGG config {name.removesuffix('_bn')}{' with batch norm' if batch_norm else ''}; "
                       "`norm` overrides the norm kind, `width_mult` scales conv widths.")
    return register_model(builder)


for _depth in (11, 13, 16, 19):
    _register_vgg(f"vgg{_depth}", False)
    _register_vgg(f"vgg{_depth}_bn", True)


@register_model
def vgglike(num_classes: int = 10, in_chans: int = 3, input_size: int | None = None, blocks: int = 3,
            convs: int = 2, width: int = 32, max_width: int = 512, norm: str | None = "batch",
            activation: str | None = "relu", dropout: float | None = 0.0, dropout_kind: str | None = "standard",
            init: str | None = "auto") -> VGGLike:
    check_input_size("vgglike", input_size, 2 ** (blocks - 1))
    return VGGLike(blocks, convs, width, max_width, num_classes, in_chans, norm, activation, check_dropout(dropout),
                   check_dropout_kind(dropout_kind), init)
