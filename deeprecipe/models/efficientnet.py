"""EfficientNet (Tan & Le 2019): MBConv blocks scaled in depth, width and resolution together; torchvision's code.

b0…b3 differ only by the compound-scaling coefficients (and their usual input size: 224, 240, 260,
300 px). Stages are grouped where the resolution halves, as for MobileNet.
"""
from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from .tvnet import TorchvisionNet, group_by_resolution, seq, register_tv

DROPOUT = {"efficientnet_b0": 0.2, "efficientnet_b1": 0.2, "efficientnet_b2": 0.3, "efficientnet_b3": 0.3}


def _build(tv_name: str):
    def build(num_classes, input_size, dropout) -> TorchvisionNet:
        net = getattr(tvm, tv_name)(weights=None, num_classes=num_classes,
                                    dropout=DROPOUT[tv_name] if dropout is None else dropout)
        return TorchvisionNet(net, group_by_resolution(net.features),
                              seq(("avgpool", net.avgpool), ("flatten", nn.Flatten())), net.classifier)
    return build


for _name, _rate in DROPOUT.items():
    register_tv(_name, _build(_name), ("norm", "activation", "dropout", "init"), {},
                f"{_name}, torchvision's; `dropout` before the last linear layer ({_rate}).")
