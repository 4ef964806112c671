"""Network in Network (Lin, Chen & Yan 2014): "mlpconv" layers and global average pooling, CIFAR-sized.

Each mlpconv is a k×k convolution followed by two 1×1 convolutions — a small MLP slid over the image —
then pooling and dropout. The CIFAR-10 model of the paper's released code:

  mlpconv1: 5×5 192, 1×1 160, 1×1 96, max-pool 3/2, dropout
  mlpconv2: 5×5 192, 1×1 192, 1×1 192, avg-pool 3/2, dropout
  mlpconv3: 3×3 192, 1×1 192            classifier: global average → linear (= the last 1×1 conv to classes)

As in `allconvnet`, averaging then a linear layer stands for the final 1×1 convolution then averaging.
The paper had no batch norm (`norm="none"`); the default adds it. 0.97 M parameters for 10 classes.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .allconv import conv_units
from .base import Classifier, GlobalAvgPool
from .layers import check_dropout, check_input_size, init_weights
from .registry import register_model

# per mlpconv: ((out, kernel, stride, padding) per conv, pooling after it)
CFG = [([(192, 5, 1, 2), (160, 1, 1, 0), (96, 1, 1, 0)], "max"),
       ([(192, 5, 1, 2), (192, 1, 1, 0), (192, 1, 1, 0)], "avg"),
       ([(192, 3, 1, 1), (192, 1, 1, 0)], None)]


class NiN(Classifier):
    def __init__(self, num_classes: int, in_chans: int, width_mult: float, norm: str | None, activation: str | None,
                 dropout: float, init: str | None):
        if width_mult <= 0:
            raise ValueError("width_mult must be positive")
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        c_in = in_chans
        for i, (convs, pool) in enumerate(CFG, start=1):
            layers, c_in = conv_units(c_in, convs, width_mult, norm, activation)
            if pool:
                layers += [nn.MaxPool2d(3, 2, ceil_mode=True) if pool == "max" else nn.AvgPool2d(3, 2, ceil_mode=True),
                           nn.Dropout(dropout) if dropout else nn.Identity()]
            stages[f"mlpconv{i}"] = nn.Sequential(*layers)
        super().__init__(stages, GlobalAvgPool(), nn.Linear(c_in, num_classes))
        init_weights(self, init)


@register_model
def nin(num_classes: int = 10, in_chans: int = 3, input_size: int | None = None, width_mult: float = 1.0,
        norm: str | None = "batch", activation: str | None = "relu", dropout: float | None = 0.5,
        init: str | None = "auto") -> NiN:
    check_input_size("nin", input_size, 8)
    return NiN(num_classes, in_chans, width_mult, norm, activation, check_dropout(dropout), init)
