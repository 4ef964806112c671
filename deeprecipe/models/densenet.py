"""DenseNet (Huang et al. 2017): every layer sees the concatenated outputs of all earlier ones; torchvision's code.

Stages: stem (7×7 conv, pool), block1…block3 (dense block + transition: 1×1 conv, 2×2 average pool),
block4 (dense block, final norm and ReLU). The transitions pool in ceil mode, which changes nothing at
ImageNet sizes (every map is even there) and lets 28 px inputs reach the last block with a 1×1 map.
"""
from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from .tvnet import TorchvisionNet, dropout_head, seq, register_tv


def _build(tv_name: str):
    def build(num_classes, input_size, dropout) -> TorchvisionNet:
        net = getattr(tvm, tv_name)(weights=None, num_classes=num_classes)
        f = net.features
        stages = {"stem": seq(*((n, getattr(f, n)) for n in ("conv0", "norm0", "relu0", "pool0")))}
        for i in range(1, 4):
            f.get_submodule(f"transition{i}").pool.ceil_mode = True
            stages[f"block{i}"] = seq((f"denseblock{i}", getattr(f, f"denseblock{i}")),
                                      (f"transition{i}", getattr(f, f"transition{i}")))
        # torchvision applies the last ReLU as a function; here it is a module, so `activation` reaches it.
        stages["block4"] = seq(("denseblock4", f.denseblock4), ("norm5", f.norm5), ("relu5", nn.ReLU(inplace=True)))
        return TorchvisionNet(net, stages, seq(("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())),
                              dropout_head(net.classifier, dropout or 0.0))
    return build


for _name, _growth in (("densenet121", 32), ("densenet161", 48), ("densenet169", 32), ("densenet201", 32)):
    register_tv(_name, _build(_name), ("norm", "activation", "dropout", "init"), {},
                f"{_name}, torchvision's (growth rate {_growth}); `dropout` acts before the classifier.")
