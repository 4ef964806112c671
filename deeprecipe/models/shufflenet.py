"""ShuffleNet v2 (Ma et al. 2018): channel split, depthwise convolutions and channel shuffle; torchvision's code.

Stages: stem (3×3 conv, max-pool), stage2…stage4 (stage4 also holds the last 1×1 conv5).
"""
from __future__ import annotations

from torchvision import models as tvm

from .base import GlobalAvgPool
from .tvnet import TorchvisionNet, children, dropout_head, seq, register_tv


def _shufflenet(num_classes, input_size, dropout) -> TorchvisionNet:
    net = tvm.shufflenet_v2_x1_0(weights=None, num_classes=num_classes)
    stages = dict(stem=seq(*children(net, "conv1", "maxpool")), stage2=seq(*children(net, "stage2")),
                  stage3=seq(*children(net, "stage3")), stage4=seq(*children(net, "stage4", "conv5")))
    return TorchvisionNet(net, stages, GlobalAvgPool(), dropout_head(net.fc, dropout or 0.0))


register_tv("shufflenet_v2_x1_0", _shufflenet, ("norm", "activation", "dropout", "init"), {},
            "ShuffleNet v2 1.0×, torchvision's; `dropout` acts before the classifier.")
