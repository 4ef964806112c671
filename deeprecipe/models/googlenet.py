"""GoogLeNet (Szegedy et al. 2015) and Inception v3 (Szegedy et al. 2016): parallel branches, torchvision's code.

Inception modules run 1×1, 3×3, 5×5 (factorised in v3) and pooling branches side by side and concatenate
them. Stages: stem, inception3, inception4, inception5 (GoogLeNet); stem, mixed5, mixed6, mixed7 (v3).

`aux_logits=True` adds the side classifiers of the paper (after inception4a and 4d; after Mixed_6e in
v3). They run in training mode only; the trainer adds `aux_weight` × their loss (0.3 in the paper).
Their convolutions apply ReLU as a function (torchvision's BasicConv2d), so `activation` is refused.

Small inputs: GoogLeNet runs from 28 px. Inception v3 needs 75 px; below that its two stem max-pools
are left out (parameters unchanged), so it runs from 28 px too. Its side head needs 299 px.
"""
from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from .tvnet import AuxTap, TorchvisionNet, children, seq, register_tv

KNOBS = ("norm", "dropout", "init")
REFUSED = {"activation": "its BasicConv2d applies ReLU as a function, not a module that can be swapped"}


def _aux(net: nn.Module, name: str, aux_weight: float) -> tuple[str, nn.Module]:
    if not 0.0 <= aux_weight:
        raise ValueError("aux_weight must be ≥ 0")
    return name, AuxTap(getattr(net, name))


def _googlenet(num_classes, input_size, dropout, aux_logits: bool = False, aux_weight: float = 0.3) -> TorchvisionNet:
    net = tvm.googlenet(weights=None, num_classes=num_classes, aux_logits=aux_logits, init_weights=True,
                        dropout=0.2 if dropout is None else dropout)
    taps = {"aux1": [_aux(net, "aux1", aux_weight)], "aux2": [_aux(net, "aux2", aux_weight)]} if aux_logits else {}
    stages = dict(
        stem=seq(*children(net, "conv1", "maxpool1", "conv2", "conv3", "maxpool2")),
        inception3=seq(*children(net, "inception3a", "inception3b", "maxpool3")),
        inception4=seq(*children(net, "inception4a"), *taps.get("aux1", []),
                       *children(net, "inception4b", "inception4c", "inception4d"), *taps.get("aux2", []),
                       *children(net, "inception4e", "maxpool4")),
        inception5=seq(*children(net, "inception5a", "inception5b")))
    model = TorchvisionNet(net, stages, seq(("avgpool", net.avgpool), ("flatten", nn.Flatten())),
                           seq(("dropout", net.dropout), ("fc", net.fc)))
    model.aux_weight = aux_weight
    return model


def _inception_v3(num_classes, input_size, dropout, aux_logits: bool = False, aux_weight: float = 0.3) -> TorchvisionNet:
    if aux_logits and input_size is not None and input_size < 299:
        raise ValueError(f"aux_logits needs 299 px inputs (Inception v3's side head), not {input_size}")
    net = tvm.inception_v3(weights=None, num_classes=num_classes, aux_logits=aux_logits, init_weights=True,
                           dropout=0.5 if dropout is None else dropout)
    if input_size is not None and input_size < 75:  # too small for the ImageNet stem: keep the resolution
        net.maxpool1, net.maxpool2 = nn.Identity(), nn.Identity()
    stages = dict(
        stem=seq(*children(net, "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                           "Conv2d_4a_3x3", "maxpool2")),
        mixed5=seq(*children(net, "Mixed_5b", "Mixed_5c", "Mixed_5d")),
        mixed6=seq(*children(net, "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                   *([_aux(net, "AuxLogits", aux_weight)] if aux_logits else [])),
        mixed7=seq(*children(net, "Mixed_7a", "Mixed_7b", "Mixed_7c")))
    model = TorchvisionNet(net, stages, seq(("avgpool", net.avgpool), ("flatten", nn.Flatten())),
                           seq(("dropout", net.dropout), ("fc", net.fc)))
    model.aux_weight = aux_weight
    return model


register_tv("googlenet", _googlenet, KNOBS, REFUSED,
            "GoogLeNet (Inception v1), torchvision's; `aux_logits` adds the two side classifiers "
            "weighted by `aux_weight` in the loss.", extra=dict(aux_logits=False, aux_weight=0.3))
register_tv("inception_v3", _inception_v3, KNOBS, REFUSED,
            "Inception v3, torchvision's (factorised convolutions); `aux_logits` (299 px) adds the side "
            "classifier weighted by `aux_weight`.", extra=dict(aux_logits=False, aux_weight=0.3))
