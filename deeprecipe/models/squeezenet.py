"""SqueezeNet 1.1 (Iandola et al. 2016): Fire modules (1×1 squeeze, 1×1/3×3 expand), no fully connected layer.

torchvision's code. The classifier is a 1×1 convolution to the classes, ReLU and global average pooling,
so `features()` is the last 512-channel map and the head's final layer is that convolution. It has no
normalisation layers, so `norm` is refused.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision import models as tvm

from .tvnet import TorchvisionNet, seq, register_tv


class SqueezeNet(TorchvisionNet):
    def last_linear(self):
        return self.classifier, "conv", self.classifier.conv

    @property
    def num_classes(self) -> int:
        return self.classifier.conv.out_channels

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier.conv
        self.classifier.conv = nn.Conv2d(old.in_channels, num_classes, 1).to(device=old.weight.device,
                                                                             dtype=old.weight.dtype)


def _squeezenet(num_classes, input_size, dropout) -> TorchvisionNet:
    net = tvm.squeezenet1_1(weights=None, num_classes=num_classes, dropout=0.5 if dropout is None else dropout)
    f = list(net.features.named_children())  # conv, relu, pool, fire×2, pool, fire×2, pool, fire×4
    cuts = {"stem": f[0:3], "fire1": f[3:6], "fire2": f[6:9], "fire3": f[9:]}
    stages = OrderedDict((name, nn.Sequential(OrderedDict(part))) for name, part in cuts.items())
    drop, conv, relu, pool = net.classifier
    classifier = seq(("dropout", drop), ("conv", conv), ("relu", relu), ("avgpool", pool), ("flatten", nn.Flatten()))
    return SqueezeNet(net, stages, nn.Identity(), classifier)


register_tv("squeezenet1_1", _squeezenet, ("activation", "dropout", "init"),
            {"norm": "SqueezeNet has no normalisation layers to change"},
            "SqueezeNet 1.1, torchvision's; the classifier is a 1×1 conv to the classes, ReLU and average pooling.")
