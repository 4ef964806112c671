"""Checkpoints: atomic save, safe load (weights_only=True), and the run's meta-data beside the weights."""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import DeepRecipeError
from ..utils import atomic_write_bytes

FORMAT = "deeprecipe-checkpoint-1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialise to memory, then write atomically: a crash mid-write never leaves a torn file."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only, never arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise DeepRecipeError(f"checkpoint {path} does not exist", "give a run folder or a .pt file written by deeprecipe")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise DeepRecipeError(f"{path} holds objects other than weights and was refused ({str(err).splitlines()[0][:100]})",
                              "only load checkpoints you trust; deeprecipe never unpickles code") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise DeepRecipeError(f"{path} is not a readable checkpoint ({type(err).__name__})",
                              "the file is truncated or not a PyTorch checkpoint; use another checkpoint") from None
    if not isinstance(obj, dict):
        raise DeepRecipeError(f"{path} is not a deeprecipe checkpoint", "give a checkpoint written by deeprecipe")
    return obj


def resolve_checkpoint(run_or_file: str | Path, which: str = "best.pt") -> Path:
    """A run folder → its checkpoints/<which>; a file → itself."""
    p = Path(run_or_file)
    if p.is_dir():
        for cand in (p / "checkpoints" / which, p / "checkpoints" / "last.pt", p / which):
            if cand.is_file():
                return cand
        raise DeepRecipeError(f"run folder {p} has no checkpoints/{which}",
                              "give a folder written by `deeprecipe train` (or wait for its first epoch to finish)")
    if p.is_file():
        return p
    raise DeepRecipeError(f"run {p} does not exist", "give a run folder (runs/…) or a checkpoint file")
