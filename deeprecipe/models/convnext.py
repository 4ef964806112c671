"""ConvNeXt (Liu et al. 2022): a ResNet modernised towards vision transformers; torchvision's code.

4×4 "patchify" stem, 7×7 depthwise convolutions, inverted bottlenecks, GELU, LayerNorm, layer scale.
Stages: stem, stage1…stage4 (each from its 2×2 downsampling onwards). The pooled vector is layer-normed
before the classifier, as in torchvision. The downsampling convolutions pad odd maps by one row and
column (nothing changes at ImageNet sizes, where every map is even), so 28 px inputs run.
`norm` is refused: the blocks normalise channels-last with LayerNorm as part of their design.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from .tvnet import TorchvisionNet, dropout_head, seq, register_tv


class EvenConv2d(nn.Conv2d):
    """A 2×2 stride-2 convolution that pads odd maps at the bottom/right instead of dropping a row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = nn.functional.pad(x, (0, w % 2, 0, h % 2))
        return super().forward(x)


def _convnext(num_classes, input_size, dropout) -> TorchvisionNet:
    net = tvm.convnext_tiny(weights=None, num_classes=num_classes)
    f = net.features  # stem, stage, down, stage, down, stage, down, stage
    for i in (2, 4, 6):
        conv = f[i][1]
        even = EvenConv2d(conv.in_channels, conv.out_channels, 2, 2, device=conv.weight.device, dtype=conv.weight.dtype)
        even.weight, even.bias = conv.weight, conv.bias  # the same Parameters: torchvision's keys still find them
        f[i][1] = even
    stages = dict(stem=seq(("0", f[0])), stage1=seq(("1", f[1])), stage2=seq(("2", f[2]), ("3", f[3])),
                  stage3=seq(("4", f[4]), ("5", f[5])), stage4=seq(("6", f[6]), ("7", f[7])))
    norm, flatten, fc = net.classifier
    pool = seq(("avgpool", net.avgpool), ("norm", norm), ("flatten", flatten))
    return TorchvisionNet(net, stages, pool, dropout_head(fc, dropout or 0.0))


register_tv("convnext_tiny", _convnext, ("activation", "dropout", "init"),
            {"norm": "ConvNeXt's blocks apply LayerNorm channels-last as part of their design"},
            "ConvNeXt-T, torchvision's; `dropout` acts before the classifier.")
