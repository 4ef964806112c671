"""The layer under the API: prepared data, model building, run folders and the training session.

`prepare_data(cfg)` reads, splits and measures the data; `Session.create(cfg)` chooses device, precision
and memory format once; `Session.make_trainer(run_dir)` builds a model and its trainer. Recipe steps,
experiments and labelling tools that train many models share one session.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import build_pipeline
from .config import Config, build_config
from .data.leakage import leak_note, leak_report
from .data.cache import open_photo_folder
from .data.loader import CropLoader, TensorLoader
from .data.sources import ImageSet, conform, load_source
from .data.split import resolve_splits
from .data.stats import channel_stats
from .data.stream import StreamLoader, open_streamed
from .errors import DeepRecipeError
from .models import create_model
from .runtime import (check_compile_toolchain, keep_large_blocks_in_the_heap, pick_channels_last, pick_device,
                      pick_precision, seed_everything, set_threads)
from .tblog import attach_tensorboard
from .train.budget import auto_batch_size
from .train.checkpoint import load_run_checkpoint
from .train.diagnose import diagnose
from .train.distill import DistillTrainer
from .train.distributed import SINGLE, DistContext, device_for, init_distributed
from .train.trainer import Trainer
from .train.transfer import load_pretrained, plan_transfer, pretrained_statistics
from .utils import note


# ------------------------------------------------------------------------------------------ data
@dataclass
class PreparedData:
    ds: ImageSet
    splits: dict[str, np.ndarray]
    mean: list[float]
    std: list[float]
    stats_source: str = "training split"   # where mean/std come from (pretrained weights bring their own)

    @classmethod
    def from_splits(cls, ds: ImageSet, splits: dict[str, np.ndarray],
                    stats_from: np.ndarray | None = None, pretrained: str | None = None) -> "PreparedData":
        """Data with these splits, normalised by the mean/std of the training split (or of `stats_from`,
        when several arms must share one normalisation) — or, for `pretrained` weights, by the statistics
        those weights were trained with (ImageNet's for torchvision files, a deeprecipe run's own)."""
        if pretrained:
            return cls(ds, splits, *pretrained_statistics(pretrained, ds.shape[0]))
        idx = splits["train"] if stats_from is None else stats_from
        mean, std = channel_stats(ds.images[torch.from_numpy(np.asarray(idx, dtype=np.int64))])
        return cls(ds, splits, mean, std)

    @property
    def classes(self) -> list[str]:
        return self.ds.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.ds.shape

    def sizes(self) -> dict[str, int]:
        return {k: int(len(v)) for k, v in self.splits.items()}

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(self.splits[name]).long()
        return self.ds.images[idx], self.ds.labels[idx]

    def decoded_part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`part(name)` with the images as one tensor, also where a photo folder streams them."""
        images, labels = self.part(name)
        return (images if isinstance(images, torch.Tensor) else images.decode_all()), labels

    def loader(self, name: str, cfg: Config, device: torch.device, train: bool = False,
               channels_last: bool = False, augment: bool | None = None, **kw) -> TensorLoader:
        images, labels = self.part(name)
        # A config that did not pass through Session.create gets the default here, for this loader's share of
        # the ranks (each of world_size ranks sees 1/world_size of the training set).
        batch = (batch_size_for(cfg, len(self.splits["train"]), kw.get("world_size", 1)) if train
                 else cfg.train.eval_batch_size)
        augmenting = train if augment is None else augment
        pipeline = (build_pipeline(cfg.data.augment, len(self.classes), fit_images=lambda: self.part("train")[0])
                    if augmenting else None)
        if augmenting and self.ds.stored is not None:  # a photo folder under data.resize=crop
            return CropLoader(self.ds.stored, torch.from_numpy(self.splits[name]).long(), labels,
                              batch, self.mean, self.std,
                              size=images.shape[-1], scale=cfg.data.crop_scale, ratio=cfg.data.crop_ratio,
                              shuffle=train, augment=pipeline, device=device, seed=cfg.train.seed,
                              channels_last=channels_last, **kw)
        if not isinstance(images, torch.Tensor):  # a streamed folder (data.loader=stream, or auto and too big)
            loader_cls, kw = StreamLoader, {"workers": cfg.data.workers, **kw}
        else:
            loader_cls = TensorLoader
        return loader_cls(images, labels, batch, self.mean, self.std, shuffle=train, augment=pipeline, device=device,
                          seed=cfg.train.seed, drop_last=False, channels_last=channels_last, **kw)


def batch_size_for(cfg: Config, train_images: int, world_size: int = 1) -> int:
    """The batch size `cfg` names, else the default for this training set (`train.budget.auto_batch_size`)."""
    return cfg.train.batch_size or auto_batch_size(train_images, cfg.train.epochs, world_size)


def with_batch_size(cfg: Config, train_images: int, world_size: int = 1) -> Config:
    """`cfg` itself when it names a batch size, else a copy with the default for this training set, so that every
    trainer, saved config.yaml and checkpoint holds the number used."""
    if cfg.train.batch_size is not None:
        return cfg
    resolved = cfg.model_copy(deep=True)
    resolved.train.batch_size = batch_size_for(cfg, train_images, world_size)
    return resolved


def load_dataset(cfg: Config) -> ImageSet:
    ds = open_photo_folder(cfg.data) or open_streamed(cfg.data) or load_source(cfg.data.spec)
    c = cfg.data.channels or ds.images.shape[1]
    size = (cfg.data.image_size,) * 2 if cfg.data.image_size else tuple(ds.images.shape[2:])
    if (c, *size) != tuple(ds.images.shape[1:]):
        ds.images = conform(ds.images, c, size)
    return ds


def prepare_data(cfg: Config, ds: ImageSet | None = None) -> PreparedData:
    """Read, split (stratified, seeded) and measure mean/std on the training split only."""
    ds = ds if ds is not None else load_dataset(cfg)
    splits = resolve_splits(ds.splits, ds.labels.numpy(), cfg.data.val_fraction, cfg.data.test_fraction,
                            cfg.data.split_seed)
    data = PreparedData.from_splits(ds, splits, pretrained=cfg.model.pretrained)
    if isinstance(ds.images, torch.Tensor):
        warning = leak_note(leak_report(ds.images, splits))
        if warning:
            note(warning)
    return data


# ------------------------------------------------------------------------------------------ model
def build_model(cfg: Config, num_classes: int, input_shape) -> torch.nn.Module:
    c, h, _ = input_shape
    model = create_model(cfg.model.name, num_classes=num_classes, in_chans=c, input_size=h, **cfg.model.knobs())
    if cfg.model.pretrained:
        load_pretrained(model, cfg.model.pretrained, model_name=cfg.model.name, new_head=cfg.transfer.new_head)
    return model


def rebuild_model(ckpt: dict, source: str | Path) -> tuple[torch.nn.Module, Config]:
    """The trained model a run checkpoint describes, with its weights, and the run's config."""
    cfg = build_config(ckpt["config"], source=str(source))
    cfg.model.pretrained = None  # the checkpoint already holds the trained weights
    if cfg.model.name == "convnet" and getattr(cfg.model, "stem", None) is None:
        # The convnet's stem depends on the input size; runs saved before it existed have none: follow the weights.
        cfg.model.stem = any(k.startswith("body.stem.") for k in ckpt["model"])
    model = build_model(cfg, len(ckpt["classes"]), tuple(ckpt["input_shape"]))
    model.load_state_dict(ckpt["model"])
    return model, cfg


def is_conv_model(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------ runs
def new_run_dir(cfg: Config, out: str | Path | None) -> Path:
    if out:
        path = Path(out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{stamp}-{cfg.model.name}"
        k = 1
        while path.exists():
            k += 1
            path = Path("runs") / f"{stamp}-{cfg.model.name}-{k}"
    if path.exists() and any(path.iterdir()):
        if (path / "checkpoints" / "last.pt").exists():
            raise DeepRecipeError(f"run folder {path} already holds a run",
                                  f"continue it with --resume {path}, or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_meta(cfg: Config, data: PreparedData) -> dict[str, Any]:
    return {"config": cfg.to_dict(), "classes": list(data.classes), "mean": list(data.mean), "std": list(data.std),
            "stats_source": data.stats_source, "input_shape": list(data.input_shape)}


@dataclass
class Session:
    """Everything a training run needs, built once: handy for recipe steps that train many times."""
    cfg: Config
    data: PreparedData
    device: torch.device
    precision: str
    channels_last: bool
    dist: DistContext = SINGLE
    params: int = 0               # parameter count of the configured model (from the probe build)
    threads: int = 1              # torch CPU threads this process computes with

    @classmethod
    def create(cls, cfg: Config, data: PreparedData | None = None) -> "Session":
        threads = set_threads(cfg.train.threads)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        device = pick_device(cfg.train.device)
        dist = init_distributed(device.type)  # a no-op unless started by torchrun
        device = device_for(dist, device)
        if device.type == "cpu":
            keep_large_blocks_in_the_heap()
        if cfg.train.compile:
            check_compile_toolchain(device)  # before any work, not at the first step
        data = data or prepare_data(cfg)
        cfg = with_batch_size(cfg, data.sizes()["train"], dist.world_size)
        probe = create_model(cfg.model.name, num_classes=len(data.classes), in_chans=data.input_shape[0],
                             input_size=data.input_shape[1], **cfg.model.knobs())
        precision = pick_precision(cfg.train.precision, device)
        if cfg.train.deterministic and cfg.train.precision == "auto":
            precision = "fp32"
        return cls(cfg, data, device, precision, pick_channels_last(cfg.train.channels_last, is_conv_model(probe)), dist,
                   count_params(probe), threads)

    def diagnose(self, history: list[dict]) -> dict:
        """The curve diagnosis of a run made in this session: the one call behind summary.json (hence report.html
        and recipe.html) and the search's trials, always told the class count, the number of validation images
        behind each val_acc, the schedule and the label smoothing (which sets the training loss's floor)."""
        reg = self.cfg.regularize
        stopped_early = reg.early_stopping and len(history) < self.cfg.train.epochs
        return diagnose(history, num_classes=len(self.data.classes), val_images=self.data.sizes()["val"],
                        schedule=self.cfg.schedule.name, label_smoothing=reg.label_smoothing,
                        kept_best=stopped_early and reg.restore_best)

    def make_trainer(self, run_dir: Path | None, show_progress: bool = True, model: torch.nn.Module | None = None,
                     trainer_cls=Trainer, **kw) -> Trainer:
        cfg = self.cfg
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        model = model or build_model(cfg, len(self.data.classes), self.data.input_shape)
        if self.dist.enabled and cfg.train.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        train_loader = self.data.loader("train", cfg, self.device, train=True, channels_last=self.channels_last,
                                        rank=self.dist.rank, world_size=self.dist.world_size)
        val_loader = (self.data.loader("val", cfg, self.device, channels_last=self.channels_last)
                      if len(self.data.splits["val"]) else None)
        plan = plan_transfer(model, cfg)
        if cfg.distill.teacher and trainer_cls is Trainer:
            trainer_cls = DistillTrainer
            kw = {"teacher": self.load_teacher(cfg.distill.teacher), **kw}
        # Rank 0 alone writes logs and checkpoints; the other ranks train without a run folder.
        trainer = trainer_cls(model, cfg, train_loader, val_loader, run_dir if self.dist.is_main else None, self.device,
                              run_meta(cfg, self.data), precision=self.precision,
                              show_progress=show_progress and self.dist.is_main, dist=self.dist,
                              lr_scale=plan.lr_scale or None, **kw)
        plan.attach(trainer)  # freezes stages once the optimizer holds every parameter
        if cfg.log.tensorboard:
            attach_tensorboard(trainer)
        return trainer

    def load_teacher(self, run: str | Path) -> tuple[torch.nn.Module, dict]:
        """A distillation teacher: its trained model on this session's device, and its checkpoint's
        classes, mean, std and input shape."""
        path, ckpt = load_run_checkpoint(run)
        model, _ = rebuild_model(ckpt, path)
        return model.to(self.device).eval(), {k: ckpt[k] for k in ("classes", "mean", "std", "input_shape")}
