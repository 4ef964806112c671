"""The run configuration: typed sections, YAML files and ``--set a.b=c`` overrides.

Every section forbids unknown keys so a typo is an error naming the key, never silently ignored.
The ``model`` section alone accepts extra keys: they are family-specific knobs (``depth``, ``width``…)
passed to ``create_model``, which rejects the ones its family does not take.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .augment import build_pipeline
from .errors import DeepRecipeError, did_you_mean


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    spec: str = "builtin:mnist5k"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split_seed: int = 0
    image_size: int | None = Field(None, gt=0, description="the model's square input size (crop/pad: 224 when "
                                                           "unset; squash: the commonest image size when unset)")
    resize: Literal["auto", "crop", "squash", "pad"] = Field(
        "auto", description="crop: random-resized crops for training, short side to image_size/crop_pct + centre "
                            "crop for evaluation (photos); squash: stretch to image_size (same-size small images); "
                            "pad: letterbox the whole image; auto: squash for builtin/npz/release sets and folders "
                            "of same-size images up to 64 px, crop for other folders")
    crop_pct: float = Field(0.875, gt=0.0, le=1.0, description="evaluation centre crop as a fraction of the short side")
    crop_scale: tuple[float, float] = Field((0.25, 1.0), description="random-resized-crop area range (fraction)")
    crop_ratio: tuple[float, float] = Field((0.75, 4 / 3), description="random-resized-crop aspect-ratio range")
    cache_dir: str | None = Field(None, description="where decoded photo folders are cached (default: "
                                                    "$DEEPRECIPE_CACHE or ~/.cache/deeprecipe)")
    channels: int | None = Field(None, description="force 1 (grayscale) or 3 (RGB)")
    augment: list[str | dict[str, Any]] = Field(default_factory=lambda: ["translate:2"],
                                                description="batched augmentations, e.g. ['hflip', 'translate:4'] "
                                                            "or mappings {name: cutout, size: 8}")
    loader: Literal["auto", "memory", "stream"] = "auto"
    memory_limit_mb: float = Field(4096, gt=0, description="loader=auto streams image folders whose decoded "
                                                              "size would exceed this; a decoded photo cache "
                                                              "larger than this is memory-mapped, not loaded")
    workers: int = Field(0, ge=0)
    folds: int = Field(0, ge=0, description="k-fold cross-validation when ≥ 2")
    repeats: int = Field(0, ge=0, description="repeated random splits when ≥ 2")
    unlabeled: str | None = None

    @field_validator("channels")
    @classmethod
    def _channels(cls, v):
        if v not in (None, 1, 3):
            raise ValueError("must be 1 or 3")
        return v

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _range(cls, v):
        if not 0 < v[0] <= v[1]:
            raise ValueError("must be a range lo ≤ hi with lo > 0")
        return v

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, v):
        if v[1] > 1:
            raise ValueError("area fractions must be at most 1")
        return v

    @model_validator(mode="after")
    def _fractions(self):
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be below 1 (something must be left to train on)")
        return self


class ModelConfig(BaseModel):
    # extra="allow": family-specific knobs go to create_model, which rejects unknown ones.
    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = "convnet"
    norm: str | None = None
    activation: str | None = None
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    init: str | None = None
    pretrained: str | None = None

    def knobs(self) -> dict[str, Any]:
        """Keyword arguments for create_model: the set knobs and every extra key."""
        out = {k: v for k, v in self.model_dump().items() if k not in ("name", "pretrained") and v is not None}
        return out


class OptimConfig(_Section):
    name: Literal["sgd", "nesterov", "rmsprop", "adam", "adamw", "nadam", "adamax"] = "adamw"
    lr: float = Field(1e-2, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="RMSprop's ρ: decay of its running mean of squared "
                                                             "gradients (torch's alpha; Hinton's lectures use 0.9)")
    no_decay_bias_norm: bool = True


class ScheduleConfig(_Section):
    name: Literal["constant", "cosine", "step", "multistep", "exponential", "onecycle", "plateau"] = "onecycle"
    warmup_epochs: float = Field(0.0, ge=0.0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    step_size: float = Field(10, gt=0, description="epochs between decays for 'step'")
    milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75],
                                    description="for 'multistep': epochs, or fractions of the run when < 1")
    gamma: float = Field(0.1, gt=0.0)
    pct_start: float = Field(0.25, gt=0.0, lt=1.0)
    patience: int = Field(3, ge=0)
    monitor: Literal["val_loss", "val_acc", "train_loss", "train_acc"] = Field(
        "val_loss", description="for 'plateau': the epoch metric watched (losses must fall, accuracies rise); "
                                "without a validation split the training one of the same kind")


class RegularizeConfig(_Section):
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    l1: float = Field(0.0, ge=0.0)
    l2: float = Field(0.0, ge=0.0, description="L2 penalty added to the loss (coupled), unlike optim.weight_decay")
    max_norm: float | None = Field(None, gt=0.0)
    clip_norm: float | None = Field(None, gt=0.0)
    clip_value: float | None = Field(None, gt=0.0)
    early_stopping: bool = False
    monitor: Literal["val_loss", "val_acc"] = "val_loss"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = Field(True, description="at the end, load the best epoch's weights into the model")
    ema: float | None = Field(None, gt=0.0, lt=1.0,
                              description="EMA decay of the weights (warmed up as min(ema, (1+n)/(10+n)) over the "
                                          "n steps so far), e.g. 0.99 for a few thousand steps, 0.999 for more")


class TrainConfig(_Section):
    epochs: int = Field(8, ge=1)
    batch_size: int | None = Field(None, ge=1, description="training images a step (per process); default: 64, or 32 "
                                                        "or 16 where 64 would give the run under 100 optimizer steps")
    eval_batch_size: int = Field(512, ge=1)
    seed: int = 0
    deterministic: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool | None = None
    compile: bool = False
    device: str = "auto"
    threads: int | None = Field(None, ge=1, description="CPU threads; default: the cores not busy with other work")
    nan_policy: Literal["stop", "rollback"] = "stop"
    sync_bn: bool = Field(False, description="SyncBatchNorm across processes under torchrun/DDP")
    checkpoint_every: int = Field(1, ge=1, description="epochs between last.pt saves")


class SearchConfig(_Section):
    space: dict[str, Any] = Field(default_factory=dict)
    trials: int = Field(10, ge=1)
    epochs: int = Field(2, ge=1)
    refine_trials: int = Field(0, ge=0)
    refine_epochs: int | None = Field(None, ge=1)
    storage: str | None = None
    study: str | None = None
    sampler: Literal["random", "tpe", "grid"] = Field("random", description="Optuna's RandomSampler, TPESampler "
                                                                            "or GridSampler (about `trials` points)")
    pruner: Literal["asha", "hyperband", "median", "none"] = Field(
        "asha", description="stop weak trials early: successive halving (ASHA), Hyperband, median, or none")
    budget: int | None = Field(None, ge=1, description="coarse stage: start no trial once the trials have run this "
                                                       "many epochs in all (pruned trials cost only what they ran)")


class RecipeConfig(_Section):
    """`deeprecipe recipe`: the budget of each automated step (search.space, when set, replaces the lr range)."""
    overfit_samples: int = Field(50, ge=10, le=100)
    overfit_steps: int = Field(200, ge=1)
    lr_method: Literal["short-runs", "range"] = Field(
        "short-runs", description="step 3: short runs of the configured length at rates 1…1e-4 (closer to the best "
                                  "rate of full runs, docs/recipe.md) or one range test of lr_find_steps (cheaper)")
    lr_find_steps: int = Field(100, ge=10)
    lr_span: float = Field(4.0, gt=1.0, description="coarse lr range: lr-find suggestion ÷/× this")
    weight_decay: tuple[float, float] | None = Field(
        None, description="coarse weight-decay range (log, 0 also tried); default by optimizer: 1e-5–1e-2, "
                          "adamw (decoupled) 1e-4–1e-1")
    trials: int = Field(12, ge=1, description="most coarse trials")
    search_epochs: int = Field(3, ge=1, description="epochs of a coarse trial that is not pruned")
    search_budget: int = Field(12, ge=1, description="epochs the coarse stage may spend in all")
    refine_trials: int = Field(3, ge=0)
    refine_epochs: int = Field(6, ge=1)
    final_epochs: int | None = Field(
        None, ge=1, description="epochs of the final run; default twice train.epochs (the search compared "
                                "settings on short runs; the final run trains the chosen ones longer)")

    @field_validator("weight_decay")
    @classmethod
    def _decay_range(cls, v):
        if v is not None and not 0 < v[0] < v[1]:
            raise ValueError("must be [low, high] with 0 < low < high (0 itself is always tried too)")
        return v


class LogConfig(_Section):
    tensorboard: bool = False
    steps_every: int = Field(10, ge=1, description="log every Nth step to steps.jsonl")


class TransferConfig(_Section):
    strategy: str = Field("finetune_all", description="finetune_all | linear_probe | finetune_last:N | gradual")
    lr_factor: float = Field(1.0, gt=0.0, le=1.0,
                             description="each earlier stage trains at this factor of the next stage's lr")
    unfreeze_every: int = Field(1, ge=1, description="for 'gradual': epochs between unfreezing one more stage")
    new_head: bool = Field(True, description="start the classifier afresh on pretrained weights (false: keep it "
                                             "when the class count matches, to continue training on the same classes)")

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v):
        head, _, n = v.partition(":")
        if v in ("finetune_all", "linear_probe", "gradual") or (head == "finetune_last" and n.isdigit() and int(n) >= 1):
            return v
        raise ValueError("must be finetune_all, linear_probe, finetune_last:N (N ≥ 1) or gradual")


class DistillConfig(_Section):
    teacher: str | None = Field(None, description="run folder or checkpoint of the teacher")
    temperature: float = Field(4.0, gt=0.0)
    alpha: float = Field(0.7, ge=0.0, le=1.0, description="weight of the soft (teacher) loss")


class PseudoConfig(_Section):
    """Pseudo-labelling of data.unlabeled (deeprecipe.labelling.pseudo): teacher–student rounds."""
    method: Literal["rounds", "online"] = Field(
        "rounds", description="rounds: teacher → student rounds (Lee 2013, noisy student); online: the model labels "
                              "weak views and learns them on strong views every step (FixMatch)")
    threshold: float = Field(0.95, gt=0.0, le=1.0, description="take an unlabelled image when the teacher is this sure")
    rounds: int = Field(2, ge=0, description="rounds: teacher → student rounds after the first teacher")
    ratio: float = Field(7.0, gt=0.0, le=64.0, description="online: unlabelled images per labelled image in a step "
                                                           "(FixMatch's 7; each step then costs ~10 labelled steps)")
    weight: float = Field(1.0, ge=0.0, description="online: weight of the unlabelled (consistency) loss")
    strong_augment: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["randaugment", "cutout"],
        description="online: the strong view's augmentations (the weak view uses data.augment); no mixup/cutmix")

    @field_validator("strong_augment")
    @classmethod
    def _no_mixing(cls, v):
        pipeline = build_pipeline(v, 2)
        if pipeline is not None and pipeline.mixers:
            raise ValueError("mixup/cutmix change the labels; a strong view must keep its image's pseudo-label")
        return v


class Config(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularize: RegularizeConfig = Field(default_factory=RegularizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    recipe: RecipeConfig = Field(default_factory=RecipeConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    pseudo: PseudoConfig = Field(default_factory=PseudoConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _describe(err: ValidationError, source: str) -> tuple[str, str]:
    """The first bad field as (message, fix); an unknown key or section gets the nearest valid name."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        prefix, known = _known_keys(loc[:-1])
        what = "key" if prefix else "section"
        return f"{source}: {key}: unknown {what}", did_you_mean(loc[-1], known, f"known {what}s: {', '.join(known)}",
                                                                 prefix)
    return f"{source}: {key}: {first['msg']}", "fix or remove that key (see `deeprecipe train --help`)"


def _known_keys(path: list[str]) -> tuple[str, list[str]]:
    """The dotted prefix of `path` and the field names of the section it leads to."""
    cls: Any = Config
    for part in path:
        cls = cls.model_fields[part].annotation
    return "".join(f"{p}." for p in path), list(cls.model_fields)


def build_config(data: dict[str, Any] | None = None, source: str = "config") -> Config:
    """Validate a nested dict into a Config; the first bad field becomes one DeepRecipeError."""
    try:
        return Config.model_validate(data or {})
    except ValidationError as err:
        raise DeepRecipeError(*_describe(err, source)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DeepRecipeError(f"config file {path} does not exist", "pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise DeepRecipeError(f"{path}{where} is not valid YAML", "check indentation and quoting") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DeepRecipeError(f"{path} must hold a mapping of sections (data:, model:, …)", "see configs/ for examples")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """'optim.lr=0.1' -> (['optim', 'lr'], 0.1); the value is parsed as YAML (numbers, lists, true/false)."""
    if "=" not in item:
        raise DeepRecipeError(f"--set {item!r} has no '='", "write --set section.key=value, e.g. --set optim.lr=0.01")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise DeepRecipeError(f"--set {item!r}: key must be section.key", "e.g. --set train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise DeepRecipeError(f"--set {item!r}: {p} is not a section", "check the key path")
            node = child
        node[parts[-1]] = value
    return data


def resolve_config(config_file: str | None = None, overrides: list[str] | None = None,
                   base: dict[str, Any] | None = None) -> Config:
    """Defaults ← base dict ← YAML file ← --set overrides."""
    data: dict[str, Any] = _deep_copy(base or {})
    if config_file:
        _deep_merge(data, load_yaml(config_file))
    apply_overrides(data, overrides or [])
    return build_config(data, source=str(config_file) if config_file else "config")


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _deep_merge(into: dict, new: dict) -> dict:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v
    return into
