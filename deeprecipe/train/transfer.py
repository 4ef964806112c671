"""Transfer learning: pretrained weights from local files, freezing by stage, per-stage learning rates.

Weights come only from local files, never the network:
  * a deeprecipe run folder or checkpoint (``checkpoints/best.pt``), loaded with weights_only=True;
  * a torchvision state dict (``resnet18-….pth``), renamed by ``torchvision_compat``;
  * a ``.safetensors`` file (needs the optional ``safetensors`` package).
A head whose class count differs is left freshly initialised; any other shape mismatch is an error
that lists every mismatched layer.

Strategies (``transfer.strategy``) act on the model's named stages (``Classifier.stage_names``):
the head is always trained; ``linear_probe`` freezes every body stage, ``finetune_last:N`` trains the
last N body stages, ``gradual`` unfreezes one more stage every ``unfreeze_every`` epochs (ULMFiT),
``finetune_all`` trains everything. ``lr_factor`` < 1 gives earlier stages smaller learning rates.
Frozen stages keep their BatchNorm statistics: their norm layers stay in eval mode during training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import DeepRecipeError
from ..models.timm_models import cached_weights
from ..models.torchvision_compat import convert_torchvision_state_dict, rename_by_table, torchvision_keys
from ..utils import note
from .checkpoint import load_checkpoint, resolve_checkpoint

_BATCHNORM = (nn.modules.batchnorm._BatchNorm,)


# ------------------------------------------------------------------------------------------ reading weights
def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors in a local weights file (or run folder) and the kind of file it was."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DeepRecipeError(f"model.pretrained: {p} does not exist",
                              "give a run folder, a checkpoint, a torchvision .pth or a .safetensors file on disk")
    if p.suffix == ".safetensors":
        return _read_safetensors(p), "safetensors"
    obj = load_checkpoint(resolve_checkpoint(p, "best.pt"))
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            return _tensors_only(obj[key], p), "deeprecipe" if "format" in obj else "checkpoint"
    return _tensors_only(obj, p), "state_dict"


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise DeepRecipeError(f"{p} is a safetensors file but the safetensors package is missing",
                              "pip install 'deeprecipe[safetensors]'") from None
    try:
        return load_file(str(p))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise DeepRecipeError(f"{p} is not a readable safetensors file ({type(err).__name__})",
                              "re-export the weights with safetensors.torch.save_file") from None


def _tensors_only(obj: dict, p: Path) -> dict[str, torch.Tensor]:
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise DeepRecipeError(f"{p} holds no weight tensors", "give a state dict or a deeprecipe checkpoint")
    return tensors


def to_deeprecipe_names(model: nn.Module, state: dict[str, torch.Tensor], model_name: str | None) -> dict[str, torch.Tensor]:
    """Keys already deeprecipe's pass through; otherwise they are torchvision's and get renamed."""
    own = set(model.state_dict())
    if len(own & set(state)) >= len(own) // 2:
        return state
    if hasattr(model, "timm_name"):  # a timm file: timm's own keys, under the wrapper's `net.`
        return {k if k.startswith("net.") else f"net.{k}": v for k, v in state.items()}
    if not model_name:
        return state
    table = getattr(model, "torchvision_keys", None)
    try:
        if table is not None:  # built from torchvision's code: the model knows every key
            # the full layout too, so side heads in the file (GoogLeNet's aux1/aux2) are known, then unused
            full = torchvision_keys(model_name) or {} if model_name else {}
            return rename_by_table({**full, **table}, model_name, state)
        return convert_torchvision_state_dict(model_name, state)
    except (KeyError, ValueError) as err:
        raise DeepRecipeError(f"the weights are neither deeprecipe's nor torchvision's {model_name} ({err})",
                              "give weights saved for the same architecture as model.name") from None


# ------------------------------------------------------------------------------------------ loading
@dataclass
class LoadReport:
    source: str
    kind: str
    loaded: int = 0
    head_replaced: bool = False
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def fresh_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Prefixes of the layers that classify: the head and any auxiliary heads (GoogLeNet, Inception)."""
    return (head_prefix(model), *getattr(model, "aux_prefixes", []))


def head_prefix(model: nn.Module) -> str:
    """State-dict prefix of the final linear layer (`classifier.` or `classifier.1.`)."""
    if not hasattr(model, "last_linear"):
        return "classifier."
    _, _, layer = model.last_linear()
    names = {id(m): n for n, m in model.named_modules()}
    return names[id(layer)] + "."


def load_pretrained(model: nn.Module, path: str | Path, model_name: str | None = None, new_head: bool = True,
                    verbose: bool = True) -> LoadReport:
    """Copy matching weights from `path` into `model`. The head stays freshly initialised when `new_head`
    (a new task) or when the class count differs."""
    if str(path) == "hf-cache":
        if not hasattr(model, "timm_name"):
            raise DeepRecipeError("model.pretrained=hf-cache is for timm models (model.name=timm:NAME)",
                                  "give a weights file on disk for this model")
        path = cached_weights(model)
    state, kind = read_state_dict(path)
    state = to_deeprecipe_names(model, state, model_name or getattr(model, "name", None))
    own = model.state_dict()
    head = fresh_prefixes(model)
    report = LoadReport(str(path), kind)
    usable = {}
    for key, want in own.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(want.shape):
            if key.startswith(head):
                report.head_replaced = True
            else:
                report.mismatched.append(f"{key}: file {tuple(state[key].shape)} vs model {tuple(want.shape)}")
        else:
            usable[key] = state[key]
    report.unexpected = [k for k in state if k not in own]
    body_missing = [k for k in report.missing if not k.startswith(head)]
    if report.mismatched or body_missing or not usable:
        problems = report.mismatched + [f"{k}: not in file" for k in body_missing]
        shown = "; ".join(problems[:8]) + (f"; … {len(problems) - 8} more" if len(problems) > 8 else "")
        raise DeepRecipeError(f"model.pretrained {path} does not fit this model ({len(problems)} layer(s)): {shown}",
                              "use weights of the same architecture and knobs (model.name, widths, in_chans, …)")
    if new_head or any(k.startswith(head) for k in report.missing):
        report.head_replaced = True
    if report.head_replaced:  # a head for another label set: keep it freshly initialised
        usable = {k: v for k, v in usable.items() if not k.startswith(head)}
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    if verbose:
        note(f"pretrained: {report.loaded} tensors from {path} ({kind})"
             + ("; new head" if report.head_replaced else ""))
    return report


# ------------------------------------------------------------------------------------------ stages
def trainable_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the body stages that hold parameters, input side first; the head excluded."""
    if not hasattr(model, "stage_names"):
        raise DeepRecipeError(f"{type(model).__name__} has no named stages", "transfer strategies need a deeprecipe Classifier")
    out = []
    for name in model.stage_names:
        if name == "classifier":
            continue
        module = model.stage(name)
        if any(True for _ in module.parameters()):
            out.append((name, module))
    return out


def parse_strategy(strategy: str, n_stages: int) -> int | None:
    """How many body stages train from the start (None: gradual)."""
    if strategy == "finetune_all":
        return n_stages
    if strategy == "linear_probe":
        return 0
    if strategy == "gradual":
        return None
    return min(n_stages, int(strategy.split(":", 1)[1]))


def stage_lr_scale(model: nn.Module, factor: float) -> dict[str, float]:
    """Discriminative learning rates: the head at 1, each earlier stage `factor` times the next."""
    if factor == 1.0:
        return {}
    names = {id(m): n for n, m in model.named_modules()}
    stages = trainable_stages(model)
    return {prefix: factor ** (len(stages) - i) for i, (_, m) in enumerate(stages)
            for prefix in _stage_prefixes(names, m)}


def _freeze_bn_hook(module: nn.Module, args) -> None:
    module.train(False)  # runs after model.train(): frozen statistics stay frozen


def _stage_prefixes(names: dict[int, str], module) -> list[str]:
    """Parameter-name prefixes of one stage: its module's path, or a timm stage's parameter names."""
    return list(module.prefixes) if hasattr(module, "prefixes") else [names[id(module)] + "."]


class StageFreezer:
    """Freezes body stages (parameters and BatchNorm statistics) and unfreezes them from the top."""

    def __init__(self, model: nn.Module):
        self.stages = trainable_stages(model)
        self.handles: dict[str, list] = {}

    @property
    def n_trainable(self) -> int:
        return len(self.stages) - len(self.handles)

    def set_trainable(self, n_last: int) -> None:
        """Train the last `n_last` body stages, freeze the rest."""
        cut = len(self.stages) - max(0, min(n_last, len(self.stages)))
        for i, (name, module) in enumerate(self.stages):
            frozen = i < cut
            for p in module.parameters():
                p.requires_grad_(not frozen)
            if frozen and name not in self.handles:
                self.handles[name] = [m.register_forward_pre_hook(_freeze_bn_hook)
                                      for m in module.modules() if isinstance(m, _BATCHNORM)]
            elif not frozen and name in self.handles:
                for h in self.handles.pop(name):
                    h.remove()


@dataclass
class TransferPlan:
    """What a Trainer needs from the transfer config: per-stage lr scales and hooks that freeze."""
    strategy: str
    unfreeze_every: int
    lr_scale: dict[str, float]

    def trainable_at(self, epochs_done: int, n_stages: int) -> int:
        start = parse_strategy(self.strategy, n_stages)
        return start if start is not None else min(n_stages, epochs_done // self.unfreeze_every)

    def attach(self, trainer) -> None:
        """Freeze after the optimizer exists: it holds every parameter, frozen ones simply get no
        gradient, so stages unfrozen later train without rebuilding it (and resume still matches)."""
        if self.strategy == "finetune_all":
            return
        freezer = StageFreezer(trainer.model)
        n = len(freezer.stages)

        def update(tr, row=None):
            before = freezer.n_trainable
            freezer.set_trainable(self.trainable_at(tr.state.epoch, n))
            if row is not None and freezer.n_trainable > before and tr.show_progress and tr.state.epoch < tr.cfg.train.epochs:
                note(f"gradual unfreezing: {freezer.n_trainable}/{n} stages train from epoch {tr.state.epoch + 1}")

        update(trainer)
        trainer.hooks["on_fit_start"].append(update)
        if self.strategy == "gradual":
            trainer.hooks["on_epoch_end"].append(update)


def plan_transfer(model: nn.Module, cfg) -> TransferPlan:
    t = cfg.transfer
    scale = stage_lr_scale(model, t.lr_factor) if t.lr_factor != 1.0 else {}
    return TransferPlan(t.strategy, t.unfreeze_every, scale)


# ------------------------------------------------------------------------------------------ features
@torch.no_grad()
def extract_features(model: nn.Module, stage: str, batches) -> torch.Tensor:
    """The output of one named stage for each batch, global-average-pooled when 4-D, as (N, D)."""
    if stage not in getattr(model, "stage_names", []):
        names = ", ".join(getattr(model, "stage_names", [])) or "none"
        raise DeepRecipeError(f"--stage {stage!r} is not a stage of this model", f"its stages are: {names}")
    captured: list[torch.Tensor] = []

    def tap(module, args, output):
        out = output.float()
        captured.append((out.mean(dim=(2, 3)) if out.ndim == 4 else out.flatten(1)).cpu())

    handle = model.stage(stage).register_forward_hook(tap)
    try:
        model.eval()
        for x in batches:
            model(x)
    finally:
        handle.remove()
    return torch.cat(captured) if captured else torch.empty(0, 0)
