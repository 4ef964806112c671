"""The Python API behind every command: prepare data, build a model, train, evaluate, predict.

`train(config)` returns the summary dict that is also written to `summary.json`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import build_pipeline
from .config import Config, build_config, resolve_config
from .data.loader import TensorLoader
from .data.sources import ImageSet, conform, load_source
from .data.split import resolve_splits
from .data.stats import channel_stats
from .errors import DeepRecipeError
from .models import create_model
from .runtime import check_compile_toolchain, pick_channels_last, pick_device, pick_precision, seed_everything, set_threads
from .train.checkpoint import load_checkpoint, resolve_checkpoint
from .train.metrics import classification_summary, topk_correct
from .train.distributed import SINGLE, DistContext, broadcast_str, device_for, init_distributed, shutdown
from .train.trainer import Trainer
from .utils import note, write_json


# ------------------------------------------------------------------------------------------ data
@dataclass
class PreparedData:
    ds: ImageSet
    splits: dict[str, np.ndarray]
    mean: list[float]
    std: list[float]

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

    def loader(self, name: str, cfg: Config, device: torch.device, train: bool = False,
               channels_last: bool = False, augment: bool | None = None, **kw) -> TensorLoader:
        images, labels = self.part(name)
        pipeline = (build_pipeline(cfg.data.augment, len(self.classes), fit_images=lambda: self.part("train")[0])
                    if (train if augment is None else augment) else None)
        if not isinstance(images, torch.Tensor):  # a streamed folder (data.loader=stream, or auto and too big)
            from .data.stream import StreamLoader
            loader_cls, kw = StreamLoader, {"workers": cfg.data.workers, **kw}
        else:
            loader_cls = TensorLoader
        return loader_cls(images, labels, cfg.train.batch_size if train else cfg.train.eval_batch_size,
                          self.mean, self.std, shuffle=train, augment=pipeline, device=device,
                          seed=cfg.train.seed, drop_last=False, channels_last=channels_last, **kw)


def load_dataset(cfg: Config) -> ImageSet:
    from .data.stream import open_streamed
    ds = open_streamed(cfg.data) or load_source(cfg.data.spec)
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
    train_images = ds.images[torch.from_numpy(splits["train"]).long()]
    mean, std = channel_stats(train_images)
    if isinstance(ds.images, torch.Tensor):
        from .data.leakage import leak_note, leak_report
        warning = leak_note(leak_report(ds.images, splits))
        if warning:
            note(warning)
    return PreparedData(ds, splits, mean, std)


# ------------------------------------------------------------------------------------------ model
def build_model(cfg: Config, num_classes: int, input_shape) -> torch.nn.Module:
    c, h, _ = input_shape
    model = create_model(cfg.model.name, num_classes=num_classes, in_chans=c, input_size=h, **cfg.model.knobs())
    if cfg.model.pretrained:
        try:
            from .models.transfer import load_pretrained
        except ImportError:
            raise DeepRecipeError("model.pretrained needs the transfer module", "update deeprecipe") from None
        load_pretrained(model, cfg.model.pretrained, model_name=cfg.model.name, new_head=cfg.transfer.new_head)
    return model


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
            "input_shape": list(data.input_shape)}


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

    @classmethod
    def create(cls, cfg: Config, data: PreparedData | None = None) -> "Session":
        set_threads(cfg.train.threads)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        device = pick_device(cfg.train.device)
        dist = init_distributed(device.type)  # a no-op unless started by torchrun
        device = device_for(dist, device)
        if cfg.train.compile:
            check_compile_toolchain(device)  # before any work, not at the first step
        data = data or prepare_data(cfg)
        probe = create_model(cfg.model.name, num_classes=len(data.classes), in_chans=data.input_shape[0],
                             input_size=data.input_shape[1], **cfg.model.knobs())
        precision = pick_precision(cfg.train.precision, device)
        if cfg.train.deterministic and cfg.train.precision == "auto":
            precision = "fp32"
        return cls(cfg, data, device, precision, pick_channels_last(cfg.train.channels_last, is_conv_model(probe)), dist,
                   count_params(probe))

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
        from .models.transfer import plan_transfer
        plan = plan_transfer(model, cfg)
        if cfg.distill.teacher and trainer_cls is Trainer:
            from .train.distill import DistillTrainer
            trainer_cls = DistillTrainer
        # Rank 0 alone writes logs and checkpoints; the other ranks train without a run folder.
        trainer = trainer_cls(model, cfg, train_loader, val_loader, run_dir if self.dist.is_main else None, self.device,
                              run_meta(cfg, self.data), precision=self.precision,
                              show_progress=show_progress and self.dist.is_main, dist=self.dist,
                              lr_scale=plan.lr_scale or None, **kw)
        plan.attach(trainer)  # freezes stages once the optimizer holds every parameter
        if cfg.log.tensorboard:
            from .tblog import attach_tensorboard
            attach_tensorboard(trainer)
        return trainer


def _as_config(config: Config | dict | str | Path | None, overrides: list[str] | None = None) -> Config:
    if isinstance(config, Config):
        return build_config(_merge_overrides(config.to_dict(), overrides)) if overrides else config
    if isinstance(config, (str, Path)):
        return resolve_config(str(config), overrides)
    return resolve_config(None, overrides, base=config or {})


def _merge_overrides(d: dict, overrides: list[str] | None) -> dict:
    from .config import apply_overrides
    return apply_overrides(d, overrides or [])


def train(config: Config | dict | str | Path | None = None, out: str | Path | None = None,
          overrides: list[str] | None = None, resume: str | Path | None = None, show_progress: bool = True) -> dict:
    """Train one model end to end; returns the summary (also written to RUN/summary.json)."""
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise DeepRecipeError(f"--resume {run_dir}: no config.yaml there", "give a run folder written by `deeprecipe train`")
        cfg = resolve_config(str(run_dir / "config.yaml"), overrides)
        if cfg.data.folds >= 2 or cfg.data.repeats >= 2:
            return train_protocol(cfg, run_dir, show_progress, resume=True)
    else:
        cfg = _as_config(config, overrides)
        if cfg.data.folds >= 2 or cfg.data.repeats >= 2:
            return train_protocol(cfg, out, show_progress)
    session = Session.create(cfg)
    show_progress = show_progress and session.dist.is_main
    if not resume:
        run_dir = None
        if session.dist.is_main:
            run_dir = new_run_dir(cfg, out)
            from .utils import atomic_write_text
            atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
        run_dir = Path(broadcast_str(str(run_dir) if run_dir else None, session.dist))
    if resume and cfg.data.unlabeled:
        raise DeepRecipeError(f"--resume {run_dir}: pseudo-label runs (data.unlabeled) cannot be resumed",
                              "start the run again, or resume without data.unlabeled")
    if show_progress:
        sizes = session.data.sizes()
        note(f"data {cfg.data.spec}: {len(session.data.classes)} classes, train {sizes['train']} / val {sizes['val']} / "
             f"test {sizes['test']}, input {'×'.join(map(str, session.data.input_shape))}; model {cfg.model.name} "
             f"({session.params:,} params) on {session.device.type} {session.precision}"
             f"{' channels_last' if session.channels_last else ''}")
    t0 = time.perf_counter()
    if cfg.data.unlabeled:  # semi-supervised: teacher–student pseudo-label rounds (issue 13), each its own trainer
        from .labelling.pseudo import fit_with_pseudo_labels
        trainer, pseudo_rounds = fit_with_pseudo_labels(session, run_dir, show_progress)
        state = trainer.state
    else:
        trainer = session.make_trainer(run_dir, show_progress=show_progress)
        if resume:
            trainer.resume_from(resolve_checkpoint(run_dir, "last.pt"))
            if show_progress:
                note(f"resuming {run_dir} after epoch {trainer.state.epoch}")
        state, pseudo_rounds = trainer.fit(), None
    train_seconds = sum(r["seconds"] for r in state.history) if state.history else time.perf_counter() - t0
    if not session.dist.is_main:  # rank 0 evaluates and writes the summary
        shutdown(session.dist)
        return {}
    summary = finish_run(trainer, session, run_dir, train_seconds)
    if pseudo_rounds is not None:
        summary["pseudo"] = pseudo_rounds
    if session.dist.enabled:
        summary["world_size"] = session.dist.world_size
    if pseudo_rounds is not None or session.dist.enabled:
        write_json(run_dir / "summary.json", summary)
    shutdown(session.dist)
    if show_progress:
        print_summary(summary)
    return summary


def train_protocol(cfg: Config, out: str | Path | None = None, show_progress: bool = True,
                   resume: bool = False) -> dict:
    """k-fold CV (data.folds) or repeated random splits (data.repeats): one sub-run per fold under
    the run folder, and a top-level summary.json with per-fold results and mean ± std.

    With `resume`, `out` is the interrupted run: finished folds (their summary.json) are read back,
    a fold with checkpoints/last.pt continues from it, the rest train as usual."""
    from .data.protocols import format_protocol, protocol_splits, sub_run_name, summarize_protocol
    from .utils import atomic_write_text
    ds = load_dataset(cfg)
    run_dir = Path(out) if resume else new_run_dir(cfg, out)
    if not resume:
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    results, names = [], []
    for i, splits in enumerate(protocol_splits(ds.labels.numpy(), cfg.data.folds, cfg.data.repeats,
                                               cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.split_seed), 1):
        names.append(sub_run_name(cfg.data.folds, i))
        sub = run_dir / names[-1]
        finished = _finished_summary(sub) if resume else None
        if finished is not None:
            results.append(finished)
            if show_progress:
                note(f"{names[-1]}: finished before, test_acc {finished['test_acc']:.4f}")
            continue
        sub.mkdir(exist_ok=True)
        atomic_write_text(sub / "config.yaml", cfg.to_yaml())
        mean, std = channel_stats(ds.images[torch.from_numpy(splits["train"]).long()])
        session = Session.create(cfg, PreparedData(ds, splits, mean, std))
        trainer = session.make_trainer(sub, show_progress=show_progress)
        if resume and (sub / "checkpoints" / "last.pt").is_file():
            trainer.resume_from(sub / "checkpoints" / "last.pt")
            if show_progress:
                note(f"{names[-1]}: resuming after epoch {trainer.state.epoch}")
        state = trainer.fit()
        results.append(finish_run(trainer, session, sub, sum(r["seconds"] for r in state.history)))
        if show_progress:
            note(f"{names[-1]}: test_acc {results[-1]['test_acc']:.4f}")
    summary = summarize_protocol(results, cfg.data.folds, cfg.data.repeats, names)
    write_json(run_dir / "summary.json", summary)
    if show_progress:
        note(format_protocol(summary))
    return summary


def _finished_summary(sub_run: Path) -> dict | None:
    """A fold's summary.json when it finished; None when absent or unreadable (the fold is trained again)."""
    try:
        summary = json.loads((sub_run / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "test_acc" in summary else None


def finish_run(trainer: Trainer, session: Session, run_dir: Path, train_seconds: float) -> dict:
    """Evaluate the best checkpoint on the test split and write summary.json (and the report)."""
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        trainer.eval_model.load_state_dict(load_checkpoint(best, map_location=session.device)["model"])
    part = "test" if len(session.data.splits["test"]) else "val"
    loader = session.data.loader(part, session.cfg, session.device, channels_last=session.channels_last)
    # Final numbers in fp32, so `evaluate RUN` (which loads the checkpoint in fp32) reproduces them exactly.
    logits, labels = trainer.predict(loader, precision="fp32")
    probs = torch.softmax(logits, 1).numpy()
    history = trainer.state.history
    ips = [r["images_per_second"] for r in history]
    summary: dict[str, Any] = {
        "test_acc": topk_correct(logits, labels, 1) / max(1, labels.numel()),
        "test_loss": float(torch.nn.functional.cross_entropy(logits, labels).item()) if labels.numel() else None,
        "evaluated_on": part,
        "best_epoch": trainer.state.best_epoch,
        "epochs_run": trainer.state.epoch,
        "stopped_early": trainer.state.stopped_early,
        "params": count_params(trainer.model),
        "train_seconds": train_seconds,
        "images_per_second": float(np.median(ips)) if ips else None,
        "classes": list(session.data.classes),
        "sizes": session.data.sizes(),
        "device": session.device.type,
        "precision": session.precision,
    }
    if len(session.data.classes) > 5:
        summary["test_top5"] = topk_correct(logits, labels, 5) / max(1, labels.numel())
    summary.update(classification_summary(probs, labels.numpy(), session.data.classes))
    if hasattr(trainer, "extra_summary"):  # e.g. distillation: the teacher's accuracy on the same split
        summary.update(trainer.extra_summary(loader))
    summary["diagnosis"] = diagnose_history(history, session)
    write_json(run_dir / "summary.json", summary)
    np.savez_compressed(run_dir / "test_predictions.npz", probs=probs.astype(np.float32), labels=labels.numpy(),
                        indices=session.data.splits[part])
    write_report_safely(run_dir, session.data)
    return summary


def write_report_safely(run_dir: Path, data: PreparedData | None = None) -> None:
    """report.html for the run; a failing report is noted, never allowed to lose the run."""
    try:
        from .report import build_report
        build_report(run_dir, data)
    except Exception as err:  # the summary and checkpoints are already safe on disk
        note(f"report.html not written ({type(err).__name__}: {err}); rebuild with `deeprecipe report {run_dir}`")


def diagnose_history(history: list[dict], session: Session) -> dict | None:
    """The recipe's curve diagnosis, when that module is present: the one call behind summary.json (hence
    report.html and recipe.html) and the search's trials, always told the class count, the number of
    validation images behind each val_acc, and the schedule."""
    try:
        from .recipe.diagnose import diagnose
    except ImportError:
        return None
    return diagnose(history, num_classes=len(session.data.classes), val_images=session.data.sizes()["val"],
                    schedule=session.cfg.schedule.name)


def print_summary(summary: dict) -> None:
    bits = [f"test_acc {summary['test_acc']:.4f}"]
    if summary.get("test_loss") is not None:
        bits.append(f"test_loss {summary['test_loss']:.4f}")
    if "test_top5" in summary:
        bits.append(f"top5 {summary['test_top5']:.4f}")
    bits += [f"best epoch {summary['best_epoch']}", f"{summary['train_seconds']:.1f}s training"]
    note("  ".join(bits))
    diag = summary.get("diagnosis")
    if diag:
        note(f"diagnosis: {diag['verdict']} — {diag.get('advice', [''])[0] if diag.get('advice') else ''}")


# ------------------------------------------------------------------------------------------ use a trained run
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
    path = resolve_checkpoint(run, which)
    ckpt = load_checkpoint(path)
    for key in ("config", "classes", "mean", "std", "input_shape", "model"):
        if key not in ckpt:
            raise DeepRecipeError(f"{path} lacks {key!r}", "use a checkpoint written by deeprecipe train")
    cfg = build_config(ckpt["config"], source=str(path))
    cfg.model.pretrained = None  # the checkpoint already holds the trained weights
    dev = pick_device(device)
    model = build_model(cfg, len(ckpt["classes"]), tuple(ckpt["input_shape"]))
    model.load_state_dict(ckpt["model"])
    model.to(dev).eval()
    return LoadedRun(model, cfg, list(ckpt["classes"]), list(ckpt["mean"]), list(ckpt["std"]),
                     tuple(ckpt["input_shape"]), dev)


def _evaluation_images(loaded: LoadedRun, data: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images a run is evaluated on: its own test split, or all of another data spec (labels mapped)."""
    if not data:
        prepared = prepare_data(loaded.cfg)
        images, labels = prepared.part("test" if len(prepared.splits["test"]) else "val")
        images = images if isinstance(images, torch.Tensor) else images.decode_all()  # a streamed folder
        return images, labels, f"{loaded.cfg.data.spec} (the run's test split)"
    ds = load_source(data)
    images, labels = ds.images, ds.labels
    if ds.classes != loaded.classes:
        index = {c: i for i, c in enumerate(loaded.classes)}
        missing = [c for c in ds.classes if c not in index]
        if missing:
            raise DeepRecipeError(f"{data} has classes the run never saw: {', '.join(missing[:5])}",
                                  "evaluate on data with the run's classes")
        labels = torch.tensor([index[ds.classes[i]] for i in labels.tolist()])
    return images, labels, data


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    out = {"n": int(labels.numel()), "acc": topk_correct(logits, labels, 1) / max(1, labels.numel()),
           "loss": float(torch.nn.functional.cross_entropy(logits, labels).item())}
    if logits.shape[1] > 5:
        out["top5"] = topk_correct(logits, labels, 5) / max(1, labels.numel())
    return out


def evaluate(run: str | Path, data: str | None = None, tta: str | None = None) -> dict:
    """Accuracy of a run's best checkpoint: on its own test split, or on all of another data spec."""
    loaded = load_run(run)
    images, labels, where = _evaluation_images(loaded, data)
    out = {"data": where, **_scores(loaded.logits(images), labels)}
    if tta:
        from .augment import tta_logits
        t_logits = tta_logits(loaded, images, tta)
        out["tta"] = tta
        out["tta_acc"] = topk_correct(t_logits, labels, 1) / max(1, labels.numel())
    return out


def evaluate_ensemble(runs: list[str | Path], data: str | None = None) -> dict:
    """Several runs as one ensemble (softmax probabilities averaged), reported beside each member."""
    members, probs, labels, classes, where = [], [], None, None, None
    for run in runs:
        loaded = load_run(run)
        images, y, w = _evaluation_images(loaded, data)
        if labels is not None and (loaded.classes != classes or not torch.equal(y, labels)):
            raise DeepRecipeError(f"run {run} is evaluated on other images or classes than {runs[0]}",
                                  "ensemble runs trained on the same data and split, or pass --data")
        labels, classes, where = y, loaded.classes, w
        logits = loaded.logits(images)
        members.append({"run": str(run), **_scores(logits, labels)})
        probs.append(torch.softmax(logits, 1))
    mean_probs = torch.stack(probs).mean(0)
    ensemble = _scores(mean_probs.clamp_min(1e-12).log(), labels)  # log of averaged probabilities
    return {"data": where, "ensemble": ensemble, "members": members}


def predict(run: str | Path, inputs: list[str], top: int = 1) -> list[dict]:
    """Class predictions for image files or folders: one dict per image."""
    from .data.sources import IMAGE_SUFFIXES, decode_image_file
    loaded = load_run(run)
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise DeepRecipeError(f"{p} does not exist", "give image files or folders of images")
    results = []
    for f in files:
        try:
            img = decode_image_file(f)
        except DeepRecipeError as err:
            results.append({"path": str(f), "error": err.message})
            continue
        probs = torch.softmax(loaded.logits(img[None]), 1)[0]
        k = max(1, min(top, len(loaded.classes)))
        p, i = probs.topk(k)
        row = {"path": str(f), "label": loaded.classes[int(i[0])], "probability": round(float(p[0]), 6)}
        if top > 1:
            row["top"] = [{"label": loaded.classes[int(j)], "probability": round(float(q), 6)} for q, j in zip(p, i)]
        results.append(row)
    return results


def inspect_data(spec: str, out_dir: str | Path | None = None) -> dict:
    """Sizes, class balance, mean/std, file size/mode histograms, duplicates/leaks, sample grid PNG."""
    from .data.inspect import inspect_dataset
    return inspect_dataset(spec, out_dir)
