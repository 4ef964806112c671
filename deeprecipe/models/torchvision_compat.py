"""Map torchvision state dicts (alexnet, vgg*, vgg*_bn, resnet18…152) onto deeprecipe's models.

deeprecipe's layouts mirror torchvision's, so the mapping is a renaming of key prefixes:

- resnet: `conv1.`/`bn1.` → `body.stem.conv1.`/`body.stem.bn1.`, `layerN.` → `body.layerN.`, `fc.` → `classifier.`
- alexnet: `features.{0,3,6,8,10}.` → `body.conv{1..5}.0.`, `classifier.{1,4,6}.` keep their names
  (load into `create_model("alexnet", norm="none")` to get torchvision's network exactly; the
  default adds the paper's parameter-free LRN).
- vgg: `features.i.` → `body.blockB.j.` (computed from the config table), `classifier.{0,3,6}.` keep theirs.
- every network built from torchvision's own code (googlenet, densenet*, mobilenet*, efficientnet*, …,
  see tvnet.py): the model records each torchvision key at build time (`torchvision_keys`); DenseNet
  files from before torchvision 0.3 (`denselayer1.norm.1.weight`) are renamed first, as torchvision does.
"""
from __future__ import annotations

import re

import torch

from ..errors import DeepRecipeError
from .alexnet import CFGS as ALEXNET_CFGS
from .resnet import IMAGENET_CFGS
from .vgg import CFGS as VGG_CFGS, LAYERS_PER_CONV


def _resnet_prefixes() -> dict[str, str]:
    prefixes = {"conv1.": "body.stem.conv1.", "bn1.": "body.stem.bn1.", "fc.": "classifier."}
    prefixes.update({f"layer{i}.": f"body.layer{i}." for i in range(1, 5)})
    return prefixes


def _alexnet_prefixes() -> dict[str, str]:
    # torchvision's features: conv, relu[, maxpool] per stage → conv indices 0, 3, 6, 8, 10.
    prefixes, index = {}, 0
    for stage, (*_, pool) in enumerate(ALEXNET_CFGS["imagenet"], start=1):
        prefixes[f"features.{index}."] = f"body.conv{stage}.0."
        index += 3 if pool else 2
    prefixes.update({f"classifier.{i}.": f"classifier.{i}." for i in (1, 4, 6)})
    return prefixes


def _vgg_prefixes(cfg_name: str, batch_norm: bool) -> dict[str, str]:
    # torchvision's features: conv[, bn], relu per width, maxpool per block.
    prefixes, index = {}, 0
    for block, widths in enumerate(VGG_CFGS[cfg_name], start=1):
        for j in range(len(widths)):
            prefixes[f"features.{index}."] = f"body.block{block}.{LAYERS_PER_CONV * j}."
            if batch_norm:
                prefixes[f"features.{index + 1}."] = f"body.block{block}.{LAYERS_PER_CONV * j + 1}."
            index += 3 if batch_norm else 2
        index += 1  # max-pool
    prefixes.update({f"classifier.{i}.": f"classifier.{i}." for i in (0, 3, 6)})
    return prefixes


_OLD_DENSENET = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def torchvision_keys(model_name: str) -> dict[str, str] | None:
    """torchvision key → deeprecipe key for networks built from torchvision's code (None for the others).
    Built on the meta device with auxiliary heads on, so files that carry them map completely."""
    from .registry import create_model, get_builder, model_knobs
    get_builder(model_name)
    knobs = {"aux_logits": True} if "aux_logits" in model_knobs(model_name) else {}
    with torch.device("meta"):
        model = create_model(model_name, input_size=299 if knobs else None, **knobs)
    return getattr(model, "torchvision_keys", None)


def rename_by_table(table: dict[str, str], model_name: str, state_dict: dict) -> dict:
    out, unknown = {}, []
    for key, value in state_dict.items():
        key = _OLD_DENSENET.sub(r"\1\2", key)
        if key in table:
            out[table[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise DeepRecipeError(f"{len(unknown)} key(s) of the {model_name} state dict are not torchvision's "
                              f"{model_name} layout, e.g. {unknown[0]!r}",
                              "pass a torchvision.models state dict of the same architecture")
    return out


def key_prefixes(model_name: str) -> dict[str, str]:
    """torchvision key prefix → deeprecipe key prefix for one architecture."""
    if model_name in IMAGENET_CFGS:
        return _resnet_prefixes()
    if model_name == "alexnet":
        return _alexnet_prefixes()
    cfg_name = model_name.removesuffix("_bn")
    if cfg_name in VGG_CFGS:
        return _vgg_prefixes(cfg_name, model_name.endswith("_bn"))
    supported = ["alexnet", *VGG_CFGS, *(f"{v}_bn" for v in VGG_CFGS), *IMAGENET_CFGS,
                 "and every model built from torchvision's code (docs/models.md)"]
    raise DeepRecipeError(f"no torchvision weight mapping for model {model_name!r}",
                          f"torchvision weights exist for: {', '.join(supported)}")


def convert_torchvision_state_dict(model_name: str, state_dict: dict) -> dict:
    """Rename the keys of a torchvision state dict so that `create_model(model_name).load_state_dict` takes it.

    Tensors are not copied. A key with no counterpart is an error, never dropped silently.
    """
    table = torchvision_keys(model_name)
    if table is not None:
        return rename_by_table(table, model_name, state_dict)
    prefixes = key_prefixes(model_name)
    # Longest prefix first, so `layer1.` never shadows a longer, more specific prefix.
    ordered = sorted(prefixes, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(p) for p in ordered))
    out, unknown = {}, []
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match is None:
            unknown.append(key)
            continue
        out[prefixes[match.group(0)] + key[match.end():]] = value
    if unknown:
        raise DeepRecipeError(f"{len(unknown)} key(s) of the {model_name} state dict are not torchvision's "
                              f"{model_name} layout, e.g. {unknown[0]!r}",
                              "pass a torchvision.models state dict of the same architecture")
    return out
