"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), single-tower, torchvision's widths.

Five conv stages then three fully connected layers. With `norm="lrn"` (the default) local response
normalisation follows the ReLU of conv1 and conv2, as in the paper; any other norm kind sits
between every convolution and its activation instead; `norm="none"` is exactly torchvision's `alexnet` (61.1 M parameters
at 1000 classes), the network whose pretrained weights `torchvision_compat` converts.

`alexnet_small` keeps the layout for 28–32 px images (CIFAR, MNIST): 5×5 stride-1 first
convolution, a 3×3 pooled map and 1024-wide fully connected layers.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier
from .layers import (activation as make_act, check_dropout, check_dropout_kind, check_input_size, conv_out,
                     dropout_layer, init_weights, linear, norm2d)
from .registry import register_model

# Per conv stage: (out channels, kernel, stride, padding, max-pool after it).
CFGS = {
    "imagenet": [(64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
                 (256, 3, 1, 1, True)],
    "small": [(64, 5, 1, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
              (256, 3, 1, 1, True)],
}
LRN_STAGES = (0, 1)  # the paper normalises after the first two convolutions


def min_input_size(cfg) -> int:
    """The smallest square input for which every pooling window still fits."""
    size = 1
    while True:
        s = size
        for _, k, stride, pad, pool in cfg:
            s = conv_out(s, k, stride, pad)
            if pool:
                s = conv_out(s, 3, 2) if s >= 3 else 0
            if s < 1:
                break
        if s >= 1:
            return size
        size += 1


class AlexNet(Classifier):
    def __init__(self, cfg, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                 fc_width: int = 4096, pool_size: int = 6, norm: str | None = "lrn", activation: str | None = "relu",
                 dropout: float = 0.5, dropout_kind: str = "standard", init: str | None = "auto"):
        if width_mult <= 0 or fc_width < 1 or pool_size < 1:
            raise ValueError("width_mult, fc_width and pool_size must be positive")
        norm = "none" if norm is None else norm
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = in_chans
        for i, (width, k, stride, pad, pool) in enumerate(cfg):
            c_out = max(1, round(width * width_mult))
            # LRN follows the ReLU (paper); other norms sit between conv and activation. The conv stays at
            # index 0 and an Identity fills the unused norm slot, so state-dict keys do not move.
            conv = nn.Conv2d(c_in, c_out, k, stride, pad)
            if norm == "lrn":
                layers = [conv, make_act(activation), norm2d("lrn" if i in LRN_STAGES else "none", c_out)]
            else:
                layers = [conv, norm2d(norm, c_out), make_act(activation)]
            if pool:
                layers.append(nn.MaxPool2d(3, 2))
            layers.append(dropout_layer(dropout_kind, dropout, "features"))
            stages[f"conv{i + 1}"] = nn.Sequential(*layers)
            c_in = c_out
        pool_layer = nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten())
        # Same indices as torchvision's classifier: 1, 4, 6 are the linear layers.
        classifier = nn.Sequential(
            dropout_layer(dropout_kind, dropout, "vector"), linear(c_in * pool_size ** 2, fc_width, dropout_kind, dropout),
            make_act(activation),
            dropout_layer(dropout_kind, dropout, "vector"), linear(fc_width, fc_width, dropout_kind, dropout),
            make_act(activation),
            nn.Linear(fc_width, num_classes))
        super().__init__(stages, pool_layer, classifier)
        init_weights(self, init)


def _build(variant: str, name: str, num_classes, in_chans, input_size, **knobs) -> AlexNet:
    cfg = CFGS[variant]
    hint = "use alexnet_small for 28–32 px images" if variant == "imagenet" else ""
    check_input_size(name, input_size, min_input_size(cfg), hint)
    knobs["dropout"] = check_dropout(knobs["dropout"])
    knobs["dropout_kind"] = check_dropout_kind(knobs["dropout_kind"])
    return AlexNet(cfg, num_classes, in_chans, **knobs)


@register_model
def alexnet(num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None, width_mult: float = 1.0,
            fc_width: int = 4096, norm: str | None = "lrn", activation: str | None = "relu",
            dropout: float | None = 0.5, dropout_kind: str | None = "standard", init: str | None = "auto") -> AlexNet:
    return _build("imagenet", "alexnet", num_classes, in_chans, input_size, width_mult=width_mult, fc_width=fc_width,
                  pool_size=6, norm=norm, activation=activation, dropout=dropout, dropout_kind=dropout_kind, init=init)


@register_model
def alexnet_small(num_classes: int = 10, in_chans: int = 3, input_size: int | None = None, width_mult: float = 1.0,
                  fc_width: int = 1024, norm: str | None = "lrn", activation: str | None = "relu",
                  dropout: float | None = 0.5, dropout_kind: str | None = "standard",
                  init: str | None = "auto") -> AlexNet:
    return _build("small", "alexnet_small", num_classes, in_chans, input_size, width_mult=width_mult,
                  fc_width=fc_width, pool_size=3, norm=norm, activation=activation, dropout=dropout,
                  dropout_kind=dropout_kind, init=init)
