"""Trained runs read back for use: the model with its classes and normalisation, ready to score images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import Config
from .data.sources import conform
from .runtime import pick_device
from .session import rebuild_model
from .train.checkpoint import load_run_checkpoint


@dataclass
class LoadedRun:
    model: torch.nn.Module
    cfg: Config
    classes: list[str]
    mean: list[float]
    std: list[float]
    input_shape: tuple[int, int, int]
    device: torch.device

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        c = self.input_shape[0]
        x = conform(images_uint8, c, tuple(self.input_shape[1:])).float().div(255.0)
        mean = torch.tensor(self.mean).view(1, c, 1, 1)
        std = torch.tensor(self.std).view(1, c, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def logits(self, images_uint8: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        self.model.eval()
        outs = [self.model(self.normalize(images_uint8[i:i + batch_size])).float().cpu()
                for i in range(0, images_uint8.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, len(self.classes))


def load_run(run: str | Path, which: str = "best.pt", device: str = "auto") -> LoadedRun:
    path, ckpt = load_run_checkpoint(run, which)
    dev = pick_device(device)
    model, cfg = rebuild_model(ckpt, path)
    model.to(dev).eval()
    return LoadedRun(model, cfg, list(ckpt["classes"]), list(ckpt["mean"]), list(ckpt["std"]),
                     tuple(ckpt["input_shape"]), dev)
