"""The fast default: a small VGG-style CNN with batch norm and global average pooling.

Each stage is `convs` × (3×3 conv → norm → activation) then a 2×2 max-pool (not after the last).
With the default widths (24, 48, 96) and two convs per stage it costs about 33 MFLOP (16M multiply-adds) per 28×28
image forward; with the default recipe (8 epochs, one-cycle, label smoothing 0.1) it reaches 98.6 % on the built-in
MNIST subset in about a minute on two AVX2 cores — the width was chosen by benchmarks/default_search.py.

Photos are another matter: at 224 px the same stages cost 64× as much (2.1 GFLOP an image) and see only a
~30-pixel neighbourhood before the global pool. From `STEM_FROM` pixels up a stem — a stride-2 3×3 conv and a
2×2 max-pool, ResNet's ×4 reduction at the cost of one conv — runs first (`stem`: None decides by the input
size, True/False force it).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier, GlobalAvgPool
from .layers import activation as make_act, check_dropout, init_weights, norm2d
from .registry import register_model


STEM_FROM = 96  # input size (px) from which the stem runs: photos, not digits or CIFAR-sized images


class ConvNet(Classifier):
    def __init__(self, num_classes: int, in_chans: int, widths=(24, 48, 96), convs: int = 2,
                 norm: str | None = "batch", activation: str | None = "relu", dropout: float = 0.0,
                 init: str | None = "auto", stem: bool = False):
        widths = list(widths)
        if not widths or min(widths) < 1 or convs < 1:
            raise ValueError("widths must be positive and convs ≥ 1")
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = in_chans
        if stem:
            stages["stem"] = nn.Sequential(
                nn.Conv2d(c_in, widths[0], 3, stride=2, padding=1, bias=norm in (None, "none")),
                norm2d(norm, widths[0]), make_act(activation), nn.MaxPool2d(2))
            c_in = widths[0]
        for i, w in enumerate(widths):
            layers: list[nn.Module] = []
            for _ in range(convs):
                layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=norm in (None, "none")), norm2d(norm, w), make_act(activation)]
                c_in = w
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            stages[f"stage{i + 1}"] = nn.Sequential(*layers)
        classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes)) if dropout else nn.Linear(c_in, num_classes)
        super().__init__(stages, GlobalAvgPool(), classifier)
        init_weights(self, init)


@register_model
def convnet(num_classes: int = 10, in_chans: int = 3, widths: list[int] | tuple[int, ...] = (24, 48, 96), convs: int = 2,
            norm: str | None = "batch", activation: str | None = "relu", dropout: float | None = 0.0,
            init: str | None = "auto", stem: bool | None = None, input_size: int | None = None) -> ConvNet:
    if stem is None:
        stem = (input_size or 0) >= STEM_FROM
    return ConvNet(num_classes, in_chans, tuple(widths), convs, norm, activation, check_dropout(dropout), init,
                   bool(stem))
