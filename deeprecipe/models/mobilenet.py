"""MobileNet v2 (Sandler et al. 2018) and v3 (Howard et al. 2019): depthwise-separable inverted residuals.

torchvision's code. Its flat list of blocks is grouped into stages where the resolution halves (stem at
1/2, stage1 at 1/4 … stage4 at 1/32, which also holds the last 1×1 convolution). `activation` replaces
every activation (v3 mixes ReLU and hard-swish); the squeeze-excitation gates stay as they are.
"""
from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from .tvnet import TorchvisionNet, group_by_resolution, seq, register_tv


def _build(tv_name: str):
    def build(num_classes, input_size, dropout) -> TorchvisionNet:
        net = getattr(tvm, tv_name)(weights=None, num_classes=num_classes, dropout=0.2 if dropout is None else dropout)
        if tv_name == "mobilenet_v2":  # v2 pools functionally; v3 has an avgpool module
            pool = seq(("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()))
        else:
            pool = seq(("avgpool", net.avgpool), ("flatten", nn.Flatten()))
        return TorchvisionNet(net, group_by_resolution(net.features), pool, net.classifier)
    return build


for _name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
    register_tv(_name, _build(_name), ("norm", "activation", "dropout", "init"), {},
                f"{_name}, torchvision's; `dropout` is the rate before the last linear layer (0.2).")
