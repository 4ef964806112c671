"""Checkpoints: atomic save, safe load (weights_only=True), and the run's meta-data beside the weights."""
from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import DeepRecipeError
from ..utils import atomic_write_bytes

FORMAT = "deeprecipe-checkpoint-1"


def content_digest(obj: Any) -> str:
    """SHA-256 over a checkpoint's contents (keys, numbers, strings, tensor bytes), independent of the file.

    torch.load does not notice flipped bits inside tensor data, so the digest is stored in the checkpoint and
    checked on every load; the file itself stays a plain PyTorch checkpoint.
    """
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(b"{")
            for k in sorted(o, key=str):
                if k != "sha256":
                    h.update(repr(k).encode())
                    feed(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(o).encode())

    feed(obj)
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Serialise to memory, then write atomically: a crash mid-write never leaves a torn file."""
    obj = {"format": FORMAT, **payload}
    obj["sha256"] = content_digest(obj)
    buf = io.BytesIO()
    torch.save(obj, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as err:  # full disk, quota, read-only folder: the previous file is untouched
        raise DeepRecipeError(f"could not write checkpoint {path}: {err.strerror or err}",
                              "free disk space or choose another --out; the previous checkpoint there is kept") from None


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
    if "sha256" in obj and content_digest(obj) != obj["sha256"]:
        raise DeepRecipeError(f"{path} is corrupt: its contents do not match the checksum written with it",
                              "use another checkpoint (best.pt / last.pt) or retrain; the file was damaged after it was written")
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


RUN_KEYS = ("config", "classes", "mean", "std", "input_shape", "model")


def load_run_checkpoint(run: str | Path, which: str = "best.pt") -> tuple[Path, dict[str, Any]]:
    """A run's checkpoint (path and contents), checked to hold what rebuilding its model needs."""
    path = resolve_checkpoint(run, which)
    ckpt = load_checkpoint(path)
    for key in RUN_KEYS:
        if key not in ckpt:
            raise DeepRecipeError(f"{path} lacks {key!r}", "use a checkpoint written by deeprecipe train")
    return path, ckpt
