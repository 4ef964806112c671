"""The Python API behind every command: train (one run, or k-fold / repeated splits), evaluate, predict.

`train(config)` returns the summary dict that is also written to `summary.json`. Data preparation,
model building and the session live one layer down (session.py), reading runs back in loaded.py;
their public names are importable from here too.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import report
from .config import Config, apply_overrides, build_config, resolve_config
from .data.inspect import inspect_dataset
from .data.protocols import format_protocol, protocol_splits, sub_run_name, summarize_protocol
from .data.cache import decode_for_run, open_photo_folder
from .data.sources import IMAGE_SUFFIXES, decode_image_file, failure_reason, load_source
from .data.tta import tta_logits
from .errors import DeepRecipeError
from .labelling.pseudo import fit_with_pseudo_labels
from .loaded import LoadedRun, load_run
from .session import PreparedData, Session, count_params, load_dataset, new_run_dir, prepare_data
from .train.budget import FEW_STEPS, few_steps_note  # noqa: F401  (FEW_STEPS: part of the API)
from .train.checkpoint import load_checkpoint, resolve_checkpoint
from .train.distributed import broadcast_str, shutdown
from .train.metrics import classification_summary, topk_correct
from .train.trainer import Trainer
from .utils import atomic_write_text, note, write_json


def _as_config(config: Config | dict | str | Path | None, overrides: list[str] | None = None) -> Config:
    if isinstance(config, Config):
        return build_config(apply_overrides(config.to_dict(), overrides)) if overrides else config
    if isinstance(config, (str, Path)):
        return resolve_config(str(config), overrides)
    return resolve_config(None, overrides, base=config or {})


def train(config: Config | dict | str | Path | None = None, out: str | Path | None = None,
          overrides: list[str] | None = None, resume: str | Path | None = None, show_progress: bool = True,
          write_report: bool = True) -> dict:
    """Train one model end to end; returns the summary (also written to RUN/summary.json). `write_report=False` skips
    report.html (half the cost of a seconds-long run; `deeprecipe report RUN` builds it later)."""
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
            atomic_write_text(run_dir / "config.yaml", session.cfg.to_yaml())  # the batch size resolved
        run_dir = Path(broadcast_str(str(run_dir) if run_dir else None, session.dist))
    if resume and cfg.data.unlabeled:
        raise DeepRecipeError(f"--resume {run_dir}: pseudo-label runs (data.unlabeled) cannot be resumed",
                              "start the run again, or resume without data.unlabeled")
    if show_progress:
        sizes = session.data.sizes()
        note(f"data {cfg.data.spec}: {len(session.data.classes)} classes, train {sizes['train']} / val {sizes['val']} / "
             f"test {sizes['test']}, input {'×'.join(map(str, session.data.input_shape))}; model {cfg.model.name} "
             f"({session.params:,} params), batch {session.cfg.train.batch_size}, on {session.device.type} {session.precision}"
             f"{' channels_last' if session.channels_last else ''}, {session.threads} thread"
             f"{'s' if session.threads != 1 else ''}")
    t0 = time.perf_counter()
    if cfg.data.unlabeled:  # semi-supervised: teacher–student pseudo-label rounds, each its own trainer
        trainer, pseudo_rounds = fit_with_pseudo_labels(session, run_dir, show_progress)
        state = trainer.state
    else:
        trainer = session.make_trainer(run_dir, show_progress=show_progress)
        if show_progress and not resume:
            advice = few_steps_note(len(trainer.train_loader), cfg.train.epochs, session.cfg.train.batch_size)
            if advice:
                note(advice)
        if resume:
            trainer.resume_from(resolve_checkpoint(run_dir, "last.pt"))
            if show_progress:
                note(f"resuming {run_dir} after epoch {trainer.state.epoch}")
        state, pseudo_rounds = trainer.fit(), None
    train_seconds = sum(r["seconds"] for r in state.history) if state.history else time.perf_counter() - t0
    if not session.dist.is_main:  # rank 0 evaluates and writes the summary
        shutdown(session.dist)
        return {}
    summary = finish_run(trainer, session, run_dir, train_seconds, write_report)
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
        session = Session.create(cfg, PreparedData.from_splits(ds, splits, pretrained=cfg.model.pretrained))
        atomic_write_text(sub / "config.yaml", session.cfg.to_yaml())  # the fold's batch size resolved
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


def finish_run(trainer: Trainer, session: Session, run_dir: Path, train_seconds: float, write_report: bool = True) -> dict:
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
        "evaluated_weights": "ema" if trainer.ema is not None else "raw",  # best.pt holds the EMA average when on
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
        "threads": session.threads,
        "normalization": {"mean": list(session.data.mean), "std": list(session.data.std),
                          "source": session.data.stats_source},
    }
    if len(session.data.classes) > 5:
        summary["test_top5"] = topk_correct(logits, labels, 5) / max(1, labels.numel())
    summary.update(classification_summary(probs, labels.numpy(), session.data.classes))
    summary.update(trainer.extra_summary(loader))  # e.g. distillation: the teacher's accuracy on the same split
    summary["diagnosis"] = session.diagnose(history)
    write_json(run_dir / "summary.json", summary)
    np.savez_compressed(run_dir / "test_predictions.npz", probs=probs.astype(np.float32), labels=labels.numpy(),
                        indices=session.data.splits[part])
    if write_report:
        write_report_safely(run_dir, session.data)
    return summary


def write_report_safely(run_dir: Path, data: PreparedData | None = None) -> None:
    """report.html for the run; a failing report is noted, never allowed to lose the run."""
    try:
        report.build_report(run_dir, data)
    except Exception as err:  # the summary and checkpoints are already safe on disk
        note(f"report.html not written ({type(err).__name__}: {err}); rebuild with `deeprecipe report {run_dir}`")


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


def _evaluation_images(loaded: LoadedRun, data: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The images a run is evaluated on: its own test split, or all of another data spec (labels mapped)."""
    if not data:
        prepared = prepare_data(loaded.cfg)
        images, labels = prepared.decoded_part("test" if len(prepared.splits["test"]) else "val")
        return images, labels, f"{loaded.cfg.data.spec} (the run's test split)"
    ds = open_photo_folder(loaded.cfg.data.model_copy(update={"spec": data})) or load_source(data)
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
            img = decode_for_run(f, loaded.cfg.data, loaded.input_shape[0])
            img = decode_image_file(f) if img is None else img
        except DeepRecipeError as err:
            results.append({"path": str(f), "error": err.message})
            continue
        except Exception as err:  # the photo decoder's failures (truncated, not an image, …)
            results.append({"path": str(f), "error": f"unreadable image ({failure_reason(err)})"})
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
    return inspect_dataset(spec, out_dir)
