"""The training loop: explicit, with a few named hooks (after minGPT and Lightning Fabric's example).

Hooks are plain callables in `trainer.hooks[name]`, called in order:
  on_fit_start(trainer) · on_epoch_end(trainer, row) · on_fit_end(trainer)
`trainer.compute_loss(x, logits, y)` is a method so distillation can replace it. `trainer.lr_at`, when
set, replaces the schedule (step → lr): the LR range test and the overfit check drive `train_step` with
it, so their steps have the run's precision, memory format, compile, DDP, clipping and penalties.

Loss and accuracy sums stay on the device; they are read (and checked for NaN/inf) once every
`log.steps_every` steps and at the end of each epoch, not after every step.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from ..errors import DeepRecipeError
from ..progress import is_interactive
from ..utils import append_jsonl, atomic_write_text, note, read_jsonl
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import SINGLE, DistContext, all_reduce_sum, wrap_model
from .ema import build_ema
from .losses import classification_loss
from .metrics import topk_correct
from .optim import build_optimizer
from .regularize import apply_max_norm, clip_gradients, loss_penalty
from .schedule import Plateau, lr_factor

MAX_ROLLBACKS = 5  # nan_policy=rollback gives up after this many halvings of the lr


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once a checkpoint has been saved."""


class NonFiniteLoss(Exception):
    """A step produced a NaN/inf loss; the loop decides whether to stop or roll back."""

    def __init__(self, value: float, epoch: int, step: int, lr: float):
        super().__init__(f"loss is {value} at epoch {epoch}, step {step} (lr {lr:.3g})")
        self.value, self.epoch, self.step, self.lr = value, epoch, step, lr


@dataclass
class TrainState:
    epoch: int = 0                 # epochs completed
    step: int = 0                  # optimizer steps taken
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0            # early stopping
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    lr_scale: float = 1.0          # halved by each NaN rollback
    rollbacks: int = 0

    def to_dict(self) -> dict:
        return dict(vars(self))


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Trainer:
    def __init__(self, model: nn.Module, cfg, train_loader, val_loader, run_dir: str | Path | None,
                 device: torch.device, meta: dict[str, Any], precision: str = "fp32",
                 lr_scale: dict[str, float] | None = None, show_progress: bool = True,
                 dist: DistContext = SINGLE):
        self.model = model
        self.dist = dist
        self.cfg = cfg
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.run_dir = Path(run_dir) if run_dir else None
        self.device = device
        self.meta = meta
        self.precision = precision
        self.optimizer = build_optimizer(model, cfg.optim, lr_scale)
        # DDP and torch.compile wrap the forward only; self.model keeps the plain module for state_dict and hooks.
        wrapped = wrap_model(model, dist, device)
        self.forward_model = torch.compile(wrapped) if cfg.train.compile else wrapped
        self.ema = build_ema(model, cfg.regularize.ema)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.state = TrainState()
        self.last_correct = torch.zeros(0, dtype=torch.bool)  # per image, from the latest evaluate()
        reg = cfg.regularize
        self.plateau = (Plateau(cfg.schedule.gamma, cfg.schedule.patience, "min" if cfg.schedule.monitor.endswith("loss") else "max")
                        if cfg.schedule.name == "plateau" else None)
        self.monitor_mode = "min" if reg.monitor == "val_loss" else "max"
        self.hooks: dict[str, list[Callable]] = {"on_fit_start": [], "on_epoch_end": [], "on_fit_end": []}
        self.show_progress = show_progress
        self._interrupted = False
        self._snapshot: dict | None = None        # full state at the start of the current epoch
        self._best_weights: dict | None = None    # weights of the best epoch so far (EMA ones when EMA is on)
        self.steps_per_epoch = max(1, len(train_loader))
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.lr_at: Callable[[int], float] | None = None  # step → lr, replacing the schedule when set
        self.last_loss: float = math.nan                   # the loss of the last step that was read
        self._unread: tuple[torch.Tensor, torch.Tensor, float] | None = None  # (loss sum, last loss, lr) since the last read

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and saved as best.pt: the EMA average when regularize.ema is set."""
        return self.ema.module if self.ema is not None else self.model

    # ----------------------------------------------------------------------------- loss & step
    def compute_loss(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, y, self.cfg.regularize.label_smoothing)

    def auxiliary_loss(self, y: torch.Tensor) -> torch.Tensor | float:
        """aux_weight × the loss of side classifiers (GoogLeNet, Inception) from the forward just run; 0 without."""
        model = getattr(self.model, "module", self.model)  # DistributedDataParallel wraps the model
        outputs = model.aux_outputs() if hasattr(model, "aux_outputs") else []
        smoothing = self.cfg.regularize.label_smoothing
        return model.aux_weight * sum(classification_loss(a, y, smoothing) for a in outputs) if outputs else 0.0

    def penalties(self) -> torch.Tensor | float:
        return loss_penalty(self.model, self.cfg.regularize.l1, self.cfg.regularize.l2)

    def set_lr(self) -> float:
        if self.lr_at is not None:
            lr = self.lr_at(self.state.step)
            for g in self.optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            return lr
        f = lr_factor(self.state.step, self.total_steps, self.steps_per_epoch, self.cfg.schedule)
        if self.plateau is not None:
            f *= self.plateau.factor
        f *= self.state.lr_scale
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        return self.cfg.optim.lr * f

    def after_step_constraints(self) -> None:
        if self.cfg.regularize.max_norm:
            apply_max_norm(self.model, self.cfg.regularize.max_norm)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step. Returns the batch's loss sum and correct count as device tensors; nothing
        is read back to the host except every `log.steps_every` steps (see `read_losses`)."""
        reg = self.cfg.regularize
        lr = self.set_lr()
        with autocast_context(self.device, self.precision):
            logits = self.forward_model(x)
        loss = self.compute_loss(x, logits, y) + self.auxiliary_loss(y) + self.penalties()
        detached = loss.detach().float()
        total = detached if self._unread is None else self._unread[0] + detached
        self._unread = (total, detached, lr)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: scale the loss, unscale before clipping
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.model.parameters(), reg.clip_norm, reg.clip_value)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            clip_gradients(self.model.parameters(), reg.clip_norm, reg.clip_value)
            self.optimizer.step()
        self.after_step_constraints()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.state.step += 1
        hard = y if y.ndim == 1 else y.argmax(1)
        correct = (logits.argmax(1) == hard).sum()
        if self.state.step % self.cfg.log.steps_every == 0:
            self.read_losses(log=True)
        return detached * x.shape[0], correct

    def read_losses(self, log: bool = False) -> float:
        """Read the losses of the steps since the last read (one device sync): raise NonFiniteLoss when any
        was NaN/inf, log the last one to steps.jsonl when `log`; returns the last step's loss."""
        if self._unread is None:
            return self.last_loss
        total, last, lr = self._unread
        self._unread = None
        total, self.last_loss = torch.stack([total, last]).tolist()
        if not math.isfinite(total):
            raise NonFiniteLoss(total, self.state.epoch + 1, self.state.step, lr)
        if log and self.run_dir:
            append_jsonl(self.run_dir / "steps.jsonl", {"step": self.state.step, "loss": self.last_loss, "lr": lr})
        return self.last_loss

    def extra_summary(self, loader) -> dict[str, Any]:
        """Numbers a trainer adds to summary.json from the test loader (distillation: the teacher's accuracy)."""
        return {}

    # ----------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, loader, model: nn.Module | None = None, precision: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels over a loader, in eval mode (the EMA weights when EMA is on), in `precision`
        (default: the training precision)."""
        model = model if model is not None else self.eval_model
        was_training = model.training
        model.eval()
        outs, labels = [], []
        for x, y in loader:
            with autocast_context(self.device, precision or self.precision):
                outs.append(model(x).float())
            labels.append(y)
        model.train(was_training)
        if not outs:
            return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
        return torch.cat(outs).cpu(), torch.cat(labels).cpu()

    def evaluate(self, loader) -> dict[str, float]:
        logits, labels = self.predict(loader)
        if labels.numel() == 0:
            return {}
        loss = classification_loss(logits, labels).item()
        # Which images the model got right: a search compares two trials on the same images (a paired test).
        self.last_correct = logits.argmax(1) == labels
        out = {"loss": loss, "acc": topk_correct(logits, labels, 1) / labels.numel()}
        if logits.shape[1] > 5:
            out["top5"] = topk_correct(logits, labels, 5) / labels.numel()
        return out

    # ----------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self, full: bool) -> dict[str, Any]:
        """best.pt (full=False): the evaluated weights. last.pt (full=True): everything resume needs."""
        if not full:
            return {"model": self.eval_model.state_dict(), **self.meta}
        payload = {"model": self.model.state_dict(), **self.meta}
        payload.update(
            optimizer=self.optimizer.state_dict(), state=self.state.to_dict(), rng=_rng_state(),
            plateau=self.plateau.state_dict() if self.plateau else None,
            ema=self.ema.state_dict() if self.ema is not None else None,
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
        )
        return payload

    def save(self, name: str, full: bool = True) -> None:
        if self.run_dir:
            save_checkpoint(self.run_dir / "checkpoints" / name, self.checkpoint_payload(full))

    def load_payload(self, ckpt: dict[str, Any]) -> None:
        """Restore a full payload (from last.pt or the in-memory epoch snapshot)."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])  # restores base_lr in each group too
        self.state = TrainState(**copy.deepcopy(ckpt["state"]))
        _set_rng_state(ckpt["rng"])
        if self.plateau is not None and ckpt.get("plateau"):
            self.plateau.load_state_dict(ckpt["plateau"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])

    def resume_from(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if "optimizer" not in ckpt or "state" not in ckpt:
            raise DeepRecipeError(f"{path} holds weights only and cannot be resumed", "resume from checkpoints/last.pt")
        self.load_payload(ckpt)
        if self.run_dir:
            best = self.run_dir / "checkpoints" / "best.pt"
            if best.is_file() and self.state.best_epoch:
                self._best_weights = load_checkpoint(best, map_location=self.device)["model"]
            # the logs must agree with the checkpoint: drop rows written after it (an unfinished epoch)
            atomic_write_text(self.run_dir / "metrics.jsonl", "".join(_json_line(r) for r in self.state.history))
            self._trim_step_log()

    def _trim_step_log(self) -> None:
        """Drop steps.jsonl rows past the restored step, so a replayed stretch is not logged twice."""
        steps_file = self.run_dir / "steps.jsonl" if self.run_dir else None
        if steps_file is not None and steps_file.is_file():
            kept = [r for r in read_jsonl(steps_file) if r.get("step", 0) <= self.state.step]
            atomic_write_text(steps_file, "".join(_json_line(r) for r in kept))

    # ----------------------------------------------------------------------------- the loop
    def _improved(self, value: float) -> bool:
        best = self.state.best_value
        d = self.cfg.regularize.min_delta
        if best is None:
            return True
        return value < best - d if self.monitor_mode == "min" else value > best + d

    def _on_sigint(self, signum, frame):
        self._interrupted = True

    def fit(self) -> TrainState:
        cfg = self.cfg
        for h in self.hooks["on_fit_start"]:
            h(self)
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            previous = None
        completed = True
        try:
            while self.state.epoch < cfg.train.epochs and not self.state.stopped_early:
                completed = self._run_epoch_guarded()
                if self._interrupted:
                    break
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self._interrupted:
            # an unfinished epoch is replayed on resume, so the checkpoint is the state at its start
            if self.run_dir:
                save_checkpoint(self.run_dir / "checkpoints" / "last.pt",
                                self.checkpoint_payload(True) if completed else self._snapshot)
            raise TrainingInterrupted(f"interrupted after epoch {self.state.epoch}; checkpoint saved")
        if cfg.regularize.restore_best and self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
            if self.ema is not None:
                self.ema.module.load_state_dict(self._best_weights)
        for h in self.hooks["on_fit_end"]:
            h(self)
        return self.state

    def _run_epoch_guarded(self) -> bool:
        """One epoch under the NaN/inf guard: stop (keeping the last good checkpoint) or roll back."""
        self._snapshot = copy.deepcopy(self.checkpoint_payload(True))
        try:
            return self._run_epoch()
        except NonFiniteLoss as err:
            policy = self.cfg.train.nan_policy
            if policy == "rollback" and self.state.rollbacks < MAX_ROLLBACKS:
                rollbacks, scale = self.state.rollbacks + 1, self.state.lr_scale * 0.5
                self.load_payload(self._snapshot)
                self.state.rollbacks, self.state.lr_scale = rollbacks, scale
                self._trim_step_log()
                note(f"non-finite loss ({err}); rolled back to the start of epoch {self.state.epoch + 1} "
                     f"and halved the learning rate (now ×{scale:g})")
                return False
            kept = ""
            if self.run_dir:  # the state at the start of this epoch is the last good one
                save_checkpoint(self.run_dir / "checkpoints" / "last.pt", self._snapshot)
                kept = f"; the last good state (end of epoch {self._snapshot['state']['epoch']}) is in checkpoints/last.pt"
            tried = f" after {self.state.rollbacks} rollbacks" if policy == "rollback" else ""
            raise DeepRecipeError(f"training diverged{tried}: {err}{kept}",
                                  "lower optim.lr, set regularize.clip_norm=1, or set train.nan_policy=rollback") from None

    def _run_epoch(self) -> bool:
        """Train one epoch, evaluate, checkpoint, log. False when Ctrl-C cut it short."""
        cfg = self.cfg
        epoch = self.state.epoch
        self.train_loader.set_epoch(epoch)
        self.model.train()
        t0 = time.perf_counter()
        total_loss = total_correct = torch.zeros((), device=self.device)
        seen = 0
        self._unread = None
        bar = _EpochBar(len(self.train_loader), f"epoch {epoch + 1}/{cfg.train.epochs}", self.show_progress)
        try:
            for x, y in self.train_loader:
                loss_sum, correct = self.train_step(x, y)
                total_loss = total_loss + loss_sum
                total_correct = total_correct + correct
                seen += x.shape[0]
                bar.advance(self.last_loss)
                if self._interrupted:
                    return False  # the epoch is incomplete: resume replays it from its start
            self.read_losses()  # the steps since the last log interval: a NaN there ends the epoch too
        finally:
            bar.close()
        train_seconds = time.perf_counter() - t0
        # Every rank saw its own shard: the epoch's numbers are sums over ranks.
        total_loss, total_correct = torch.stack([total_loss.float(), total_correct.float()]).tolist()
        total_loss, total_correct, seen = all_reduce_sum([total_loss, total_correct, seen], self.dist, self.device)
        row = {"epoch": epoch + 1, "train_loss": total_loss / max(1, seen), "train_acc": total_correct / max(1, seen)}
        val = self.evaluate(self.val_loader) if self.val_loader is not None else {}
        if val:
            row.update(val_loss=val["loss"], val_acc=val["acc"])
        row.update(lr=self.optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0,
                   images_per_second=seen / max(train_seconds, 1e-9))
        self.state.epoch = epoch + 1
        self.state.history.append(row)
        monitor = row.get(cfg.regularize.monitor, row["train_loss"] if self.monitor_mode == "min" else row["train_acc"])
        if self.plateau is not None:
            watched = cfg.schedule.monitor
            self.plateau.step(row.get(watched, row["train_" + watched.partition("_")[2]]))
        improved = self._improved(monitor)
        if improved:
            self.state.best_value, self.state.best_epoch, self.state.bad_epochs = monitor, epoch + 1, 0
            self._best_weights = copy.deepcopy(self.eval_model.state_dict())
            self.save("best.pt", full=False)
        else:
            self.state.bad_epochs += 1
            if cfg.regularize.early_stopping and self.state.bad_epochs >= cfg.regularize.patience:
                self.state.stopped_early = True
        if self.state.epoch % cfg.train.checkpoint_every == 0 or self.state.epoch == cfg.train.epochs or self.state.stopped_early:
            self.save("last.pt")
        if self.run_dir:
            append_jsonl(self.run_dir / "metrics.jsonl", row)
        if self.show_progress:
            note(_format_row(row, cfg.train.epochs) + ("  *" if improved else ""))
        if self.state.stopped_early and self.show_progress:
            note(f"early stopping: no improvement in {cfg.regularize.monitor} for {cfg.regularize.patience} epochs; "
                 f"best epoch {self.state.best_epoch}")
        for h in self.hooks["on_epoch_end"]:
            h(self, row)
        return True


def _rng_state() -> dict[str, Any]:
    """Every generator a step can draw from, in forms that load under weights_only=True."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
            "python": _tuples_to_lists(random.getstate()),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    if "python" in rng:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in rng:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))


def _tuples_to_lists(obj):
    return [_tuples_to_lists(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _json_line(row: dict) -> str:
    return json.dumps(row) + "\n"


def _format_row(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>3}/{epochs}", f"loss {row['train_loss']:.4f}", f"acc {row['train_acc']:.4f}"]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_acc']:.4f}"]
    parts += [f"lr {row['lr']:.2e}", f"{row['seconds']:.1f}s", f"{row['images_per_second']:.0f} img/s"]
    return "  ".join(parts)


class _EpochBar:
    """A rich progress bar over one epoch's steps, shown only on a terminal."""

    def __init__(self, total: int, description: str, enabled: bool):
        self.progress = None
        if enabled and is_interactive():
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=True)
            self.task = self.progress.add_task(description, total=total, loss=math.nan)
            self.progress.start()

    def advance(self, loss: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=loss)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
