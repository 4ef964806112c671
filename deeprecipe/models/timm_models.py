"""Any pytorch-image-models (timm) network as `model.name=timm:NAME`, with the head API and named stages.

timm is optional (`pip install 'deeprecipe[timm]'`). The network is timm's, unchanged, and runs its own
forward; deeprecipe adds the head API (`features` = timm's pre-logits, `head` = its classifier) and stages
from timm's `feature_info`: stage k holds every parameter registered from the end of stage k-1 up to the
end of feature module k (so the stem joins the first stage, and what follows the last feature module —
EfficientNet's conv_head, ConvNeXt's head norm — joins the last). Stage names are the feature modules'
paths with dots as underscores (`layer1`, `blocks_4`).

Weights never come from the network: HF_HUB_OFFLINE is set before timm is imported, and weights load from
a local `.safetensors`/`.pth` file (`model.pretrained=FILE`) or, with `model.pretrained=hf-cache`, from the
file the local Hugging Face cache holds for the model's default pretrained tag.
The pretrained configuration's mean/std and input size are on the model as `pretrained_mean`,
`pretrained_std`, `pretrained_input_size`.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import DeepRecipeError, did_you_mean
from .layers import check_dropout, init_weights

PREFIX = "timm:"
HF_CACHE = "hf-cache"
REFUSED = {"norm": "timm builds its own layers; choose a timm variant instead",
           "activation": "timm builds its own layers; choose a timm variant instead"}


def import_timm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing file is an error, never a download
    try:
        import timm
    except ImportError:
        raise DeepRecipeError("timm models need the timm package, which is not installed",
                              "pip install 'deeprecipe[timm]'") from None
    return timm


class StageGroup:
    """Several parameters of a timm network acting as one stage: what freezing, per-stage learning
    rates and feature taps need (parameters, modules, name prefixes, a forward hook)."""

    def __init__(self, names: list[str], params: list[nn.Parameter], modules: list[nn.Module], tap: nn.Module):
        self.prefixes, self._params, self._modules, self.tap = names, params, modules, tap

    def parameters(self):
        return iter(self._params)

    def modules(self):
        return iter(self._modules)

    def register_forward_hook(self, hook):
        return self.tap.register_forward_hook(hook)


class TimmNet(nn.Module):
    """A timm network with deeprecipe's head API; its state-dict keys are timm's under `net.`."""

    def __init__(self, net: nn.Module, timm_name: str):
        super().__init__()
        self.net = net
        self.timm_name = timm_name
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        self.pretrained_mean = list(cfg.get("mean", ())) or None
        self.pretrained_std = list(cfg.get("std", ())) or None
        self.pretrained_input_size = list(cfg.get("input_size", ())) or None
        self._stages = self._group_stages()

    def _group_stages(self) -> dict[str, StageGroup]:
        info = getattr(self.net, "feature_info", None)
        feats = [d["module"] for d in info] if info is not None else []
        order = {name: i for i, (name, _) in enumerate(self.net.named_modules())}
        modules = dict(self.net.named_modules())
        ends = [order[f] + len(list(modules[f].named_modules())) - 1 for f in feats]
        head_ids = {id(m) for m in self.net.get_classifier().modules()}
        names = [f.replace(".", "_") for f in feats] or ["body"]
        groups = {n: ([], [], [], modules[f] if feats else self.net) for n, f in zip(names, feats or [""])}

        def stage_of(path: str) -> str:
            q = order[path]
            return next((n for n, e in zip(names, ends) if q <= e), names[-1])

        for path, m in self.net.named_modules():
            if id(m) in head_ids:
                continue
            g = groups[stage_of(path)]
            g[2].append(m)
            for pname, p in m.named_parameters(recurse=False):
                g[0].append(f"net.{path}.{pname}" if path else f"net.{pname}")
                g[1].append(p)
        return {n: StageGroup(*g) for n, g in groups.items()}

    # -------------------------------------------------------------------------------- the head API
    @property
    def stage_names(self) -> list[str]:
        return list(self._stages) + ["classifier"]

    def stage(self, name: str):
        return self.net.get_classifier() if name == "classifier" else self._stages[name]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self.net.get_classifier()(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def last_linear(self) -> tuple[nn.Module, str, nn.Linear]:
        head = self.net.get_classifier()
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise TypeError(f"timm:{self.timm_name} has no final nn.Linear")
        return head, "", linears[-1]

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        device = next(self.net.parameters()).device
        self.net.reset_classifier(num_classes)
        self.net.get_classifier().to(device)


def build_timm(name: str, num_classes: int = 1000, in_chans: int = 3, input_size: int | None = None,
               dropout: float | None = None, drop_path: float | None = None, init: str | None = None,
               **knobs) -> TimmNet:
    timm = import_timm()
    bad = [k for k in knobs]
    if bad:
        reason = REFUSED.get(bad[0], "timm models take dropout, drop_path and init")
        raise DeepRecipeError(f"model {PREFIX}{name!s} does not take {bad[0]!r}: {reason}",
                              "its knobs are: dropout, drop_path, init")
    if not timm.is_model(name):
        raise DeepRecipeError(f"timm has no model {name!r}",
                              did_you_mean(name, timm.list_models(), "see timm.list_models()", prefix=PREFIX))
    extra = {}
    if dropout is not None:
        extra["drop_rate"] = check_dropout(dropout)
    if drop_path is not None:
        extra["drop_path_rate"] = check_dropout(drop_path)
    try:
        net = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **extra)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DeepRecipeError(f"timm:{name} could not be built: {str(err).splitlines()[0]}",
                              "check the knobs and in_chans for this timm model") from None
    model = TimmNet(net, name)
    if init is not None:
        init_weights(model, init)
    return model


def cached_weights(model: TimmNet) -> Path:
    """The weights file the local Hugging Face cache holds for the model's default pretrained tag."""
    import_timm()
    from huggingface_hub import try_to_load_from_cache
    cfg = model.net.pretrained_cfg or {}
    repo = cfg.get("hf_hub_id")
    if not repo:
        raise DeepRecipeError(f"timm:{model.timm_name} has no Hugging Face weights in timm's registry",
                              "give model.pretrained=FILE (.safetensors or .pth)")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    raise DeepRecipeError(f"model.pretrained=hf-cache: {repo}/model.safetensors is not in the local Hugging Face cache",
                          "copy it there on a machine with internet, or give model.pretrained=FILE")
