"""`deeprecipe doctor`: the checks to run before spending time on training.

1. data: labels in range, every class present and not badly imbalanced, normalised inputs with mean ≈ 0, std ≈ 1;
2. initial loss ≈ ln(C), and the untrained model's predictions not collapsed onto one class;
3. layer health: per-layer activation and gradient statistics on one batch, naming vanishing or exploding layers
   and ReLU-family layers whose outputs are (almost) all zero; an explicit `model.init` that does not match the
   activation is a warning (it can still train, only worse);
4. overfit a small sample (10–100 images) to near-zero loss within a step budget.

Each check returns a `Check` (name, passed, measured value, fix). `run_doctor` runs them in that order and
skips the model checks when the data check fails (out-of-range labels would only crash them).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from ..errors import DeepRecipeError
from ..models.layers import MATCHED_INIT, init_family, model_activation
from ..session import Session, build_model
from ..train.losses import classification_loss, smoothed_loss_floor
from ..train.trainer import NonFiniteLoss

ModelFactory = Callable[[], nn.Module]

INIT_LOSS_TOLERANCE = 0.35    # |initial loss − ln C| / ln C
COLLAPSE_SHARE = 0.5          # mean softmax mass on the single most favoured class
IMBALANCE_RATIO = 0.2         # smallest / largest class count
MEAN_TOL, STD_RANGE = 0.25, (0.6, 1.5)
VANISH_GRAD, EXPLODE_GRAD = 1e-7, 1e2   # gradient norm / weight norm per layer
EXPLODE_ACT = 1e2             # activation std
DEAD_FRACTION = 0.95          # share of exactly-zero activations after a layer


@dataclass
class Check:
    name: str
    passed: bool | None        # None: skipped
    measured: str
    fix: str = ""
    warning: bool = False      # passed, but worth a look

    @property
    def status(self) -> str:
        if self.passed is None:
            return "skip"
        return ("warn" if self.warning else "pass") if self.passed else "FAIL"

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------ data
def check_data(session: Session) -> Check:
    data, cfg = session.data, session.cfg
    num_classes = len(data.classes)
    _, labels = data.part("train")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        return Check("data", False, f"{bad.numel()} label(s) out of range [0, {num_classes}), e.g. {int(bad[0])}",
                     "labels must be class indices 0…C-1: check how the dataset maps names to indices")
    counts = torch.bincount(labels, minlength=num_classes)
    missing = [data.classes[i] for i in range(num_classes) if counts[i] == 0]
    if missing:
        return Check("data", False, f"class(es) without training images: {', '.join(missing[:5])}",
                     "add images for every class or remove the empty classes")
    ratio = float(counts.min() / counts.max())
    x, _ = next(iter(data.loader("train", cfg, session.device, train=True, augment=False)))
    mean, std = float(x.mean()), float(x.std())
    measured = f"labels ok; class balance min/max {ratio:.2f}; input mean {mean:+.3f}, std {std:.3f}"
    if ratio < IMBALANCE_RATIO:
        return Check("data", False, measured, "classes are imbalanced: resample, or weight the loss by class")
    if abs(mean) > MEAN_TOL or not STD_RANGE[0] <= std <= STD_RANGE[1]:
        return Check("data", False, measured, "inputs are not normalised: check data.channels and the image decoding")
    return Check("data", True, measured)


# ------------------------------------------------------------------------------------------ model at init
def _one_batch(session: Session, size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = session.data.part("train")
    g = torch.Generator().manual_seed(session.cfg.train.seed)
    idx = torch.randperm(labels.shape[0], generator=g)[:size]
    mean = torch.tensor(session.data.mean).view(1, -1, 1, 1)
    std = torch.tensor(session.data.std).view(1, -1, 1, 1)
    x = (images[idx].float().div(255.0) - mean) / std
    return x.to(session.device), labels[idx].to(session.device)


def check_initial_loss(session: Session, model: nn.Module) -> list[Check]:
    x, y = _one_batch(session)
    c = len(session.data.classes)
    with torch.no_grad():
        logits = model(x).float()
    loss = float(classification_loss(logits, y))
    expected = math.log(c)
    rel = abs(loss - expected) / expected
    loss_check = Check("initial loss", rel <= INIT_LOSS_TOLERANCE,
                       f"{loss:.3f} vs ln({c}) = {expected:.3f} ({rel:.0%} off, tolerance {INIT_LOSS_TOLERANCE:.0%})",
                       "" if rel <= INIT_LOSS_TOLERANCE else
                       "the logits start too large or biased: initialise the last layer small (model.init), "
                       "zero its bias, check for a stray scale on the output")
    probs = torch.softmax(logits, 1)
    top_share = float(probs.mean(0).max())
    argmax_share = float(torch.bincount(logits.argmax(1), minlength=c).max()) / max(1, len(y))
    collapsed = top_share > max(COLLAPSE_SHARE, 2.0 / c)
    spread = Check("initial predictions", not collapsed,
                   f"mean probability of the favoured class {top_share:.2f} (uniform {1 / c:.2f}); "
                   f"{argmax_share:.0%} of argmax on one class",
                   "" if not collapsed else "the untrained model favours one class: check the last layer's bias and "
                   "init, and that inputs are normalised")
    return [loss_check, spread]


def check_init_match(cfg, model: nn.Module) -> Check:
    """Warn when `model.init` names a scheme made for another activation than the model's."""
    family, act = init_family(cfg.model.init), model_activation(model)
    matched = MATCHED_INIT.get(act or "")
    if family is None or matched is None:
        how = "matched to the activation (default)" if family is None else "no activation to match"
        return Check("init vs activation", True, f"init {cfg.model.init or 'auto'}: {how}")
    if family == matched:
        return Check("init vs activation", True, f"init {cfg.model.init} suits {act}")
    return Check("init vs activation", True, f"init {cfg.model.init} is made for {_made_for(family)}, the model uses {act}",
                 f"use model.init={matched} (or leave model.init unset: the matched init is the default)", warning=True)


def _made_for(family: str) -> str:
    return "/".join(a for a, f in MATCHED_INIT.items() if f == family and a in ("selu", "tanh", "sigmoid", "relu"))


RELU_FAMILY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)


def check_layers(session: Session, model: nn.Module) -> Check:
    """Activation std after every layer with weights; gradient/weight norm ratio per layer; the dead share
    (exactly-zero outputs) after every ReLU."""
    x, y = _one_batch(session, 128)
    stats: dict[str, dict[str, float]] = {}
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d,
                                                                            nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm))}
    relus = {name: m for name, m in model.named_modules() if isinstance(m, RELU_FAMILY)}
    zeros: dict[str, list[float]] = {}  # a ReLU module reused within a block is called more than once

    def hook(name):
        def record(module, inputs, output):
            out = output.detach().float()
            stats.setdefault(name, {})["act_std"] = float(out.std())
        return record

    def dead(name):
        def record(module, inputs, output):
            zeros.setdefault(name, []).append(float((output.detach() == 0).float().mean()))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]
    handles += [m.register_forward_hook(dead(name)) for name, m in relus.items()]
    try:
        model.zero_grad(set_to_none=True)
        loss = classification_loss(model(x), y)
        if loss.requires_grad:
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    problems = []
    ratios = []
    for name, m in layers.items():
        w = getattr(m, "weight", None)
        act = stats.get(name, {}).get("act_std", float("nan"))
        if not math.isfinite(act) or act > EXPLODE_ACT:
            problems.append(f"{name}: activation std {act:.3g} (exploding)")
        if w is None or not w.requires_grad:
            continue
        if w.grad is None:
            problems.append(f"{name}: no gradient reaches it")
            continue
        ratio = float(w.grad.norm() / w.detach().norm().clamp_min(1e-12))
        ratios.append(ratio)
        if not math.isfinite(ratio) or ratio > EXPLODE_GRAD:
            problems.append(f"{name}: grad/weight {ratio:.3g} (exploding)")
        elif ratio < VANISH_GRAD:
            problems.append(f"{name}: grad/weight {ratio:.3g} (vanishing)")
    dead_shares = {name: max(v) for name, v in zeros.items()}
    # listed first: dead ReLUs pass no gradient, so they are the cause of the vanishing layers before them
    problems[:0] = [f"{name}: {share:.0%} of outputs are zero (dead ReLUs)"
                    for name, share in dead_shares.items() if share > DEAD_FRACTION]
    model.zero_grad(set_to_none=True)
    if not ratios and not problems:
        return Check("layer health", False, "no trainable layer received a gradient",
                     "unfreeze the model (requires_grad) or check the loss is connected to it")
    span = f"grad/weight from {min(ratios):.2g} to {max(ratios):.2g} over {len(ratios)} layers" if ratios else ""
    if dead_shares:
        worst = max(dead_shares, key=dead_shares.get)
        span += f"; zero outputs after ReLU up to {dead_shares[worst]:.0%} ({worst})"
    if problems:
        return Check("layer health", False, "; ".join(problems[:4]) + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""),
                     "vanishing: add normalisation (model.norm=batch), use He init (model.init=he) or residual models; "
                     "exploding: lower optim.lr, set regularize.clip_norm=1; dead ReLUs: lower optim.lr, zero the "
                     "biases (model.init), or use model.activation=leaky_relu")
    return Check("layer health", True, span)


# ------------------------------------------------------------------------------------------ overfit
def check_overfit(session: Session, model: nn.Module, samples: int = 50, steps: int = 200,
                  target: float = 0.05) -> Check:
    """Train on `samples` images only (no augmentation) at the configured lr, with the run's own training step
    (optimizer, precision, memory format, clipping, penalties): the loss must reach ~0."""
    x, y = _one_batch(session, samples)
    if session.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    name = f"overfit {len(y)} samples"
    try:
        trainer = session.make_trainer(None, show_progress=False, model=model)
    except DeepRecipeError as err:
        return Check(name, False, err.message, err.fix or "")
    trainer.lr_at = lambda step: session.cfg.optim.lr  # constant: the schedule would warm up / anneal
    floor = smoothed_loss_floor(session.cfg.regularize.label_smoothing, len(session.data.classes))
    target += floor
    trainer.model.train()
    first = loss_value = float("nan")
    for step in range(steps):
        try:
            trainer.train_step(x, y)
            loss_value = trainer.read_losses()  # the loss before this step's update
        except NonFiniteLoss as err:
            loss_value = err.value
        if step == 0:
            first = loss_value
        if not math.isfinite(loss_value) or loss_value < target:
            break
    ok = math.isfinite(loss_value) and loss_value < target
    return Check(name, ok, f"loss {first:.3f} → {loss_value:.4f} in {step + 1} steps (target < {target:.4g}"
                 + (", the label smoothing's floor included)" if floor else ")"),
                 "" if ok else "the model cannot memorise a handful of images: check optim.lr is not 0 or tiny, "
                 "that parameters are trainable, and that labels match images; try `deeprecipe lr-find`")


# ------------------------------------------------------------------------------------------ all together
def run_doctor(session: Session, model_factory: ModelFactory | None = None, overfit_samples: int = 50,
               overfit_steps: int = 200, include_overfit: bool = True) -> list[Check]:
    """All checks in order; each model check gets a freshly built (seeded) model."""
    cfg = session.cfg

    def fresh() -> nn.Module:
        torch.manual_seed(cfg.train.seed)
        model = model_factory() if model_factory else build_model(cfg, len(session.data.classes), session.data.input_shape)
        return model.to(session.device)

    if not 10 <= overfit_samples <= 100:
        raise DeepRecipeError(f"overfit sample size {overfit_samples} is outside 10–100", "use e.g. 50")
    checks = [check_data(session)]
    if not checks[0].passed:
        skipped = ["init vs activation", "initial loss", "initial predictions", "layer health"]
        skipped += [f"overfit {overfit_samples} samples"] if include_overfit else []
        return checks + [Check(n, None, "skipped: fix the data first") for n in skipped]
    model = fresh().train()
    checks.append(check_init_match(cfg, model))
    checks += check_initial_loss(session, model)
    checks.append(check_layers(session, model))
    if include_overfit:
        checks.append(check_overfit(session, fresh(), overfit_samples, overfit_steps))
    return checks


def all_passed(checks: list[Check]) -> bool:
    return all(c.passed for c in checks)


def print_checks(checks: list[Check]) -> None:
    table = Table(title="deeprecipe doctor")
    for col in ("check", "result", "measured", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        mark = {"pass": "[green]pass[/]", "warn": "[yellow]warn[/]", "skip": "[yellow]skip[/]"}.get(c.status, "[red]FAIL[/]")
        table.add_row(c.name, mark, c.measured, c.fix)
    Console(stderr=False).print(table)
