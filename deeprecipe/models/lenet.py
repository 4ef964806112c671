"""LeNet-5 (LeCun et al. 1998): two conv/pool stages and three fully connected layers.

For 28×28 inputs the first convolution pads by 2, as is usual for MNIST, so the 5×5×16 map feeding
C5 matches the paper's 32×32 layout. Max-pooling and ReLU are the modern defaults; the paper's
average pooling and tanh are one knob away (`pool="avg"`, `activation="tanh"`).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier
from .layers import activation as make_act, check_dropout, init_weights, norm2d, norm1d
from .registry import register_model


class LeNet5(Classifier):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, input_size: int = 28, norm: str | None = None,
                 activation: str | None = "relu", dropout: float = 0.0, init: str | None = None, pool: str = "max"):
        if pool not in ("max", "avg"):
            raise ValueError("pool must be 'max' or 'avg'")
        pool_layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        pad = 2 if input_size < 32 else 0
        size = (input_size + 2 * pad - 4) // 2
        size = (size - 4) // 2
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for LeNet-5 (need ≥ 12)")
        stages = OrderedDict(
            conv1=nn.Sequential(nn.Conv2d(in_chans, 6, 5, padding=pad), norm2d(norm, 6), make_act(activation), pool_layer(2)),
            conv2=nn.Sequential(nn.Conv2d(6, 16, 5), norm2d(norm, 16), make_act(activation), pool_layer(2)),
            flatten=nn.Flatten(),
            fc1=nn.Sequential(nn.Linear(16 * size * size, 120), norm1d(norm, 120), make_act(activation),
                              *([nn.Dropout(dropout)] if dropout else [])),
            fc2=nn.Sequential(nn.Linear(120, 84), norm1d(norm, 84), make_act(activation),
                              *([nn.Dropout(dropout)] if dropout else [])),
        )
        super().__init__(stages, nn.Identity(), nn.Linear(84, num_classes))
        init_weights(self, init)


@register_model
def lenet5(num_classes: int = 10, in_chans: int = 1, input_size: int = 28, norm: str | None = None,
           activation: str | None = "relu", dropout: float | None = 0.0, init: str | None = None,
           pool: str = "max") -> LeNet5:
    return LeNet5(num_classes, in_chans, input_size, norm, activation, check_dropout(dropout), init, pool)
