"""`deeprecipe recalibrate RUN`: batch-norm statistics of a trained run re-estimated on its clean training data.

The run's checkpoint is rebuilt, its BatchNorm running statistics are recomputed over the training split without
augmentation (`train.bn_stats.reestimate_bn`), and the result is saved beside the original as
`checkpoints/<name>_recalibrated.pt` (the original is never touched), with validation and test accuracy before
and after in `recalibration.json`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import DeepRecipeError
from .loaded import LoadedRun, load_run
from .session import prepare_data
from .train.bn_stats import batch_norms, reestimate_bn
from .train.checkpoint import load_run_checkpoint, save_checkpoint
from .train.metrics import topk_correct
from .utils import write_json


def _accuracy(loaded: LoadedRun, images: torch.Tensor, labels: torch.Tensor) -> float | None:
    if not labels.numel():
        return None
    return topk_correct(loaded.logits(images), labels, 1) / labels.numel()


def recalibrate_run(run: str | Path, which: str = "best.pt", batch_size: int = 256) -> dict:
    """Re-estimate a run's BatchNorm statistics; save `<which>_recalibrated.pt` beside it; accuracies before/after."""
    if batch_size < 2:
        raise DeepRecipeError(f"--batch-size {batch_size} is too small", "batch norm needs ≥ 2 images a batch; use 256")
    path, ckpt = load_run_checkpoint(run, which)
    loaded = load_run(path)
    if not batch_norms(loaded.model):
        raise DeepRecipeError(f"{path} has no batch-norm layers: there are no statistics to recalibrate",
                              "recalibration only changes models trained with model.norm=batch")
    data = prepare_data(loaded.cfg)
    parts = {name: data.decoded_part(name) for name in ("val", "test")}
    before = {name: _accuracy(loaded, *part) for name, part in parts.items()}
    train_images, _ = data.decoded_part("train")
    batches = (loaded.normalize(train_images[i:i + batch_size]) for i in range(0, train_images.shape[0], batch_size))
    seen = reestimate_bn(loaded.model, batches)
    loaded.model.eval()
    after = {name: _accuracy(loaded, *part) for name, part in parts.items()}
    out = path.with_name(f"{path.stem}_recalibrated.pt")
    state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}
    save_checkpoint(out, {**{k: v for k, v in ckpt.items() if k not in ("format", "sha256")}, "model": state,
                          "bn_recalibrated": {"from": path.name, "images": seen, "batch_size": batch_size}})
    result = {"checkpoint": str(out), "from": str(path), "train_images": seen, "batch_size": batch_size,
              **{f"{n}_acc_before": before[n] for n in parts}, **{f"{n}_acc_after": after[n] for n in parts}}
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    write_json(run_dir / "recalibration.json", result)
    return result
