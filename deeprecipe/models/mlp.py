"""Multi-layer perceptron: flatten → (linear → norm → activation → dropout) × depth → linear.

Knobs: depth (hidden layers, 0 = logistic regression), width, norm (batch / layer; the 2-D-only
kinds act as layer norm on a vector), activation, dropout with kind 'standard' (on activations)
or 'dropconnect' (on the hidden layers' weights), init.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import Classifier
from .layers import activation as make_act, check_dropout, check_dropout_kind, dropout_layer, init_weights, linear, norm1d
from .registry import register_model


class MLP(Classifier):
    def __init__(self, num_classes: int, in_features: int, depth: int = 2, width: int = 256,
                 norm: str | None = None, activation: str | None = "relu", dropout: float = 0.0,
                 init: str | None = "auto", dropout_kind: str = "standard"):
        if depth < 0 or width < 1:
            raise ValueError("depth must be ≥ 0 and width ≥ 1")
        stages: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
        features = in_features
        for i in range(depth):
            layers = [linear(features, width, dropout_kind, dropout), norm1d(norm, width), make_act(activation)]
            if dropout and dropout_kind == "standard":
                layers.append(dropout_layer(dropout_kind, dropout, "vector"))
            stages[f"layer{i + 1}"] = nn.Sequential(*layers)
            features = width
        super().__init__(stages, nn.Identity(), nn.Linear(features, num_classes))
        init_weights(self, init)


@register_model
def mlp(num_classes: int = 10, in_chans: int = 1, input_size: int = 28, depth: int = 2, width: int = 256,
        norm: str | None = None, activation: str | None = "relu", dropout: float | None = 0.0,
        init: str | None = "auto", dropout_kind: str | None = "standard") -> MLP:
    kind = check_dropout_kind(dropout_kind, ("standard", "dropconnect"))
    return MLP(num_classes, in_chans * input_size * input_size, depth, width, norm, activation,
               check_dropout(dropout), init, kind)
