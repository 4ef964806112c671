"""The training loop: explicit, with a few named hooks (after minGPT and Lightning Fabric's example).

Hooks are plain callables in `trainer.hooks[name]`, called in order:
  on_fit_start(trainer) · on_epoch_end(trainer, row) · on_fit_end(trainer)
`trainer.compute_loss(x, logits, y)` is a method so distillation can replace it.
"""
from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import DeepRecipeError
from ..progress import is_interactive
from ..utils import append_jsonl, atomic_write_text, note
from .checkpoint import load_checkpoint, save_checkpoint
from .losses import classification_loss
from .metrics import topk_correct
from .optim import build_optimizer
from .schedule import Plateau, lr_factor


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once a checkpoint has been saved."""


@dataclass
class TrainState:
    epoch: int = 0                 # epochs completed
    step: int = 0                  # optimizer steps taken
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0            # early stopping
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False

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
                 lr_scale: dict[str, float] | None = None, show_progress: bool = True):
        self.model = model
        self.cfg = cfg
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.run_dir = Path(run_dir) if run_dir else None
        self.device = device
        self.meta = meta
        self.precision = precision
        self.optimizer = build_optimizer(model, cfg.optim, lr_scale)
        self.state = TrainState()
        reg = cfg.regularize
        self.plateau = Plateau(cfg.schedule.gamma, cfg.schedule.patience) if cfg.schedule.name == "plateau" else None
        self.monitor_mode = "min" if reg.monitor == "val_loss" else "max"
        self.hooks: dict[str, list[Callable]] = {"on_fit_start": [], "on_epoch_end": [], "on_fit_end": []}
        self.show_progress = show_progress
        self._interrupted = False
        self.steps_per_epoch = max(1, len(train_loader))
        self.total_steps = self.steps_per_epoch * cfg.train.epochs

    # ----------------------------------------------------------------------------- loss & step
    def compute_loss(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, y, self.cfg.regularize.label_smoothing)

    def penalties(self) -> torch.Tensor | float:
        reg = self.cfg.regularize
        if not (reg.l1 or reg.l2):
            return 0.0
        total = 0.0
        for p in self.model.parameters():
            if p.requires_grad and p.ndim > 1:  # weights only, like weight decay
                if reg.l1:
                    total = total + reg.l1 * p.abs().sum()
                if reg.l2:
                    total = total + 0.5 * reg.l2 * p.pow(2).sum()
        return total

    def set_lr(self) -> float:
        f = lr_factor(self.state.step, self.total_steps, self.steps_per_epoch, self.cfg.schedule)
        if self.plateau is not None:
            f *= self.plateau.factor
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f
        return self.cfg.optim.lr * f

    def after_step_constraints(self) -> None:
        """Max-norm: rescale each unit's incoming weight vector to norm ≤ c (Srivastava et al. 2014)."""
        c = self.cfg.regularize.max_norm
        if not c:
            return
        with torch.no_grad():
            for m in self.model.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    w = m.weight
                    norms = w.view(w.shape[0], -1).norm(dim=1).clamp_min(1e-12)
                    scale = (c / norms).clamp(max=1.0)
                    w.mul_(scale.view(-1, *([1] * (w.ndim - 1))))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        reg = self.cfg.regularize
        lr = self.set_lr()
        with autocast_context(self.device, self.precision):
            logits = self.model(x)
        loss = self.compute_loss(x, logits, y) + self.penalties()
        if not torch.isfinite(loss):
            raise DeepRecipeError(
                f"training diverged: loss is {loss.item()} at epoch {self.state.epoch + 1}, step {self.state.step} (lr {lr:.3g})",
                "lower optim.lr, set regularize.clip_norm=1, or set train.nan_policy=rollback; the last good checkpoint is kept")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if reg.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), reg.clip_norm)
        if reg.clip_value:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), reg.clip_value)
        self.optimizer.step()
        self.after_step_constraints()
        self.state.step += 1
        hard = y if y.ndim == 1 else y.argmax(1)
        correct = int((logits.argmax(1) == hard).sum())
        if self.run_dir and self.state.step % self.cfg.log.steps_every == 0:
            append_jsonl(self.run_dir / "steps.jsonl", {"step": self.state.step, "loss": loss.item(), "lr": lr})
        return loss.item() * x.shape[0], correct

    # ----------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, loader, precision: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels over a loader, in eval mode (in `precision`, default the training one)."""
        was_training = self.model.training
        self.model.eval()
        outs, labels = [], []
        for x, y in loader:
            with autocast_context(self.device, precision or self.precision):
                outs.append(self.model(x).float())
            labels.append(y)
        self.model.train(was_training)
        if not outs:
            return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
        return torch.cat(outs).cpu(), torch.cat(labels).cpu()

    def evaluate(self, loader) -> dict[str, float]:
        logits, labels = self.predict(loader)
        if labels.numel() == 0:
            return {}
        loss = classification_loss(logits, labels).item()
        out = {"loss": loss, "acc": topk_correct(logits, labels, 1) / labels.numel()}
        if logits.shape[1] > 5:
            out["top5"] = topk_correct(logits, labels, 5) / labels.numel()
        return out

    # ----------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self, full: bool) -> dict[str, Any]:
        payload = {"model": self.model.state_dict(), **self.meta}
        if full:
            payload.update(
                optimizer=self.optimizer.state_dict(), state=self.state.to_dict(),
                rng={"torch": torch.get_rng_state(),
                     **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})},
                plateau=self.plateau.state_dict() if self.plateau else None,
            )
        return payload

    def save(self, name: str, full: bool = True) -> None:
        if self.run_dir:
            save_checkpoint(self.run_dir / "checkpoints" / name, self.checkpoint_payload(full))

    def resume_from(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if "optimizer" not in ckpt or "state" not in ckpt:
            raise DeepRecipeError(f"{path} holds weights only and cannot be resumed", "resume from checkpoints/last.pt")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])  # restores base_lr in each group too
        self.state = TrainState(**ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        if self.plateau is not None and ckpt.get("plateau"):
            self.plateau.load_state_dict(ckpt["plateau"])
        if self.run_dir:  # metrics.jsonl must agree with the checkpoint: drop rows of unfinished epochs
            rows = "".join(_json_line(r) for r in self.state.history)
            atomic_write_text(self.run_dir / "metrics.jsonl", rows)

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
        try:
            while self.state.epoch < cfg.train.epochs and not self.state.stopped_early:
                self._run_epoch()
                if self._interrupted:
                    break
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self._interrupted:
            self.save("last.pt")
            raise TrainingInterrupted(f"interrupted after epoch {self.state.epoch}; checkpoint saved")
        for h in self.hooks["on_fit_end"]:
            h(self)
        return self.state

    def _run_epoch(self) -> None:
        cfg = self.cfg
        epoch = self.state.epoch
        self.train_loader.set_epoch(epoch)
        self.model.train()
        t0 = time.perf_counter()
        total_loss, total_correct, seen = 0.0, 0, 0
        bar = _EpochBar(len(self.train_loader), f"epoch {epoch + 1}/{cfg.train.epochs}", self.show_progress)
        for x, y in self.train_loader:
            loss_sum, correct = self.train_step(x, y)
            total_loss += loss_sum
            total_correct += correct
            seen += x.shape[0]
            bar.advance(total_loss / seen)
            if self._interrupted:
                break
        bar.close()
        if self._interrupted:
            return  # the epoch is incomplete: resume replays it from the last checkpoint
        train_seconds = time.perf_counter() - t0
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
            self.plateau.step(row.get("val_loss", row["train_loss"]))
        improved = self._improved(monitor)
        if improved:
            self.state.best_value, self.state.best_epoch, self.state.bad_epochs = monitor, epoch + 1, 0
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


def _json_line(row: dict) -> str:
    import json
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
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
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
