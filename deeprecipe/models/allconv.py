"""All-CNN-C (Springenberg et al. 2015, "Striving for simplicity"): only convolutions, no max-pooling.

Every max-pool of a plain CIFAR net is replaced by a 3×3 convolution with stride 2; the classifier is
a 1×1 convolution to the classes followed by global averaging (Table 2, model C). Stages:

  block1: 3×3 96, 3×3 96, 3×3 96 stride 2      block2: 3×3 192, 3×3 192, 3×3 192 stride 2
  block3: 3×3 192 (valid), 1×1 192             classifier: global average → linear (= the 1×1 conv to classes)

Averaging then a linear layer equals the paper's 1×1 convolution then averaging (both are linear), so
the head API holds; the ReLU the paper keeps on the class maps is left out. Dropout 0.5 follows each
strided convolution, as in the paper. The paper had no batch norm (`norm="none"`); the default adds it so
that the net trains at the toolkit's default learning rate. 1.37 M parameters for 10 classes.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier, GlobalAvgPool
from .layers import activation as make_act, check_dropout, check_input_size, init_weights, norm2d
from .registry import register_model

# (out channels, kernel, stride, padding) per conv, per block.
CFG = [[(96, 3, 1, 1), (96, 3, 1, 1), (96, 3, 2, 1)],
       [(192, 3, 1, 1), (192, 3, 1, 1), (192, 3, 2, 1)],
       [(192, 3, 1, 0), (192, 1, 1, 0)]]


def conv_unit(c_in: int, c_out: int, k: int, stride: int, pad: int, norm: str | None, act: str | None) -> list[nn.Module]:
    """conv → norm → activation; the conv has a bias only when there is no norm."""
    return [nn.Conv2d(c_in, c_out, k, stride, pad, bias=norm in (None, "none")), norm2d(norm, c_out), make_act(act)]


def conv_units(c_in: int, specs, width_mult: float, norm: str | None, act: str | None) -> tuple[list[nn.Module], int]:
    """A run of conv units from (width, kernel, stride, padding) specs, widths scaled; returns (layers, c_out)."""
    layers: list[nn.Module] = []
    for width, k, stride, pad in specs:
        c_out = max(1, round(width * width_mult))
        layers += conv_unit(c_in, c_out, k, stride, pad, norm, act)
        c_in = c_out
    return layers, c_in


class AllConvNet(Classifier):
    def __init__(self, num_classes: int, in_chans: int, width_mult: float, norm: str | None, activation: str | None,
                 dropout: float, init: str | None):
        if width_mult <= 0:
            raise ValueError("width_mult must be positive")
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = in_chans
        for b, convs in enumerate(CFG, start=1):
            layers, c_in = conv_units(c_in, convs, width_mult, norm, activation)
            if b < len(CFG):
                layers.append(nn.Dropout(dropout) if dropout else nn.Identity())
            stages[f"block{b}"] = nn.Sequential(*layers)
        super().__init__(stages, GlobalAvgPool(), nn.Linear(c_in, num_classes))
        init_weights(self, init)


@register_model
def allconvnet(num_classes: int = 10, in_chans: int = 3, input_size: int | None = None, width_mult: float = 1.0,
               norm: str | None = "batch", activation: str | None = "relu", dropout: float | None = 0.5,
               init: str | None = "auto") -> AllConvNet:
    check_input_size("allconvnet", input_size, 12)
    return AllConvNet(num_classes, in_chans, width_mult, norm, activation, check_dropout(dropout), init)
