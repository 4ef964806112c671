"""Factories for the knobs every family shares: normalisation, activation, dropout, init.

Families call these instead of building layers themselves, so every knob means the same thing in
every model: `norm2d`/`norm1d`, `activation`, `dropout_layer` / `linear` (DropConnect), `init_weights`.
"""
from __future__ import annotations

import math

import torch
from torch import nn


NORMS = ("none", "batch", "layer", "instance", "group", "lrn")
ACTIVATIONS = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True), "elu": lambda: nn.ELU(inplace=True),
    "selu": lambda: nn.SELU(inplace=True), "gelu": nn.GELU, "silu": lambda: nn.SiLU(inplace=True),
}
DROPOUTS = ("standard", "spatial", "dropconnect")
INITS = ("auto", "default", "xavier", "xavier_normal", "xavier_uniform", "he", "he_normal", "he_uniform",
         "lecun", "lecun_normal", "lecun_uniform")


# The init each activation's variance argument was made for: LeCun for SELU (Klambauer et al. 2017), Xavier for the
# saturating tanh/sigmoid (Glorot & Bengio 2010), He for the ReLU family (He et al. 2015), whose half-zeroed
# outputs halve the variance.
MATCHED_INIT = {"selu": "lecun", "tanh": "xavier", "sigmoid": "xavier", "relu": "he", "leaky_relu": "he",
                "elu": "he", "gelu": "he", "silu": "he"}
_ACTIVATION_TYPES = {nn.SELU: "selu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu", nn.ReLU6: "relu",
                     nn.LeakyReLU: "leaky_relu", nn.PReLU: "leaky_relu", nn.ELU: "elu", nn.GELU: "gelu",
                     nn.SiLU: "silu", nn.Hardswish: "silu", nn.Mish: "silu"}


def _choice(kind: str, value, options) -> str:
    value = "none" if value is None else str(value).lower()
    if value not in options:
        raise ValueError(f"{kind} {value!r} is not one of {', '.join(options)}")
    return value


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm that normalises channels_last inputs on the CPU in the contiguous layout.

    PyTorch's CPU kernel for channels_last group norm strides across the channel dimension, which is slow when a
    group holds few channels: measured on a 2-core AVX2 CPU (64×16×28×28, forward + backward, CPU time),
    GroupNorm(16, 16) took 25 ms channels_last against 4.3 ms contiguous (batch norm: 17 ms), which made instance
    norm train ~6× slower than batch norm. Two layout copies cost far less. Same parameters and state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous() \
                and x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def norm2d(kind: str | None, channels: int, groups: int = 32) -> nn.Module:
    """A normalisation layer for (B, C, H, W) feature maps."""
    kind = _choice("norm", kind, NORMS)
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":   # normalise over (C, H, W) per sample
        return GroupNorm(1, channels)
    if kind == "instance":
        return GroupNorm(channels, channels)
    if kind == "group":
        # Wu & He's 32 groups, but never fewer than 4 channels a group: with 1 channel a group, group norm on a
        # narrow layer would silently be instance norm.
        g = math.gcd(channels, groups) or 1
        while g > 1 and channels // g < 4:
            g //= 2
        return GroupNorm(g, channels)
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)  # AlexNet 2012


def norm1d(kind: str | None, features: int) -> nn.Module:
    """A normalisation layer for (B, F) vectors (MLP hidden layers)."""
    kind = _choice("norm", kind, NORMS)
    if kind in ("none", "lrn"):
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(features)
    return nn.LayerNorm(features)  # layer/instance/group on a vector all reduce to layer norm


def activation(name: str | None) -> nn.Module:
    name = _choice("activation", name or "relu", tuple(ACTIVATIONS))
    return ACTIVATIONS[name]()


def model_activation(module: nn.Module) -> str | None:
    """The activation a model mostly uses (by count of activation modules), or None when it has none."""
    counts: dict[str, int] = {}
    for m in module.modules():
        name = _ACTIVATION_TYPES.get(type(m))
        if name:
            counts[name] = counts.get(name, 0) + 1
    return max(counts, key=counts.get) if counts else None


def init_family(scheme: str | None) -> str | None:
    """'he_uniform' → 'he'; None for 'default'/'auto'/unset."""
    family = str(scheme or "default").lower().partition("_")[0]
    return family if family in ("xavier", "he", "lecun") else None


def matched_init(module: nn.Module) -> str:
    """The init matched to the model's activation ('default' when it has no activation module)."""
    act = model_activation(module)
    return MATCHED_INIT.get(act, "default") if act else "default"


def init_weights(module: nn.Module, scheme: str | None) -> None:
    """Re-initialise conv/linear weights with the named scheme; biases to zero.

    xavier: σ² = 2/(fan_in+fan_out); he: σ² = 2/fan_in; lecun: σ² = 1/fan_in (normal or uniform).
    'auto' picks the one matched to the model's activation (`matched_init`) for every layer but the classifier's
    last, which keeps PyTorch's own, smaller initialisation, as torchvision's ResNets do: that layer feeds no
    activation, and the matched gain of √2 there spreads the untrained logits — an MLP, LeNet-5 or ResNet-20
    then started at a loss of 3.1–5 where chance is ln(10) = 2.3, which the doctor rightly fails.
    'default' keeps PyTorch's own initialisation everywhere.
    """
    scheme = _choice("init", scheme or "default", INITS)
    torch_head = scheme == "auto"
    if scheme == "auto":
        scheme = matched_init(module)
    if scheme == "default":
        return
    family, _, dist = scheme.partition("_")
    dist = dist or "normal"
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            w = m.weight
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
            var = {"xavier": 2.0 / (fan_in + fan_out), "he": 2.0 / fan_in, "lecun": 1.0 / fan_in}[family]
            with torch.no_grad():
                if dist == "normal":
                    w.normal_(0.0, math.sqrt(var))
                else:  # uniform(-a, a) has variance a²/3
                    a = math.sqrt(3.0 * var)
                    w.uniform_(-a, a)
                if m.bias is not None:
                    m.bias.zero_()
    last_linear = getattr(module, "last_linear", None)
    if torch_head and last_linear is not None:
        last_linear()[2].reset_parameters()


def check_dropout(rate: float | None) -> float:
    rate = 0.0 if rate is None else float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout {rate} must be in [0, 1)")
    return rate


def check_dropout_kind(kind: str | None, allowed: tuple[str, ...] = DROPOUTS) -> str:
    """'standard' (inverted dropout on activations), 'spatial' (drop whole channels of feature maps),
    'dropconnect' (drop weights of fully connected layers). 'channel' is an alias of 'spatial'."""
    kind = "standard" if kind is None else str(kind).lower()
    kind = "spatial" if kind == "channel" else kind
    return _choice("dropout_kind", kind, allowed)


def dropout_layer(kind: str, rate: float, where: str) -> nn.Module:
    """The dropout module for a position: `where` is 'features' (after conv stages, spatial dropout
    acts there) or 'vector' (between fully connected layers, standard dropout acts there).
    Returns nn.Identity when the chosen kind does not act at that position, so that layer indices
    (and state-dict keys) stay the same whatever the knob says."""
    if rate == 0.0:
        return nn.Identity()
    if where == "features" and kind == "spatial":
        return nn.Dropout2d(rate)
    if where == "vector" and kind == "standard":
        return nn.Dropout(rate)
    return nn.Identity()


class DropConnectLinear(nn.Linear):
    """nn.Linear whose weights are dropped during training (Wan et al. 2013, DropConnect).

    One Bernoulli(1-p) mask per forward pass, scaled by 1/(1-p) like inverted dropout, so eval uses
    the plain weights (the mean network) instead of the paper's sampled Gaussian inference.
    """

    def __init__(self, in_features: int, out_features: int, p: float, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return super().forward(x)
        keep = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return nn.functional.linear(x, self.weight * keep / (1.0 - self.p), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


def linear(in_features: int, out_features: int, dropout_kind: str = "standard", rate: float = 0.0) -> nn.Linear:
    """A hidden fully connected layer: DropConnectLinear when the dropout kind is 'dropconnect'."""
    if dropout_kind == "dropconnect" and rate > 0.0:
        return DropConnectLinear(in_features, out_features, rate)
    return nn.Linear(in_features, out_features)


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - kernel) // stride + 1


def check_input_size(model_name: str, input_size: int | None, minimum: int, hint: str = "") -> None:
    if input_size is not None and input_size < minimum:
        raise ValueError(f"input_size {input_size} is too small for {model_name} (needs ≥ {minimum} px)"
                         + (f"; {hint}" if hint else ""))
