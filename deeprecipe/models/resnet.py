"""ResNets (He et al. 2016): ImageNet `resnet18…152` and CIFAR `resnet20…110`, with `plain*` twins.

The module layout follows torchvision's resnet.py (blocks with conv1/bn1/conv2/bn2[/conv3/bn3] and
a `downsample` shortcut; bottlenecks stride in the 3×3 conv, "v1.5"), so a torchvision state
dict maps onto it by renaming prefixes only (see torchvision_compat.py). Stages: stem,
layer1…layer4 (layer1…layer3 for CIFAR nets), then the classifier.

CIFAR nets (paper §4.2): a 3×3 stem with 16 channels, three stages of n basic blocks with 16/32/64
channels, 6n+2 weighted layers. The shortcut that changes shape is option A (identity with
zero-padded channels, no parameters) as in the paper, or `shortcut="conv"` for option B
(1×1 projection). `plain*` nets are the same stacks without any shortcut.

The norm slot is named bn1/bn2/… whatever `norm` is, to keep the layout; `norm="none"` gives
the convolutions a bias instead.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .base import Classifier, GlobalAvgPool
from .layers import (activation as make_act, check_dropout, check_dropout_kind, dropout_layer, init_weights, linear,
                     norm2d)
from .registry import register_model


def conv3x3(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)


def conv1x1(c_in: int, c_out: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride, bias=bias)


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by `stride` and zero-pad the new channels; no parameters."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, downsample: nn.Module | None, norm: str,
                 activation: str | None, residual: bool = True):
        super().__init__()
        bias = norm == "none"
        self.conv1, self.bn1, self.act1 = conv3x3(c_in, planes, stride, bias), norm2d(norm, planes), make_act(activation)
        self.conv2, self.bn2 = conv3x3(planes, planes, 1, bias), norm2d(norm, planes)
        self.downsample = downsample
        self.residual = residual
        self.act_out = make_act(activation)

    def last_norm(self) -> nn.Module:
        return self.bn2

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.act_out(out)


class Bottleneck(BasicBlock):
    """1×1 reduce → 3×3 (strided) → 1×1 expand ×4."""
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, downsample: nn.Module | None, norm: str,
                 activation: str | None, residual: bool = True):
        nn.Module.__init__(self)
        bias, c_out = norm == "none", planes * self.expansion
        self.conv1, self.bn1, self.act1 = conv1x1(c_in, planes, 1, bias), norm2d(norm, planes), make_act(activation)
        self.conv2, self.bn2, self.act2 = conv3x3(planes, planes, stride, bias), norm2d(norm, planes), make_act(activation)
        self.conv3, self.bn3 = conv1x1(planes, c_out, 1, bias), norm2d(norm, c_out)
        self.downsample = downsample
        self.residual = residual
        self.act_out = make_act(activation)

    def last_norm(self) -> nn.Module:
        return self.bn3

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(Classifier):
    """stem → stages of residual blocks → global average pool → (dropout) → linear."""

    def __init__(self, block: type[BasicBlock], layers: list[int], widths: list[int], num_classes: int,
                 in_chans: int, stem: str = "imagenet", shortcut: str = "conv", residual: bool = True,
                 norm: str | None = "batch", activation: str | None = "relu", dropout: float = 0.0,
                 dropout_kind: str = "standard", init: str | None = "auto", zero_init_residual: bool = False):
        norm = "none" if norm is None else norm
        if stem not in ("imagenet", "small") or shortcut not in ("pad", "conv"):
            raise ValueError("stem must be 'imagenet' or 'small'; shortcut 'pad' or 'conv'")
        stages: "OrderedDict[str, nn.Module]" = OrderedDict(stem=self._stem(stem, in_chans, widths[0], norm, activation))
        self._knobs = dict(norm=norm, activation=activation, residual=residual)
        c_in = widths[0]
        for i, (n, planes) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            stage, c_in = self._stage(block, c_in, planes, n, stride, shortcut)
            if dropout_kind == "spatial" and dropout:
                stage.append(dropout_layer(dropout_kind, dropout, "features"))
            stages[f"layer{i + 1}"] = stage
        if dropout and dropout_kind != "spatial":
            classifier = nn.Sequential(dropout_layer(dropout_kind, dropout, "vector"),
                                       linear(c_in, num_classes, dropout_kind, dropout))
        else:
            classifier = nn.Linear(c_in, num_classes)
        super().__init__(stages, GlobalAvgPool(), classifier)
        init_weights(self, init)
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, BasicBlock) and isinstance(m.last_norm(), (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.zeros_(m.last_norm().weight)

    @staticmethod
    def _stem(kind: str, in_chans: int, width: int, norm: str, activation: str | None) -> nn.Sequential:
        bias = norm == "none"
        if kind == "imagenet":
            return nn.Sequential(OrderedDict(conv1=nn.Conv2d(in_chans, width, 7, 2, 3, bias=bias), bn1=norm2d(norm, width),
                                             act=make_act(activation), maxpool=nn.MaxPool2d(3, 2, 1)))
        return nn.Sequential(OrderedDict(conv1=conv3x3(in_chans, width, 1, bias), bn1=norm2d(norm, width),
                                         act=make_act(activation)))

    def _stage(self, block, c_in, planes, n, stride, shortcut) -> tuple[nn.Sequential, int]:
        c_out = planes * block.expansion
        downsample = None
        if self._knobs["residual"] and (stride != 1 or c_in != c_out):
            if shortcut == "pad" and c_out >= c_in:
                downsample = PadShortcut(stride, c_out - c_in)
            else:  # option B: 1×1 projection, torchvision's downsample.0 / downsample.1
                norm = self._knobs["norm"]
                downsample = nn.Sequential(conv1x1(c_in, c_out, stride, norm == "none"), norm2d(norm, c_out))
        blocks = [block(c_in, planes, stride, downsample, **self._knobs)]
        blocks += [block(c_out, planes, 1, None, **self._knobs) for _ in range(n - 1)]
        return nn.Sequential(*blocks), c_out


# name → (block, blocks per stage)
IMAGENET_CFGS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]), "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # 6n + 2


def _check(dropout, dropout_kind) -> dict:
    return dict(dropout=check_dropout(dropout), dropout_kind=check_dropout_kind(dropout_kind))


def _register_imagenet(name: str):
    block, layers = IMAGENET_CFGS[name]

    def builder(num_classes: int = 1000, in_chans: int = 3, width: int = 64, stem: str = "imagenet",
                norm: str | None = "batch", activation: str | None = "relu", dropout: float | None = 0.0,
                dropout_kind: str | None = "standard", init: str | None = "auto",
                zero_init_residual: bool = False) -> ResNet:
        if width < 1:
            raise ValueError("width must be ≥ 1")
        return ResNet(block, layers, [width * 2 ** i for i in range(4)], num_classes, in_chans, stem, "conv", True,
                      norm, activation, init=init, zero_init_residual=zero_init_residual,
                      **_check(dropout, dropout_kind))
    return _named(builder, name, f"{name}: {block.__name__} × {layers}; `width` is layer1's width (64), "
                                 "`stem='small'` uses a 3×3 stride-1 stem without max-pool for 32 px images.")


def _cifar(depth: int, residual: bool, num_classes, in_chans, width, shortcut, norm, activation, dropout,
           dropout_kind, init) -> ResNet:
    if width < 1:
        raise ValueError("width must be ≥ 1")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n] * 3, [width, width * 2, width * 4], num_classes, in_chans, "small", shortcut,
                  residual, norm, activation, init=init, **_check(dropout, dropout_kind))


def _named(fn, name: str, doc: str):
    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = doc
    return register_model(fn)


def _register_cifar(depth: int):
    doc = f"CIFAR {{}}{depth} (He et al. 2016 §4.2): 3 stages × {(depth - 2) // 6} basic blocks, widths 16/32/64{{}}."

    def resnet(num_classes: int = 10, in_chans: int = 3, width: int = 16, shortcut: str = "pad",
               norm: str | None = "batch", activation: str | None = "relu", dropout: float | None = 0.0,
               dropout_kind: str | None = "standard", init: str | None = "auto") -> ResNet:
        return _cifar(depth, True, num_classes, in_chans, width, shortcut, norm, activation, dropout, dropout_kind, init)

    def plain(num_classes: int = 10, in_chans: int = 3, width: int = 16, norm: str | None = "batch",
              activation: str | None = "relu", dropout: float | None = 0.0, dropout_kind: str | None = "standard",
              init: str | None = "auto") -> ResNet:
        return _cifar(depth, False, num_classes, in_chans, width, "pad", norm, activation, dropout, dropout_kind, init)

    _named(resnet, f"resnet{depth}", doc.format("resnet", "; shortcut 'pad' (option A) or 'conv' (option B)"))
    _named(plain, f"plain{depth}", doc.format("plain", ", no shortcuts"))


for _name in IMAGENET_CFGS:
    _register_imagenet(_name)
for _depth in CIFAR_DEPTHS:
    _register_cifar(_depth)


# ResNeXt (Xie et al. 2017: grouped 3×3 convolutions, "cardinality") and Wide ResNet (Zagoruyko &
# Komodakis 2016: wider bottlenecks) are torchvision's own networks, seated in the same stages.
def _tv_resnet(tv_name: str):
    from torchvision import models as tvm

    from .tvnet import TorchvisionNet, children, dropout_head, seq

    def build(num_classes, input_size, dropout) -> TorchvisionNet:
        net = getattr(tvm, tv_name)(weights=None, num_classes=num_classes)
        stages = OrderedDict(stem=seq(*children(net, "conv1", "bn1", "relu", "maxpool")))
        stages.update((f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5))
        return TorchvisionNet(net, stages, seq(("avgpool", net.avgpool), ("flatten", nn.Flatten())),
                              dropout_head(net.fc, dropout or 0.0))
    return build


def _register_tv_resnets() -> None:
    from .tvnet import register_tv
    for name, doc in (("resnext50_32x4d", "ResNeXt-50 32×4d: 32 groups of width 4 in each 3×3 conv"),
                      ("resnext101_32x8d", "ResNeXt-101 32×8d: 32 groups of width 8 in each 3×3 conv"),
                      ("wide_resnet50_2", "Wide ResNet-50-2: bottlenecks twice as wide as ResNet-50's")):
        register_tv(name, _tv_resnet(name), ("norm", "activation", "dropout", "init"), {},
                    f"{doc}; torchvision's network, stages stem, layer1…layer4.")


_register_tv_resnets()
