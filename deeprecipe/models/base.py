"""The one head API every model shares: features(x), head(x), reset_classifier(n), named stages."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Classifier(nn.Module):
    """body (named stages) → pool → classifier. Subclasses fill the three parts.

    `features(x)` returns the pooled feature vector the classifier sees; `head(f)` maps it to
    logits. Stage names (`stage_names`) let transfer learning freeze or tap parts by name.
    """

    def __init__(self, stages: "OrderedDict[str, nn.Module]", pool: nn.Module, classifier: nn.Module):
        super().__init__()
        self.body = nn.Sequential(stages)
        self.pool = pool
        self.classifier = classifier

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.body.named_children()] + ["classifier"]

    def stage(self, name: str) -> nn.Module:
        return self.classifier if name == "classifier" else getattr(self.body, name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classifier(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def last_linear(self) -> tuple[nn.Module, str, nn.Linear]:
        parent, name, layer = self, "classifier", self.classifier
        if isinstance(layer, nn.Sequential):
            for child_name, child in reversed(list(layer.named_children())):
                if isinstance(child, nn.Linear):
                    return layer, child_name, child
        if not isinstance(layer, nn.Linear):
            raise TypeError("classifier has no final nn.Linear")
        return parent, name, layer

    @property
    def num_classes(self) -> int:
        return self.last_linear()[2].out_features

    def reset_classifier(self, num_classes: int) -> None:
        parent, name, old = self.last_linear()
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        setattr(parent, name, new)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
