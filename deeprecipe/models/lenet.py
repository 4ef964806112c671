"""LeNet-5 (LeCun et al. 1998): two conv/pool stages and three fully connected layers.

For 28×28 inputs the first convolution pads by 2, as is usual for MNIST, so the 5×5×16 map feeding
C5 matches the paper's 32×32 layout. Max-pooling and ReLU are the modern defaults; the paper's
average pooling and tanh are one knob away (`pool="avg"`, `activation="tanh"`).
Dropout kinds: 'standard' between the fully connected layers, 'spatial' after each conv stage,
'dropconnect' on the weights of fc1 and fc2.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier
from .layers import (activation as make_act, check_dropout, check_dropout_kind, conv_out, dropout_layer, init_weights,
                     linear, norm1d, norm2d)
from .registry import register_model


class LeNet5(Classifier):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, input_size: int = 28, norm: str | None = None,
                 activation: str | None = "relu", dropout: float = 0.0, init: str | None = "auto", pool: str = "max",
                 dropout_kind: str = "standard"):
        if pool not in ("max", "avg"):
            raise ValueError("pool must be 'max' or 'avg'")
        pool_layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        pad = 2 if input_size < 32 else 0
        size = conv_out(conv_out(input_size, 5, 1, pad), 2, 2)
        size = conv_out(conv_out(size, 5), 2, 2)
        if size < 1:
            raise ValueError(f"input_size {input_size} is too small for LeNet-5 (need ≥ 12)")

        def conv_stage(c_in, c_out, padding):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 5, padding=padding), norm2d(norm, c_out), make_act(activation),
                                 pool_layer(2), dropout_layer(dropout_kind, dropout, "features"))

        def fc_stage(f_in, f_out):
            return nn.Sequential(linear(f_in, f_out, dropout_kind, dropout), norm1d(norm, f_out), make_act(activation),
                                 dropout_layer(dropout_kind, dropout, "vector"))

        stages = OrderedDict(conv1=conv_stage(in_chans, 6, pad), conv2=conv_stage(6, 16, 0), flatten=nn.Flatten(),
                             fc1=fc_stage(16 * size * size, 120), fc2=fc_stage(120, 84))
        super().__init__(stages, nn.Identity(), nn.Linear(84, num_classes))
        init_weights(self, init)


@register_model
def lenet5(num_classes: int = 10, in_chans: int = 1, input_size: int = 28, norm: str | None = None,
           activation: str | None = "relu", dropout: float | None = 0.0, init: str | None = "auto",
           pool: str = "max", dropout_kind: str | None = "standard") -> LeNet5:
    return LeNet5(num_classes, in_chans, input_size, norm, activation, check_dropout(dropout), init, pool,
                  check_dropout_kind(dropout_kind))
